package fusefs

import (
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
)

// The kernel names inodes by the node id a LOOKUP (or READDIRPLUS) answer
// gave it. An image never changes and addresses every inode by its nid, so
// the node id is derived from the nid and back, with nothing remembered in
// between: the root is FUSE_ROOT_ID, any other inode nid+1 (nid 0 is the
// image header, never an inode, so 1 stays free for the root; rootNid+1 is
// never handed out). Hardlinks share a nid and so share a node id and one
// kernel inode. FORGET has nothing to release.
//
// st_ino is the nid, as the kernel's EROFS reports it.

func (f *FS) nodeID(nid uint64) uint64 {
	if nid == f.rootNid {
		return fuse.FUSE_ROOT_ID
	}
	return nid + 1
}

func (f *FS) nidOf(nodeID uint64) uint64 {
	if nodeID == fuse.FUSE_ROOT_ID {
		return f.rootNid
	}
	return nodeID - 1
}

// inode decodes the inode the kernel names by nodeID.
func (f *FS) inode(nodeID uint64) (erofs.Inode, fuse.Status) {
	nid := f.nidOf(nodeID)
	in, err := f.img.Inode(nid)
	if err != nil {
		return in, f.fail(nid, "inode", err)
	}
	return in, fuse.OK
}

// forever is how long the kernel may cache what we tell it: an image never
// changes while it is mounted.
const forever = 365 * 24 * time.Hour

// fillAttr reports the inode as the kernel's EROFS does
// (composefs.AttrOf).
func fillAttr(in *erofs.Inode, out *fuse.Attr) {
	a := composefs.AttrOf(in)
	out.Ino = a.Ino
	out.Size = a.Size
	out.Blksize = a.Blksize
	out.Blocks = a.Blocks
	sec, nsec := uint64(a.MtimeSec), a.MtimeNsec
	out.Atime, out.Mtime, out.Ctime = sec, sec, sec
	out.Atimensec, out.Mtimensec, out.Ctimensec = nsec, nsec, nsec
	out.Mode = a.Mode
	out.Nlink = a.Nlink
	out.Uid, out.Gid = a.UID, a.GID
	// Stored in the kernel's new_encode_dev form, which is the form FUSE
	// expects.
	out.Rdev = a.Rdev
}

// fillEntry answers a lookup of inode in, which the view found: its node
// id and attributes, cached for good.
func (f *FS) fillEntry(in *erofs.Inode, out *fuse.EntryOut) {
	out.NodeId = f.nodeID(in.Nid)
	out.Generation = 0
	out.SetEntryTimeout(forever)
	out.SetAttrTimeout(forever)
	fillAttr(in, &out.Attr)
}

// negativeEntry answers a lookup that finds nothing, and tells the kernel
// to remember that for good.
func negativeEntry(out *fuse.EntryOut) fuse.Status {
	*out = fuse.EntryOut{}
	out.SetEntryTimeout(forever)
	return fuse.OK
}
