package erofs

import (
	"errors"
	"fmt"
	"io"
)

// symlinkMax bounds a symlink target, as PATH_MAX does for the kernel.
const symlinkMax = 4095

// extent maps file offset off (< in.Size) to the image bytes holding it, up
// to the end of the contiguous run (block run, tail or chunk) or of the
// image, whichever comes first. For a hole it returns nil data and the
// hole's length from off.
func (im *Image) extent(in *Inode, off uint64) (data []byte, hole uint64, err error) {
	if !in.hasData() {
		return nil, 0, fmt.Errorf("inode %d: mode %#o has no data", in.Nid, in.Mode)
	}
	if off >= in.Size {
		return nil, 0, io.EOF
	}
	switch in.Layout {
	case LayoutFlatPlain, LayoutFlatInline:
		blocksEnd := in.Size // bytes held by the out-of-line blocks
		if in.Layout == LayoutFlatInline {
			blocksEnd = in.Size - in.tailLen()
			if off >= blocksEnd {
				tail, _ := im.span(in.tailOff, in.tailLen()) // checked by Inode
				return tail[off-blocksEnd:], 0, nil
			}
		}
		if in.StartBlock == nullAddr {
			return nil, blocksEnd - off, nil
		}
		b, ok := im.clamped(uint64(in.StartBlock)<<BlockBits+off, blocksEnd-off)
		if !ok {
			return nil, 0, fmt.Errorf("inode %d: data at offset %d (block %d + %d) lies past the image end: %w",
				in.Nid, off, in.StartBlock, off>>BlockBits, ErrCorrupt)
		}
		return b, 0, nil
	case LayoutChunkBased:
		bits := in.chunkBits()
		chunk := off >> bits
		within := off & (1<<bits - 1)
		n := min(1<<bits-within, in.Size-off)
		unit := in.chunkEntrySize()
		e, ok := im.span(in.chunkMap+chunk*unit, unit)
		if !ok { // Inode checked the whole map
			return nil, 0, fmt.Errorf("inode %d: chunk %d outside the chunk map: %w", in.Nid, chunk, ErrCorrupt)
		}
		var blk uint32
		if unit == chunkIndexSize {
			blk = littleEndian.Uint32(e[4:]) // {advise, device_id, blkaddr}
		} else {
			blk = littleEndian.Uint32(e)
		}
		if blk == nullAddr {
			return nil, n, nil
		}
		b, ok := im.clamped(uint64(blk)<<BlockBits+within, n)
		if !ok {
			return nil, 0, fmt.Errorf("inode %d: offset %d in chunk %d at block %d lies past the image end: %w", in.Nid, off, chunk, blk, ErrCorrupt)
		}
		return b, 0, nil
	}
	return nil, 0, fmt.Errorf("inode %d: data layout %d: %w", in.Nid, in.Layout, ErrCorrupt)
}

// clamped returns up to n bytes at off, cut at the image end, as the
// kernel reads a mapped extent block by block; false when off itself lies
// outside the image.
func (im *Image) clamped(off, n uint64) ([]byte, bool) {
	size := uint64(len(im.data))
	if off >= size {
		return nil, false
	}
	n = min(n, size-off)
	return im.data[off : off+n : off+n], true
}

// ReadAt reads file data through the inode's layout, with io.ReaderAt
// semantics over in.Size bytes; holes read as zeros. External composefs
// files are all holes here: their content lives in the object store.
func (im *Image) ReadAt(in *Inode, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("inode %d: negative offset %d", in.Nid, off)
	}
	if im.data == nil {
		return 0, errClosed
	}
	if !in.hasData() {
		return 0, fmt.Errorf("inode %d: mode %#o has no data", in.Nid, in.Mode)
	}
	pos := uint64(off)
	n := 0
	for n < len(p) {
		if pos >= in.Size {
			return n, io.EOF
		}
		data, hole, err := im.extent(in, pos)
		if err != nil {
			return n, err
		}
		var k int
		if data != nil {
			k = copy(p[n:], data)
		} else {
			k = int(min(hole, uint64(len(p)-n)))
			clear(p[n : n+k])
		}
		n += k
		pos += uint64(k)
	}
	return n, nil
}

// Readlink returns a symlink's target, stored inline or in blocks.
func (im *Image) Readlink(in *Inode) (string, error) {
	if !in.IsSymlink() {
		return "", fmt.Errorf("inode %d: not a symlink", in.Nid)
	}
	if in.Size > symlinkMax {
		return "", fmt.Errorf("inode %d: symlink target of %d bytes: %w", in.Nid, in.Size, ErrCorrupt)
	}
	buf := make([]byte, in.Size)
	if _, err := im.ReadAt(in, buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return string(buf), nil
}

// contentBytes returns all of a regular file's data when it sits in the
// image; used for the dump view, where C shows a flat file's bytes inline.
func (im *Image) contentBytes(in *Inode) ([]byte, error) {
	if in.Size > uint64(len(im.data)) {
		return nil, fmt.Errorf("inode %d: %d bytes of data in a %d-byte image: %w", in.Nid, in.Size, len(im.data), ErrCorrupt)
	}
	buf := make([]byte, in.Size)
	if _, err := im.ReadAt(in, buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf, nil
}

// AllHoles tells whether a CHUNK_BASED file maps no block at all, as
// composefs writes external files (their content is in the object store).
func (im *Image) AllHoles(in *Inode) (bool, error) {
	if in.Layout != LayoutChunkBased || !in.hasData() {
		return false, nil
	}
	bits := in.chunkBits()
	chunks := in.Size >> bits
	if in.Size&(1<<bits-1) != 0 {
		chunks++
	}
	unit := in.chunkEntrySize()
	m, ok := im.span(in.chunkMap, chunks*unit)
	if !ok {
		return false, fmt.Errorf("inode %d: chunk map: %w", in.Nid, ErrCorrupt)
	}
	for i := uint64(0); i < chunks; i++ {
		e := m[i*unit:]
		if unit == chunkIndexSize {
			e = e[4:]
		}
		if littleEndian.Uint32(e) != nullAddr {
			return false, nil
		}
	}
	return true, nil
}
