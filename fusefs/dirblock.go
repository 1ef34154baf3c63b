package fusefs

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/composefs/composefs-go/erofs"
)

// A directory is read block by block, so that a listing can resume at any
// block without decoding those before it: the position of dirent i of block
// b is b<<cookieBits | i (a block holds at most 4096/12 dirents), and the
// offset the kernel gets back after an entry is the position of the next
// one. Listings stay stateless and offsets stay valid for good.
const (
	cookieBits = 9
	cookieMask = 1<<cookieBits - 1
)

// dirBlock is one directory block, copied out of the image, with its
// dirent table checked: {nid u64, nameoff u16, file_type u8, reserved u8}
// entries, then the names they point at, the last one running to the
// first NUL or the block's end.
type dirBlock struct {
	nid   uint64 // the directory, for errors
	index uint64
	buf   [erofs.BlockSize]byte
	b     []byte
	count int
}

// load reads block index of directory dir; false past its end.
func (d *dirBlock) load(img *erofs.Image, dir *erofs.Inode, index uint64) (bool, error) {
	if index >= (dir.Size+erofs.BlockSize-1)/erofs.BlockSize {
		return false, nil
	}
	off := index * erofs.BlockSize
	n := min(dir.Size-off, erofs.BlockSize)
	d.nid, d.index, d.b = dir.Nid, index, d.buf[:n]
	if _, err := img.ReadAt(dir, d.b, int64(off)); err != nil && err != io.EOF {
		return false, fmt.Errorf("directory block %d: %w", index, err)
	}
	if n < erofs.DirentSize {
		return false, d.corrupt("%d bytes, too short for a dirent", n)
	}
	first := int(binary.LittleEndian.Uint16(d.b[8:]))
	if first < erofs.DirentSize || first%erofs.DirentSize != 0 || first > len(d.b) {
		return false, d.corrupt("first nameoff %d", first)
	}
	d.count = first / erofs.DirentSize
	return true, nil
}

func (d *dirBlock) corrupt(format string, args ...any) error {
	return fmt.Errorf("inode %d: directory block %d: %s: %w", d.nid, d.index, fmt.Sprintf(format, args...), erofs.ErrCorrupt)
}

// entry returns dirent i: its name (aliasing the block), nid and file type.
// Names must be sorted within the block and hold no slash or NUL, or the
// block is corrupt (the kernel would refuse them in a listing anyway).
func (d *dirBlock) entry(i int) (name []byte, nid uint64, ftype uint8, err error) {
	de := d.b[i*erofs.DirentSize:]
	nid = binary.LittleEndian.Uint64(de)
	start := int(binary.LittleEndian.Uint16(de[8:]))
	ftype = de[10]
	end := len(d.b)
	if i+1 < d.count {
		end = int(binary.LittleEndian.Uint16(d.b[(i+1)*erofs.DirentSize+8:]))
	}
	if start < d.count*erofs.DirentSize || start >= end || end > len(d.b) {
		return nil, 0, 0, d.corrupt("dirent %d: name at %d..%d", i, start, end)
	}
	name = d.b[start:end]
	if i+1 == d.count {
		if z := bytes.IndexByte(name, 0); z >= 0 {
			name = name[:z]
		}
	}
	if len(name) == 0 || len(name) > erofs.NameLen || bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
		return nil, 0, 0, d.corrupt("dirent %d: bad name %q", i, name)
	}
	if i > 0 {
		// The previous name runs from its nameoff to this one's.
		ps := int(binary.LittleEndian.Uint16(d.b[(i-1)*erofs.DirentSize+8:]))
		if ps >= start || bytes.Compare(d.b[ps:start], name) >= 0 {
			return nil, 0, 0, d.corrupt("dirent %d: name %q does not sort after the one before", i, name)
		}
	}
	return name, nid, ftype, nil
}

func isDotOrDotDot(name []byte) bool {
	return len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.'
}
