package fusefs

import (
	"errors"
	"io/fs"
	"runtime/debug"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// Lookup finds name by binary search in the parent's directory blocks.
func (f *FS) Lookup(cancel <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	debug.SetPanicOnFault(true)
	dir, st := f.inode(h.NodeId)
	if !st.Ok() {
		return st
	}
	if !dir.IsDir() {
		return fuse.ENOTDIR
	}
	f.recent.note(dir.Nid)
	nid, ft, err := f.img.Lookup(&dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return negativeEntry(out)
	}
	if err != nil {
		return f.fail(dir.Nid, "lookup "+name, err)
	}
	st = f.lookupNid(dir.Nid, name, nid, out)
	if st.Ok() && ft == erofs.FTReg {
		f.noteLookup(dir.Nid, name)
	}
	return st
}

// lookupNid answers the lookup of name in directory parent, found at nid.
func (f *FS) lookupNid(parent uint64, name string, nid uint64, out *fuse.EntryOut) fuse.Status {
	if nid == 0 {
		// nid 0 is the first bytes of the image: the composefs header.
		return f.fail(parent, "lookup "+name, errNid0)
	}
	in, err := f.img.Inode(nid)
	if err == nil {
		err = f.fillEntry(nid, &in, out)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return negativeEntry(out)
	}
	if err != nil {
		return f.fail(parent, "lookup "+name, err)
	}
	return fuse.OK
}

// Forget has nothing to release: node ids are nids.
func (f *FS) Forget(nodeID, nlookup uint64) {}

func (f *FS) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	debug.SetPanicOnFault(true)
	ino, st := f.inode(in.NodeId)
	if !st.Ok() {
		return st
	}
	out.AttrValid, out.AttrValidNsec = uint64(forever.Seconds()), 0
	fillAttr(&ino, &out.Attr)
	return fuse.OK
}

func (f *FS) Readlink(cancel <-chan struct{}, h *fuse.InHeader) ([]byte, fuse.Status) {
	debug.SetPanicOnFault(true)
	in, st := f.inode(h.NodeId)
	if !st.Ok() {
		return nil, st
	}
	if !in.IsSymlink() {
		return nil, fuse.EINVAL
	}
	t, err := f.img.Readlink(&in)
	if err != nil {
		return nil, f.fail(in.Nid, "readlink", err)
	}
	return []byte(t), fuse.OK
}

// StatFs answers what the kernel's EROFS answers for the image.
func (f *FS) StatFs(cancel <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	sb := f.img.Superblock()
	bsize := uint32(1) << sb.BlkSzBits
	*out = fuse.StatfsOut{
		Blocks:  uint64(sb.Blocks),
		Files:   ^uint64(0),
		Ffree:   ^uint64(0) - sb.Inos,
		Bsize:   bsize,
		Frsize:  bsize,
		NameLen: 255,
	}
	return fuse.OK
}
