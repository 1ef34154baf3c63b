package composefs

import "github.com/composefs/composefs-go/erofs"

// Attr is what stat(2) shows of an inode on the kernel's mount.
type Attr struct {
	// Ino is the nid: EROFS numbers inodes by their place in the image,
	// and overlayfs over a single layer passes the number through.
	Ino   uint64
	Mode  uint32 // type and permission bits, as st_mode
	Nlink uint32
	UID   uint32
	GID   uint32
	// Rdev is the device number of a character or block device, in the
	// kernel's new_encode_dev form; 0 for every other type.
	Rdev uint32
	// Size is the file's size; for an external file, its object's.
	Size uint64
	// Blocks counts 512-byte units of whole 4 KiB blocks, as EROFS does.
	Blocks  uint64
	Blksize uint32
	// EROFS keeps one timestamp, shown as atime, mtime and ctime.
	MtimeSec  int64
	MtimeNsec uint32
}

const blockSize = erofs.BlockSize

// AttrOf is the stat of inode in as the kernel's EROFS reports it.
func AttrOf(in *erofs.Inode) Attr {
	a := Attr{
		Ino:       in.Nid,
		Mode:      in.Mode,
		Nlink:     in.Nlink,
		UID:       in.UID,
		GID:       in.GID,
		Size:      in.Size,
		Blocks:    (in.Size + blockSize - 1) / blockSize * (blockSize / 512),
		Blksize:   blockSize,
		MtimeSec:  in.MtimeSec,
		MtimeNsec: in.MtimeNsec,
	}
	switch in.Mode & erofs.ModeFmt {
	case erofs.ModeChr, erofs.ModeBlk:
		a.Rdev = in.Rdev
	}
	return a
}
