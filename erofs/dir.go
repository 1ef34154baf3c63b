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
//
// A position in a directory names one dirent without decoding those before
// it: block b, dirent i is b<<dirPosBits | i (a block holds at most
// 4096/12 dirents). Positions are stable for the image's life, which is
// what FUSE's READDIR offsets need: a listing resumes anywhere, statelessly.
const (
	dirPosBits = 9
	dirPosMask = 1<<dirPosBits - 1
)

// Dirent is one directory entry as stored. Name aliases the image: it is
// valid until the image is closed and must not be modified.
type Dirent struct {
	Name []byte
	Nid  uint64
	Type uint8 // FTReg, FTDir, ...: the type the dirent claims
	// Next is the position of the entry after this one, where a listing
	// that stops here resumes.
	Next uint64
}

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
	if n < direntSize {
		return dirBlock{}, d.corrupt("%d bytes, too short for a dirent", n)
	}
	first := int(littleEndian.Uint16(d.b[8:]))
	if first < direntSize || first%direntSize != 0 || first > len(d.b) {
		return dirBlock{}, d.corrupt("first nameoff %d", first)
	}
	d.count = first / direntSize
	return d, nil
}

func (d *dirBlock) corrupt(format string, args ...any) error {
	return fmt.Errorf("inode %d: directory block %d: %s: %w", d.nid, d.index, fmt.Sprintf(format, args...), ErrCorrupt)
}

// nameAt returns the bytes of name i, bounds checked but not otherwise.
func (d *dirBlock) nameAt(i int) ([]byte, error) {
	start := int(littleEndian.Uint16(d.b[i*direntSize+8:]))
	end := len(d.b)
	if i+1 < d.count {
		end = int(littleEndian.Uint16(d.b[(i+1)*direntSize+8:]))
	}
	if start < d.count*direntSize || start >= end || end > len(d.b) {
		return nil, d.corrupt("dirent %d: name at %d..%d", i, start, end)
	}
	name := d.b[start:end]
	if i+1 == d.count {
		if z := bytes.IndexByte(name, 0); z >= 0 {
			name = name[:z]
		}
	}
	if len(name) == 0 || len(name) > nameLen {
		return nil, d.corrupt("dirent %d: name of %d bytes", i, len(name))
	}
	return name, nil
}

// entry returns dirent i: its name (aliasing the image), nid and file type.
// A name must hold no slash or NUL and sort after the one before it in the
// block, or the block is corrupt: lookups rely on the order, and the kernel
// would refuse such names in a listing.
func (d *dirBlock) entry(i int) (name []byte, nid uint64, ftype uint8, err error) {
	de := d.b[i*direntSize:]
	nid = littleEndian.Uint64(de)
	ftype = de[10]
	if name, err = d.nameAt(i); err != nil {
		return nil, 0, 0, err
	}
	if bytes.IndexByte(name, '/') >= 0 || bytes.IndexByte(name, 0) >= 0 {
		return nil, 0, 0, d.corrupt("dirent %d: name %q has a slash or NUL", i, name)
	}
	if i > 0 {
		prev, err := d.nameAt(i - 1)
		if err != nil {
			return nil, 0, 0, err
		}
		if bytes.Compare(prev, name) >= 0 {
			return nil, 0, 0, d.corrupt("dirent %d: name %q does not sort after %q", i, name, prev)
		}
	}
	return name, nid, ftype, nil
}

// dirBlocks is the number of blocks of directory in.
func dirBlocks(in *Inode) uint64 { return in.blocks() }

func notDir(in *Inode) error {
	return &fs.PathError{Op: "readdir", Path: fmt.Sprintf("inode %d", in.Nid), Err: syscall.ENOTDIR}
}

func (im *Image) checkDir(dir *Inode) error {
	if !dir.IsDir() {
		return notDir(dir)
	}
	if im.data == nil {
		return errClosed
	}
	return nil
}

// search finds where name is or would be in directory dir: a binary search
// over the blocks by their first names, then one within the block. It
// returns the block and the index of the first dirent whose name is >=
// name (index == count when all of the block's are smaller), and whether
// that dirent is name itself.
func (im *Image) search(dir *Inode, name string) (blk dirBlock, i int, found bool, err error) {
	// Find the last block whose first name is <= name.
	lo, hi := uint64(0), dirBlocks(dir)
	have := false
	for lo < hi {
		mid := lo + (hi-lo)/2
		d, err := im.dirBlock(dir, mid)
		if err != nil {
			return dirBlock{}, 0, false, err
		}
		first, err := d.nameAt(0)
		if err != nil {
			return dirBlock{}, 0, false, err
		}
		switch c := compareName(name, first); {
		case c == 0:
			return d, 0, true, nil
		case c > 0:
			blk, have = d, true
			lo = mid + 1
		default:
			hi = mid
		}
	}
	if !have {
		// name sorts before every entry (or the directory is empty).
		if dirBlocks(dir) == 0 {
			return dirBlock{}, 0, false, nil
		}
		d, err := im.dirBlock(dir, 0)
		return d, 0, false, err
	}
	// Within the block: entry 0 is already known to be smaller.
	lo2, hi2 := 1, blk.count
	for lo2 < hi2 {
		mid := lo2 + (hi2-lo2)/2
		n, err := blk.nameAt(mid)
		if err != nil {
			return dirBlock{}, 0, false, err
		}
		switch c := compareName(name, n); {
		case c == 0:
			return blk, mid, true, nil
		case c > 0:
			lo2 = mid + 1
		default:
			hi2 = mid
		}
	}
	return blk, lo2, false, nil
}

// Lookup finds name in directory dir. A missing name gives an error
// satisfying errors.Is(err, fs.ErrNotExist).
func (im *Image) Lookup(dir *Inode, name string) (nid uint64, ftype uint8, err error) {
	if err := im.checkDir(dir); err != nil {
		return 0, 0, err
	}
	blk, i, found, err := im.search(dir, name)
	if err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, &fs.PathError{Op: "lookup", Path: name, Err: fs.ErrNotExist}
	}
	_, nid, ftype, err = blk.entry(i)
	return nid, ftype, err
}

// DirPosAfter is the position in directory dir of the first entry whose
// name sorts after name, whether or not name itself is there: where a scan
// of the entries following a looked-up one starts.
func (im *Image) DirPosAfter(dir *Inode, name string) (uint64, error) {
	if err := im.checkDir(dir); err != nil {
		return 0, err
	}
	blk, i, found, err := im.search(dir, name)
	if err != nil || dirBlocks(dir) == 0 {
		return 0, err
	}
	if found {
		i++
	}
	return blk.index<<dirPosBits | uint64(i), nil
}

// ReadDirAt calls fn for the entries of directory dir from position pos (0:
// the first), "." and ".." included, in on-disk order, until fn returns
// false or the directory ends. Names are checked to increase strictly, as
// Lookup's binary search needs: within each block, and across the blocks
// one call reads. A position past the end lists nothing.
func (im *Image) ReadDirAt(dir *Inode, pos uint64, fn func(d *Dirent) bool) error {
	if err := im.checkDir(dir); err != nil {
		return err
	}
	var prev []byte
	var d Dirent
	for b, i := pos>>dirPosBits, int(pos&dirPosMask); b < dirBlocks(dir); b, i = b+1, 0 {
		blk, err := im.dirBlock(dir, b)
		if err != nil {
			return err
		}
		for ; i < blk.count; i++ {
			name, nid, ft, err := blk.entry(i)
			if err != nil {
				return err
			}
			if i == 0 && prev != nil && bytes.Compare(prev, name) >= 0 {
				return blk.corrupt("dirent 0: name %q does not sort after %q, the last of the block before", name, prev)
			}
			prev = name
			d = Dirent{Name: name, Nid: nid, Type: ft, Next: b<<dirPosBits | uint64(i+1)}
			if !fn(&d) {
				return nil
			}
		}
	}
	return nil
}

// ReadDir calls fn for every entry of directory dir but "." and "..", in
// on-disk order. An error from fn stops the walk and is returned.
func (im *Image) ReadDir(dir *Inode, fn func(name string, nid uint64, ftype uint8) error) error {
	var fnErr error
	err := im.ReadDirAt(dir, 0, func(d *Dirent) bool {
		if IsDotOrDotDot(d.Name) {
			return true
		}
		fnErr = fn(string(d.Name), d.Nid, d.Type)
		return fnErr == nil
	})
	if err != nil {
		return err
	}
	return fnErr
}

// IsDotOrDotDot tells whether a dirent name is "." or "..".
func IsDotOrDotDot(name []byte) bool {
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
