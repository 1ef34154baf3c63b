package fusefs

import (
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

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

const blockSize = 4096

// fillAttr reports the inode as the kernel's EROFS does: one timestamp for
// atime, mtime and ctime, blocks counted in whole 4 KiB blocks.
func fillAttr(in *erofs.Inode, out *fuse.Attr) {
	out.Ino = in.Nid
	out.Size = in.Size
	out.Blksize = blockSize
	out.Blocks = (in.Size + blockSize - 1) / blockSize * (blockSize / 512)
	sec, nsec := uint64(in.MtimeSec), in.MtimeNsec
	out.Atime, out.Mtime, out.Ctime = sec, sec, sec
	out.Atimensec, out.Mtimensec, out.Ctimensec = nsec, nsec, nsec
	out.Mode = in.Mode
	out.Nlink = in.Nlink
	out.Uid, out.Gid = in.UID, in.GID
	switch in.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR, syscall.S_IFBLK:
		// Stored in the kernel's new_encode_dev form, which is the form
		// FUSE expects.
		out.Rdev = in.Rdev
	default:
		out.Rdev = 0
	}
}

// fillEntry answers a lookup of the inode at nid: its node id and
// attributes, cached for good. Whatever overlayfs would not let a lookup
// find is an error: ENOENT for a whiteout, EINVAL or EIO for the rest.
func (f *FS) fillEntry(nid uint64, in *erofs.Inode, out *fuse.EntryOut) error {
	if err := f.overlayLookup(in); err != nil {
		return err
	}
	out.NodeId = f.nodeID(nid)
	out.Generation = 0
	out.SetEntryTimeout(forever)
	out.SetAttrTimeout(forever)
	fillAttr(in, &out.Attr)
	return nil
}

// negativeEntry answers a lookup that finds nothing, and tells the kernel
// to remember that for good.
func negativeEntry(out *fuse.EntryOut) fuse.Status {
	*out = fuse.EntryOut{}
	out.SetEntryTimeout(forever)
	return fuse.OK
}
