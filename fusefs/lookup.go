package fusefs

import (
	"errors"
	"io/fs"
	"runtime/debug"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Lookup finds name in the parent directory as the kernel's overlayfs
// would (composefs.FS.Lookup): a whiteout or a missing name is a negative
// entry, cached for good.
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
	in, err := f.view.Lookup(&dir, name)
	if errors.Is(err, fs.ErrNotExist) {
		return negativeEntry(out)
	}
	if err != nil {
		return f.fail(dir.Nid, "lookup", err, "name", name)
	}
	f.fillEntry(&in, out)
	if in.IsRegular() {
		f.noteLookup(dir.Nid, name)
	}
	return fuse.OK
}

// Forget lets go of the inode's idle object, if it has one; node ids need
// nothing released, being nids.
func (f *FS) Forget(nodeID, nlookup uint64) { f.forgetObject(f.nidOf(nodeID)) }

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
