//go:build linux

package fuseuring

import (
	"bytes"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Opcodes, from include/uapi/linux/fuse.h.
const (
	opLookup        = 1
	opGetattr       = 3
	opSetattr       = 4
	opReadlink      = 5
	opSymlink       = 6
	opMknod         = 8
	opMkdir         = 9
	opUnlink        = 10
	opRmdir         = 11
	opRename        = 12
	opLink          = 13
	opOpen          = 14
	opRead          = 15
	opWrite         = 16
	opStatfs        = 17
	opRelease       = 18
	opFsync         = 20
	opSetxattr      = 21
	opGetxattr      = 22
	opListxattr     = 23
	opRemovexattr   = 24
	opFlush         = 25
	opOpendir       = 27
	opReaddir       = 28
	opReleasedir    = 29
	opFsyncdir      = 30
	opAccess        = 34
	opCreate        = 35
	opFallocate     = 43
	opReaddirplus   = 44
	opRename2       = 45
	opPoll          = 40
	opLseek         = 46
	opCopyFileRange = 47
	opTmpfile       = 51
)

// serve answers the request in e's buffers, leaves the reply there, and
// returns the commit id the reply goes back with.
func (t *Transport) serve(e *entry) uint64 {
	commit := *(*uint64)(unsafe.Pointer(&e.hdr[entCommitID]))
	payloadIn := int(*(*uint32)(unsafe.Pointer(&e.hdr[entPayloadSz])))
	// go-fuse's request types are the in header followed by the opcode's
	// header; the ring keeps them 128 bytes apart. The opcode's header
	// area is cleared once copied: the kernel writes only as much of it as
	// the opcode has, and what a longer earlier one left must not be read
	// as fields of the next.
	copy(e.in[:40], e.hdr[hdrInOut:hdrInOut+40])
	copy(e.in[40:], e.hdr[hdrOpIn:hdrOpIn+opInSize])
	clear(e.hdr[hdrOpIn : hdrOpIn+opInSize])
	h := (*fuse.InHeader)(unsafe.Pointer(&e.in[0]))
	unique := h.Unique
	in := min(payloadIn, len(e.payload))

	out, st := t.call(h, unsafe.Pointer(&e.in[0]), e.payload[:in], e.payload)
	n := 0
	if st == fuse.OK {
		n = len(out)
		if n > 0 && &out[0] != &e.payload[0] {
			n = copy(e.payload, out)
		}
	}
	// struct fuse_out_header: len, error, unique.
	*(*uint32)(unsafe.Pointer(&e.hdr[hdrInOut])) = uint32(16 + n)
	*(*int32)(unsafe.Pointer(&e.hdr[hdrInOut+4])) = -int32(st)
	*(*uint64)(unsafe.Pointer(&e.hdr[hdrInOut+8])) = unique
	*(*uint32)(unsafe.Pointer(&e.hdr[entPayloadSz])) = uint32(n)
	t.served.Add(1)
	return commit
}

// call runs one request against the file system, as go-fuse would: in is
// the request's variable part (names, data), buf the reply buffer. The
// reply is a slice of buf, or a slice the file system owns.
func (t *Transport) call(h *fuse.InHeader, p unsafe.Pointer, in, buf []byte) (out []byte, st fuse.Status) {
	defer func() {
		if r := recover(); r != nil {
			out = nil
			st = fuse.EIO
			if t.cfg.PanicHandler != nil {
				st = t.cfg.PanicHandler(r)
			}
		}
	}()
	// The reply is written over the request's variable part: take the
	// names out of it first.
	var name, name2 string
	if namedOps[h.Opcode] {
		name, name2 = cstring(in, 0), cstring(in, 1)
	}
	if h.NodeId == pollHackInode || h.NodeId == fuse.FUSE_ROOT_ID && name == pollHackName {
		return pollHack(h.Opcode, buf)
	}
	fs := t.fs
	switch h.Opcode {
	case opLookup:
		o, out := fixed[fuse.EntryOut](buf)
		return out, fs.Lookup(nil, h, name, o)
	case opGetattr:
		o, out := fixed[fuse.AttrOut](buf)
		return out, fs.GetAttr(nil, (*fuse.GetAttrIn)(p), o)
	case opReadlink:
		return fs.Readlink(nil, h)
	case opOpen:
		o, out := fixed[fuse.OpenOut](buf)
		return out, fs.Open(nil, (*fuse.OpenIn)(p), o)
	case opRead:
		r := (*fuse.ReadIn)(p)
		dest := buf[:min(int(r.Size), len(buf))]
		res, st := fs.Read(nil, r, dest)
		if st != fuse.OK || res == nil {
			return nil, st
		}
		data, st := res.Bytes(dest)
		res.Done()
		return data, st
	case opStatfs:
		o, out := fixed[fuse.StatfsOut](buf)
		return out, fs.StatFs(nil, h, o)
	case opRelease:
		fs.Release(nil, (*fuse.ReleaseIn)(p))
		return nil, fuse.OK
	case opFsync:
		return nil, fs.Fsync(nil, (*fuse.FsyncIn)(p))
	case opFlush:
		return nil, fs.Flush(nil, (*fuse.FlushIn)(p))
	case opGetxattr, opListxattr:
		return xattr(fs, h, (*fuse.GetXAttrIn)(p), name, buf)
	case opOpendir:
		o, out := fixed[fuse.OpenOut](buf)
		return out, fs.OpenDir(nil, (*fuse.OpenIn)(p), o)
	case opReaddir, opReaddirplus:
		r := (*fuse.ReadIn)(p)
		l := fuse.NewDirEntryList(buf[:min(int(r.Size), len(buf))], r.Offset)
		if h.Opcode == opReaddir {
			st = fs.ReadDir(nil, r, l)
		} else {
			st = fs.ReadDirPlus(nil, r, l)
		}
		return l.Bytes(), st
	case opReleasedir:
		fs.ReleaseDir((*fuse.ReleaseIn)(p))
		return nil, fuse.OK
	case opFsyncdir:
		return nil, fs.FsyncDir(nil, (*fuse.FsyncIn)(p))
	case opAccess:
		return nil, fs.Access(nil, (*fuse.AccessIn)(p))
	case opLseek:
		o, out := fixed[fuse.LseekOut](buf)
		return out, fs.Lseek(nil, (*fuse.LseekIn)(p), o)

	// Requests that would change the tree: whatever the file system says.
	case opSetattr:
		o, out := fixed[fuse.AttrOut](buf)
		return out, fs.SetAttr(nil, (*fuse.SetAttrIn)(p), o)
	case opSymlink:
		o, out := fixed[fuse.EntryOut](buf)
		return out, fs.Symlink(nil, h, name2, name, o)
	case opMknod:
		o, out := fixed[fuse.EntryOut](buf)
		return out, fs.Mknod(nil, (*fuse.MknodIn)(p), name, o)
	case opMkdir:
		o, out := fixed[fuse.EntryOut](buf)
		return out, fs.Mkdir(nil, (*fuse.MkdirIn)(p), name, o)
	case opUnlink:
		return nil, fs.Unlink(nil, h, name)
	case opRmdir:
		return nil, fs.Rmdir(nil, h, name)
	case opRename, opRename2:
		return nil, fs.Rename(nil, (*fuse.RenameIn)(p), name, name2)
	case opLink:
		o, out := fixed[fuse.EntryOut](buf)
		return out, fs.Link(nil, (*fuse.LinkIn)(p), name, o)
	case opCreate:
		o, out := fixed[fuse.CreateOut](buf)
		return out, fs.Create(nil, (*fuse.CreateIn)(p), name, o)
	case opTmpfile:
		o, out := fixed[fuse.CreateOut](buf)
		return out, fs.Tmpfile(nil, (*fuse.CreateIn)(p), o)
	case opWrite:
		n, st := fs.Write(nil, (*fuse.WriteIn)(p), in)
		o, out := fixed[fuse.WriteOut](buf)
		o.Size = n
		return out, st
	case opCopyFileRange:
		o, out := fixed[fuse.WriteOut](buf)
		o.Size, st = fs.CopyFileRange(nil, (*fuse.CopyFileRangeIn)(p))
		return out, st
	case opFallocate:
		return nil, fs.Fallocate(nil, (*fuse.FallocateIn)(p))
	case opSetxattr:
		s := (*fuse.SetXAttrIn)(p)
		value := in[min(len(name)+1, len(in)):]
		value = value[:min(int(s.Size), len(value))]
		return nil, fs.SetXAttr(nil, s, name, value)
	case opRemovexattr:
		return nil, fs.RemoveXAttr(nil, h, name)
	}
	// The rest (locks, ioctl, poll, bmap, statx, ...) is what go-fuse's
	// defaults answer ENOSYS to, telling the kernel to stop asking or to do
	// the work itself. A file system implementing one must be added above.
	return nil, fuse.ENOSYS
}

// xattr answers GETXATTR and LISTXATTR: with a size of 0 the caller asks
// only how large the value or list is.
func xattr(fs fuse.RawFileSystem, h *fuse.InHeader, x *fuse.GetXAttrIn, name string, buf []byte) ([]byte, fuse.Status) {
	dest := buf[:min(int(x.Size), len(buf))]
	var n uint32
	var st fuse.Status
	if h.Opcode == opGetxattr {
		n, st = fs.GetXAttr(nil, h, name, dest)
	} else {
		n, st = fs.ListXAttr(nil, h, dest)
	}
	if x.Size == 0 {
		if st == fuse.ERANGE {
			st = fuse.OK
		}
		o, out := fixed[fuse.GetXAttrOut](buf)
		o.Size = n
		return out, st
	}
	if st != fuse.OK || int(n) > len(dest) {
		return nil, st
	}
	return dest[:n], st
}

// cstring is the i-th NUL-terminated string of b.
func cstring(b []byte, i int) string {
	for ; i > 0; i-- {
		z := bytes.IndexByte(b, 0)
		if z < 0 {
			return ""
		}
		b = b[z+1:]
	}
	if z := bytes.IndexByte(b, 0); z >= 0 {
		b = b[:z]
	}
	return string(b)
}

// fixed is a fixed-size reply of type T at the start of buf: the cleared
// struct to fill, and the bytes that carry it.
func fixed[T any](buf []byte) (*T, []byte) {
	var zero T
	out := buf[:unsafe.Sizeof(zero)]
	clear(out)
	return (*T)(unsafe.Pointer(&out[0])), out
}

// go-fuse's WaitMount opens and polls a file of its own at the root, which
// go-fuse answers itself, never the file system: so must we.
const (
	pollHackName  = ".go-fuse-epoll-hack"
	pollHackInode = ^uint64(0)
)

// namedOps are the opcodes whose variable part starts with a name.
var namedOps = map[uint32]bool{
	opLookup: true, opMknod: true, opMkdir: true, opUnlink: true, opRmdir: true,
	opRename: true, opRename2: true, opLink: true, opSymlink: true, opCreate: true,
	opGetxattr: true, opSetxattr: true, opRemovexattr: true,
}

// pollHack answers as go-fuse does for its poll file: a regular file that
// opens, has no xattrs and does not poll; anything else answers ERANGE,
// which switches no feature off.
func pollHack(op uint32, buf []byte) ([]byte, fuse.Status) {
	attr := fuse.Attr{Ino: pollHackInode, Mode: fuse.S_IFREG | 0o644, Nlink: 1}
	switch op {
	case opLookup:
		o, out := fixed[fuse.EntryOut](buf)
		o.NodeId, o.Attr = pollHackInode, attr
		return out, fuse.OK
	case opOpen:
		o, out := fixed[fuse.OpenOut](buf)
		o.Fh = pollHackInode
		return out, fuse.OK
	case opGetattr, opSetattr:
		o, out := fixed[fuse.AttrOut](buf)
		o.Attr = attr
		return out, fuse.OK
	case opGetxattr:
		return nil, fuse.ENODATA
	case opPoll:
		return nil, fuse.ENOSYS
	case opAccess, opFlush, opRelease:
		return nil, fuse.OK
	}
	return nil, fuse.ERANGE
}
