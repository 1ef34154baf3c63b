package erofs

import "fmt"

// Inode is a decoded inode: a small value, cheap to copy. Decoding checks
// that the inode, its xattr body, its inline tail and its chunk map lie inside
// the image; data blocks are checked when read.
type Inode struct {
	Nid        uint64
	Extended   bool
	Layout     uint8 // LayoutFlatPlain, LayoutFlatInline or LayoutChunkBased
	Mode       uint32
	Nlink      uint32
	UID, GID   uint32
	Size       uint64
	Rdev       uint32 // char/block devices: i_u as stored (new_encode_dev form)
	MtimeSec   int64
	MtimeNsec  uint32
	Ino        uint32 // the stored i_ino
	XattrCount uint16 // i_xattr_icount
	StartBlock uint32 // i_u: start block, or chunk format for chunk-based files

	off       uint64 // byte offset of the inode
	xattrOff  uint64 // byte offset of the xattr body (right after the inode)
	xattrSize uint32 // bytes of the xattr body
	tailOff   uint64 // FLAT_INLINE: byte offset of the inline tail
	chunkMap  uint64 // CHUNK_BASED: byte offset of the block map / chunk indexes
}

// IsDir tells whether the inode is a directory.
func (in *Inode) IsDir() bool { return in.Mode&ModeFmt == ModeDir }

// IsRegular tells whether the inode is a regular file.
func (in *Inode) IsRegular() bool { return in.Mode&ModeFmt == ModeReg }

// IsSymlink tells whether the inode is a symbolic link.
func (in *Inode) IsSymlink() bool { return in.Mode&ModeFmt == ModeLnk }

// hasData tells whether the file type keeps bytes in its data layout;
// devices, fifos and sockets use i_u for other things.
func (in *Inode) hasData() bool {
	switch in.Mode & ModeFmt {
	case ModeReg, ModeDir, ModeLnk:
		return true
	}
	return false
}

// blocks is the number of 4 KiB blocks the file's size spans.
func (in *Inode) blocks() uint64 {
	n := in.Size >> BlockBits
	if in.Size&(BlockSize-1) != 0 {
		n++
	}
	return n
}

// tailLen is the size of the inline tail of a FLAT_INLINE file: whatever
// the full blocks before it do not hold (1..4096 bytes, 0 for empty files).
func (in *Inode) tailLen() uint64 {
	if in.Size == 0 {
		return 0
	}
	return in.Size - (in.blocks()-1)<<BlockBits
}

// chunkBits is log2 of a CHUNK_BASED file's chunk size.
func (in *Inode) chunkBits() uint {
	return BlockBits + uint(in.StartBlock&ChunkFormatBlkbitsMask)
}

// chunkEntrySize is the size of one chunk map entry.
func (in *Inode) chunkEntrySize() uint64 {
	if in.StartBlock&ChunkFormatIndexes != 0 {
		return chunkIndexSize
	}
	return blockMapEntrySize
}

// Inode decodes the inode nid.
func (im *Image) Inode(nid uint64) (Inode, error) {
	if im.data == nil {
		return Inode{}, errClosed
	}
	size := uint64(len(im.data))
	if nid > (size-im.metaBase)/InodeSlotSize {
		return Inode{}, fmt.Errorf("inode %d: nid beyond the image end: %w", nid, ErrCorrupt)
	}
	in := Inode{Nid: nid, off: im.metaBase + nid*InodeSlotSize}
	b, ok := im.span(in.off, inodeCompactSize)
	if !ok {
		return Inode{}, fmt.Errorf("inode %d: at %d, beyond the image end: %w", nid, in.off, ErrCorrupt)
	}
	format := littleEndian.Uint16(b[inodeOffFormat:])
	if format&^inodeFormatAll != 0 {
		return Inode{}, fmt.Errorf("inode %d: i_format %#x has unknown bits: %w", nid, format, ErrUnsupported)
	}
	in.Extended = format&inodeVersionMask == inodeLayoutExtended
	in.Layout = uint8(format>>inodeDatalayoutBit) & inodeDatalayoutMask
	in.XattrCount = littleEndian.Uint16(b[inodeOffXattrCount:])
	in.Mode = uint32(littleEndian.Uint16(b[inodeOffMode:]))
	isize := uint64(inodeCompactSize)
	if in.Extended {
		isize = inodeExtendedSize
		if b, ok = im.span(in.off, inodeExtendedSize); !ok {
			return Inode{}, fmt.Errorf("inode %d: extended inode at %d runs past the image end: %w", nid, in.off, ErrCorrupt)
		}
		in.Size = littleEndian.Uint64(b[extendedOffSize:])
		in.StartBlock = littleEndian.Uint32(b[extendedOffU:])
		in.Ino = littleEndian.Uint32(b[extendedOffIno:])
		in.UID = littleEndian.Uint32(b[extendedOffUID:])
		in.GID = littleEndian.Uint32(b[extendedOffGID:])
		in.MtimeSec = int64(littleEndian.Uint64(b[extendedOffMtime:]))
		in.MtimeNsec = littleEndian.Uint32(b[extendedOffMtimeNsec:])
		in.Nlink = littleEndian.Uint32(b[extendedOffNlink:])
	} else {
		in.Nlink = uint32(littleEndian.Uint16(b[compactOffNlink:]))
		in.Size = uint64(littleEndian.Uint32(b[compactOffSize:]))
		in.StartBlock = littleEndian.Uint32(b[compactOffU:])
		in.Ino = littleEndian.Uint32(b[compactOffIno:])
		in.UID = uint32(littleEndian.Uint16(b[compactOffUID:]))
		in.GID = uint32(littleEndian.Uint16(b[compactOffGID:]))
		// Compact inodes store their mtime relative to the build time.
		in.MtimeSec = int64(im.sb.BuildTime + uint64(littleEndian.Uint32(b[compactOffMtime:])))
		in.MtimeNsec = im.sb.BuildTimeNsec
	}
	switch in.Mode & ModeFmt {
	case ModeReg, ModeDir, ModeLnk:
	case ModeChr, ModeBlk:
		in.Rdev = in.StartBlock
	case ModeFifo, ModeSock:
	default:
		return Inode{}, fmt.Errorf("inode %d: mode %#o has no valid file type: %w", nid, in.Mode, ErrCorrupt)
	}

	in.xattrOff = in.off + isize
	in.xattrSize = uint32(XattrIbodySize(in.XattrCount))
	if _, ok := im.span(in.xattrOff, uint64(in.xattrSize)); !ok {
		return Inode{}, fmt.Errorf("inode %d: xattr body of %d bytes runs past the image end: %w", nid, in.xattrSize, ErrCorrupt)
	}
	if err := im.checkLayout(&in); err != nil {
		return Inode{}, err
	}
	return in, nil
}

// checkLayout checks the data layout and what it places inside the inode's
// own metadata (the inline tail, the chunk map).
func (im *Image) checkLayout(in *Inode) error {
	switch in.Layout {
	case layoutCompressedFull, layoutCompressedCompact:
		return fmt.Errorf("inode %d: compressed data layout %d: %w", in.Nid, in.Layout, ErrUnsupported)
	case LayoutFlatPlain, LayoutFlatInline, LayoutChunkBased:
	default:
		return fmt.Errorf("inode %d: data layout %d: %w", in.Nid, in.Layout, ErrCorrupt)
	}
	if !in.hasData() {
		return nil
	}
	end := in.xattrOff + uint64(in.xattrSize)
	switch in.Layout {
	case LayoutFlatInline:
		in.tailOff = end
		n := in.tailLen()
		if _, ok := im.span(in.tailOff, n); !ok {
			return fmt.Errorf("inode %d: inline tail of %d bytes runs past the image end: %w", in.Nid, n, ErrCorrupt)
		}
		// The kernel maps the tail within one block.
		if in.tailOff%BlockSize+n > BlockSize {
			return fmt.Errorf("inode %d: inline tail of %d bytes at %d crosses a block boundary: %w", in.Nid, n, in.tailOff, ErrCorrupt)
		}
	case LayoutChunkBased:
		if in.StartBlock&^chunkFormatAll != 0 {
			return fmt.Errorf("inode %d: chunk format %#x has unknown bits: %w", in.Nid, in.StartBlock, ErrUnsupported)
		}
		unit := in.chunkEntrySize()
		in.chunkMap = (end + unit - 1) &^ (unit - 1)
		bits := in.chunkBits()
		chunks := in.Size >> bits
		if in.Size&(1<<bits-1) != 0 {
			chunks++
		}
		if chunks > uint64(len(im.data))/unit {
			return fmt.Errorf("inode %d: %d chunks of 2^%d bytes, more than the image holds: %w", in.Nid, chunks, bits, ErrCorrupt)
		}
		if _, ok := im.span(in.chunkMap, chunks*unit); !ok {
			return fmt.Errorf("inode %d: chunk map of %d entries runs past the image end: %w", in.Nid, chunks, ErrCorrupt)
		}
	}
	return nil
}
