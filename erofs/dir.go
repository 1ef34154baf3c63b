package erofs

import (
	"bytes"
	"fmt"
	"io/fs"
	"syscall"
)

// A directory is its data read in 4 KiB blocks. Each block starts with
// 12-byte dirents {nid u64, nameoff u16, file_type u8, reserved u8}; the
// names follow, unterminated, name i running to nameoff of i+1 and the last
// to the first NUL or the block's end. Names are sorted bytewise across the
// whole directory, "." and ".." included.

// dirBlock is one parsed directory block.
type dirBlock struct {
	nid   uint64 // the directory, for errors
	index uint64 // block number within the directory
	b     []byte
	count int
}

// dirBlock returns block i of directory in, its dirent table checked.
func (im *Image) dirBlock(in *Inode, i uint64) (dirBlock, error) {
	off := i << BlockBits
	n := min(in.Size-off, BlockSize)
	data, _, err := im.extent(in, off)
	if err != nil {
		return dirBlock{}, fmt.Errorf("%w (directory block %d)", err, i)
	}
	if uint64(len(data)) < n {
		return dirBlock{}, fmt.Errorf("inode %d: directory block %d is a hole or runs past the image end: %w", in.Nid, i, ErrCorrupt)
	}
	d := dirBlock{nid: in.Nid, index: i, b: data[:n:n]}
	if n < DirentSize {
		return dirBlock{}, d.corrupt("%d bytes, too short for a dirent", n)
	}
	first := int(littleEndian.Uint16(d.b[8:]))
	if first < DirentSize || first%DirentSize != 0 || first > len(d.b) {
		return dirBlock{}, d.corrupt("first nameoff %d", first)
	}
	d.count = first / DirentSize
	return d, nil
}

func (d *dirBlock) corrupt(format string, args ...any) error {
	return fmt.Errorf("inode %d: directory block %d: %s: %w", d.nid, d.index, fmt.Sprintf(format, args...), ErrCorrupt)
}

// entry returns dirent i: its name (aliasing the image), nid and file type.
func (d *dirBlock) entry(i int) (name []byte, nid uint64, ftype uint8, err error) {
	de := d.b[i*DirentSize:]
	nid = littleEndian.Uint64(de)
	start := int(littleEndian.Uint16(de[8:]))
	ftype = de[10]
	end := len(d.b)
	if i+1 < d.count {
		end = int(littleEndian.Uint16(d.b[(i+1)*DirentSize+8:]))
	}
	if start < d.count*DirentSize || start >= end || end > len(d.b) {
		return nil, 0, 0, d.corrupt("dirent %d: name at %d..%d", i, start, end)
	}
	name = d.b[start:end]
	if i+1 == d.count {
		if z := bytes.IndexByte(name, 0); z >= 0 {
			name = name[:z]
		}
	}
	if len(name) == 0 || len(name) > NameLen {
		return nil, 0, 0, d.corrupt("dirent %d: name of %d bytes", i, len(name))
	}
	return name, nid, ftype, nil
}

// dirBlocks is the number of blocks of directory in.
func dirBlocks(in *Inode) uint64 { return in.blocks() }

func notDir(in *Inode) error {
	return &fs.PathError{Op: "readdir", Path: fmt.Sprintf("inode %d", in.Nid), Err: syscall.ENOTDIR}
}

// Lookup finds name in directory dir: a binary search over the blocks by
// their first names, then one within the block. A missing name gives an
// error satisfying errors.Is(err, fs.ErrNotExist).
func (im *Image) Lookup(dir *Inode, name string) (nid uint64, ftype uint8, err error) {
	if !dir.IsDir() {
		return 0, 0, notDir(dir)
	}
	if im.data == nil {
		return 0, 0, errClosed
	}
	// Find the last block whose first name is <= name.
	lo, hi := uint64(0), dirBlocks(dir)
	found := false
	var cand dirBlock
	for lo < hi {
		mid := lo + (hi-lo)/2
		d, err := im.dirBlock(dir, mid)
		if err != nil {
			return 0, 0, err
		}
		first, nid, ft, err := d.entry(0)
		if err != nil {
			return 0, 0, err
		}
		switch c := compareName(name, first); {
		case c == 0:
			return nid, ft, nil
		case c > 0:
			cand, found = d, true
			lo = mid + 1
		default:
			hi = mid
		}
	}
	if found {
		// Within the block: entry 0 is already known to be smaller.
		lo, hi := 1, cand.count
		for lo < hi {
			mid := lo + (hi-lo)/2
			n, nid, ft, err := cand.entry(mid)
			if err != nil {
				return 0, 0, err
			}
			switch c := compareName(name, n); {
			case c == 0:
				return nid, ft, nil
			case c > 0:
				lo = mid + 1
			default:
				hi = mid
			}
		}
	}
	return 0, 0, &fs.PathError{Op: "lookup", Path: name, Err: fs.ErrNotExist}
}

// ReadDir calls fn for every entry of directory dir but "." and "..", in
// on-disk order. It checks that the names are strictly increasing, since
// Lookup's binary search relies on it. An error from fn stops the walk and
// is returned.
func (im *Image) ReadDir(dir *Inode, fn func(name string, nid uint64, ftype uint8) error) error {
	if !dir.IsDir() {
		return notDir(dir)
	}
	if im.data == nil {
		return errClosed
	}
	var prev []byte
	for i, n := uint64(0), dirBlocks(dir); i < n; i++ {
		d, err := im.dirBlock(dir, i)
		if err != nil {
			return err
		}
		for j := 0; j < d.count; j++ {
			name, nid, ft, err := d.entry(j)
			if err != nil {
				return err
			}
			if prev != nil && bytes.Compare(prev, name) >= 0 {
				return d.corrupt("dirent %d: name %q does not sort after %q", j, name, prev)
			}
			prev = name
			if bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
				return d.corrupt("dirent %d: name %q has a slash or NUL", j, name)
			}
			if isDotOrDotDot(name) {
				continue
			}
			if err := fn(string(name), nid, ft); err != nil {
				return err
			}
		}
	}
	return nil
}

func isDotOrDotDot(name []byte) bool {
	return len(name) == 1 && name[0] == '.' || len(name) == 2 && name[0] == '.' && name[1] == '.'
}

// compareName compares a looked-up name with a stored one bytewise, as
// strings.Compare would, without converting.
func compareName(name string, stored []byte) int {
	n := min(len(name), len(stored))
	for i := 0; i < n; i++ {
		if name[i] != stored[i] {
			if name[i] < stored[i] {
				return -1
			}
			return 1
		}
	}
	switch {
	case len(name) < len(stored):
		return -1
	case len(name) > len(stored):
		return 1
	}
	return 0
}
