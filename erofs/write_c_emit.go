package erofs

import (
	"bytes"
	"fmt"
)

// direntType maps a mode to its dirent file type.
func direntType(mode uint32) uint8 {
	for ft, m := range fileTypeModes {
		if m != 0 && m == mode&ModeFmt {
			return uint8(ft)
		}
	}
	return ftUnknown
}

// emit writes the image whose layout layoutInodes computed.
func (w *cWriter) emit(out *emitter) error {
	var hdr [superblockOffset]byte
	h := Header{Magic: composefsMagic, Version: composefsHeaderVersion, ComposefsVersion: uint32(w.version)}
	if w.hasACL {
		h.Flags |= composefsFlagHasACL
	}
	h.Put(hdr[:])
	out.write(hdr[:])

	var sb [superblockSize]byte
	Superblock{
		Magic:         erofsMagic,
		FeatureCompat: featureCompatMtime | featureCompatXattrFilter,
		BlkSzBits:     BlockBits,
		RootNid:       uint16(w.root.c.nid),
		Inos:          uint64(len(w.nodes)),
		BuildTime:     uint64(w.minMtime.sec),
		BuildTimeNsec: w.minMtime.nsec,
		Blocks:        uint32(w.dataStart/BlockSize + w.dataBlocks),
		MetaBlkAddr:   0,
		XattrBlkAddr:  uint32(w.inodesEnd / BlockSize),
	}.Put(sb[:])
	out.write(sb[:])

	w.curEnd = w.dataStart
	buf := make([]byte, 0, 2*BlockSize)
	for _, n := range w.nodes {
		out.zeros(n.c.ipad)
		if out.pos%InodeSlotSize != 0 || out.pos/InodeSlotSize != n.c.nid {
			return fmt.Errorf("internal error: inode of %s at %d, planned nid %d", n.path, out.pos, n.c.nid)
		}
		buf = w.appendInode(buf[:0], n)
		out.write(buf)
	}
	out.align(InodeSlotSize)
	if out.pos != w.inodesEnd {
		return fmt.Errorf("internal error: inodes end at %d, planned %d", out.pos, w.inodesEnd)
	}
	for _, x := range w.shared {
		idx, suffix := splitXattrNameC(x.name)
		buf = putXattrEntry(buf[:0], idx, suffix, x.value)
		out.write(buf)
	}
	out.align(BlockSize)
	for _, n := range w.nodes {
		w.emitBlocks(out, n, buf)
	}
	if want := w.dataStart + w.dataBlocks*BlockSize; out.pos != want {
		return fmt.Errorf("internal error: image is %d bytes, planned %d", out.pos, want)
	}
	return nil
}

// appendInode encodes the node's inode, xattr body and inline tail.
func (w *cWriter) appendInode(b []byte, n *wnode) []byte {
	ft := n.fileType()
	layout := uint16(LayoutFlatPlain)
	if n.c.tail > 0 {
		layout = LayoutFlatInline
	}
	size := n.cDataSize()
	var iu uint32
	var chunks uint64
	switch ft {
	case ModeDir, ModeReg, ModeLnk:
		if n.c.nBlocks > 0 {
			iu = uint32(w.curEnd / BlockSize)
			w.curEnd += n.c.nBlocks * BlockSize
		}
		if ft == ModeReg && n.isExternal() {
			var chunkBits uint32
			chunkBits, chunks = chunkBitsAndCount(n.size)
			layout = LayoutChunkBased
			// The chunk format is the low half of i_u; C leaves the
			// high half of a block address there.
			iu = iu&0xFFFF0000 | (chunkBits - BlockBits)
		}
	case ModeChr, ModeBlk:
		iu = uint32(n.rdev)
	}
	icount := uint16(xattrIcount(n.c.xattrSize))

	if n.c.compact {
		var in [inodeCompactSize]byte
		littleEndian.PutUint16(in[inodeOffFormat:], layout<<inodeDatalayoutBit|inodeLayoutCompact)
		littleEndian.PutUint16(in[inodeOffXattrCount:], icount)
		littleEndian.PutUint16(in[inodeOffMode:], uint16(n.mode))
		littleEndian.PutUint16(in[compactOffNlink:], uint16(n.nlink))
		littleEndian.PutUint32(in[compactOffSize:], uint32(size))
		littleEndian.PutUint32(in[compactOffU:], iu)
		littleEndian.PutUint32(in[compactOffIno:], n.c.ino)
		littleEndian.PutUint16(in[compactOffUID:], uint16(n.uid))
		littleEndian.PutUint16(in[compactOffGID:], uint16(n.gid))
		b = append(b, in[:]...)
	} else {
		var in [inodeExtendedSize]byte
		littleEndian.PutUint16(in[inodeOffFormat:], layout<<inodeDatalayoutBit|inodeLayoutExtended)
		littleEndian.PutUint16(in[inodeOffXattrCount:], icount)
		littleEndian.PutUint16(in[inodeOffMode:], uint16(n.mode))
		littleEndian.PutUint64(in[extendedOffSize:], size)
		littleEndian.PutUint32(in[extendedOffU:], iu)
		littleEndian.PutUint32(in[extendedOffIno:], n.c.ino)
		littleEndian.PutUint32(in[extendedOffUID:], n.uid)
		littleEndian.PutUint32(in[extendedOffGID:], n.gid)
		littleEndian.PutUint64(in[extendedOffMtime:], uint64(n.mtime.Sec))
		littleEndian.PutUint32(in[extendedOffMtimeNsec:], n.mtime.Nsec)
		littleEndian.PutUint32(in[extendedOffNlink:], n.nlink)
		b = append(b, in[:]...)
	}

	if n.c.xattrSize > 0 {
		b = w.appendXattrBody(b, n)
	}

	switch {
	case ft == ModeDir:
		if len(n.c.dirTail) > 0 {
			b = appendDirents(b, n.c.dirTail)
		}
	case ft == ModeLnk:
		if n.c.nBlocks == 0 {
			b = append(b, n.payload...)
		}
	case ft == ModeReg && n.c.tail > 0:
		if n.content != nil {
			b = append(b, n.content[n.size-n.c.tail:]...)
		} else {
			b = appendHoles(b, chunks)
		}
	}
	return b
}

// appendXattrBody encodes the header (bloom filter, shared count), the
// shared ids and the inline entries.
func (w *cWriter) appendXattrBody(b []byte, n *wnode) []byte {
	start := len(b)
	var filter uint32
	nShared := 0
	for i, x := range n.xattrs {
		idx, suffix := splitXattrNameC(x.name)
		filter |= xattrFilterBit(idx, suffix)
		if n.c.shared[i] >= 0 {
			nShared++
		}
	}
	var h [xattrIbodyHeaderSize]byte
	littleEndian.PutUint32(h[0:], xattrFilterDefault&^filter)
	h[4] = uint8(nShared)
	b = append(b, h[:]...)
	for i := range n.xattrs {
		if off := n.c.shared[i]; off >= 0 {
			// Shared ids count 4-byte words from the xattr block start.
			id := (w.inodesEnd%BlockSize + uint64(off)) / 4
			b = littleEndian.AppendUint32(b, uint32(id))
		}
	}
	for i, x := range n.xattrs {
		if n.c.shared[i] < 0 {
			idx, suffix := splitXattrNameC(x.name)
			b = putXattrEntry(b, idx, suffix, x.value)
		}
	}
	for uint64(len(b)-start) < n.c.xattrSize {
		b = append(b, 0)
	}
	return b
}

// appendDirents encodes one directory block (or inline tail): the dirents,
// then the names, unpadded.
func appendDirents(b []byte, entries []*wnode) []byte {
	nameoff := len(entries) * direntSize
	for _, c := range entries {
		t := c.target()
		var d [direntSize]byte
		littleEndian.PutUint64(d[0:], t.c.nid)
		littleEndian.PutUint16(d[8:], uint16(nameoff))
		d[10] = direntType(t.mode)
		b = append(b, d[:]...)
		nameoff += len(c.name)
	}
	for _, c := range entries {
		b = append(b, c.name...)
	}
	return b
}

var holeEntry = []byte{0xff, 0xff, 0xff, 0xff}

// appendHoles encodes a block map of n holes (EROFS_NULL_ADDR).
func appendHoles(b []byte, n uint64) []byte {
	for range n {
		b = append(b, holeEntry...)
	}
	return b
}

// emitBlocks writes the node's full data blocks, if any.
func (w *cWriter) emitBlocks(out *emitter, n *wnode, buf []byte) {
	for _, blk := range n.c.dirBlocks {
		out.write(appendDirents(buf[:0], blk))
		out.align(BlockSize)
	}
	if n.c.nBlocks == 0 {
		return
	}
	var data []byte
	switch n.fileType() {
	case ModeReg:
		if n.content == nil {
			// An external file whose block map did not fit inline: the
			// whole block is holes, as C writes it.
			out.write(bytes.Repeat(holeEntry, BlockSize/len(holeEntry)))
			return
		}
		data = n.content
	case ModeLnk:
		data = []byte(n.payload)
	default:
		return
	}
	for i := range n.c.nBlocks {
		lo := min(i*BlockSize, uint64(len(data)))
		hi := min(lo+BlockSize, uint64(len(data)))
		out.write(data[lo:hi])
		out.zeros(BlockSize - (hi - lo))
	}
}
