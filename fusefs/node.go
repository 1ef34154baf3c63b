package fusefs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// node is what every node type shares: the decoded inode it stands for.
// The inode is decoded once, when the kernel first looks the node up, and
// never changes, because the image does not.
type node struct {
	gofs.Inode
	fsys *FS
	ino  erofs.Inode
}

// attrNode is implemented by every node type, so a lookup can answer from
// a node that already exists.
type attrNode interface {
	fillAttr(out *fuse.Attr)
}

var (
	_ = (gofs.NodeGetattrer)((*node)(nil))
	_ = (gofs.NodeStatfser)((*node)(nil))
	_ = (gofs.NodeGetxattrer)((*node)(nil))
	_ = (gofs.NodeListxattrer)((*node)(nil))
	_ = (attrNode)((*node)(nil))
)

// fillAttr reports the inode as the kernel's EROFS does: one timestamp for
// atime, mtime and ctime, blocks counted in whole 4 KiB blocks.
func (n *node) fillAttr(out *fuse.Attr) {
	in := &n.ino
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

const blockSize = 4096

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fillAttr(&out.Attr)
	return 0
}

// Statfs answers what the kernel's EROFS answers for the image.
func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	sb := n.fsys.img.Superblock()
	bsize := uint32(1) << sb.BlkSzBits
	*out = fuse.StatfsOut{
		Blocks:  uint64(sb.Blocks),
		Files:   ^uint64(0),
		Ffree:   ^uint64(0) - sb.Inos,
		Bsize:   bsize,
		Frsize:  bsize,
		NameLen: 255,
	}
	return 0
}

// path names the node for log lines.
func (n *node) path() string {
	if n.fsys.root == nil || n.Root() == nil {
		return "?"
	}
	return "/" + n.Path(nil)
}

// newChild makes the node for the inode at nid, below parent, and fills out
// with its attributes. A known inode (a hardlink already visited) comes back
// as the node it already has.
func (f *FS) newChild(ctx context.Context, parent *node, nid uint64, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if nid == 0 {
		// nid 0 is the first bytes of the image: the composefs header.
		return nil, f.errno(parent, "lookup", errNid0)
	}
	in, err := f.img.Inode(nid)
	if err != nil {
		return nil, f.errno(parent, "lookup", err)
	}
	if err := f.overlayLookup(&in); err != nil {
		return nil, f.errno(parent, "lookup", err)
	}
	var ops gofs.InodeEmbedder
	switch in.Mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		ops = &dirNode{node: node{fsys: f, ino: in}}
	case syscall.S_IFREG:
		ops = &fileNode{node: node{fsys: f, ino: in}}
	case syscall.S_IFLNK:
		ops = &symlinkNode{node: node{fsys: f, ino: in}}
	case syscall.S_IFCHR, syscall.S_IFBLK, syscall.S_IFIFO, syscall.S_IFSOCK:
		ops = &specialNode{node: node{fsys: f, ino: in}}
	default:
		// The kernel's EROFS refuses an inode of no known type.
		return nil, f.errno(parent, "lookup", errBadType{nid: nid, mode: in.Mode})
	}
	child := parent.NewInode(ctx, ops, gofs.StableAttr{Mode: in.Mode & syscall.S_IFMT, Ino: nid})
	child.Operations().(attrNode).fillAttr(&out.Attr)
	return child, 0
}

// specialNode is a device, fifo or socket: attributes and xattrs only.
type specialNode struct {
	node
}
