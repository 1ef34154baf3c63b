package erofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrCorrupt is wrapped by every error about a damaged image, together with
// what was wrong and where (inode, structure, offset).
var ErrCorrupt = errors.New("corrupt composefs image")

// ErrUnsupported is wrapped when an image is valid EROFS but uses something
// this reader does not handle: compression, extra devices, block sizes other
// than 4 KiB, unknown incompatible features.
var ErrUnsupported = errors.New("unsupported composefs image")

// Image is a composefs image opened for reading. The bytes are mapped (or
// held) once; everything below the superblock is decoded lazily, by nid, and
// every offset read from the image is checked before it is used. An Image is
// safe for concurrent use; Close must not race with other calls.
type Image struct {
	data   []byte
	mapped bool
	hdr    Header
	sb     Superblock
	// metaBase and xattrBase are byte offsets of the inode area and of the
	// shared xattr area.
	metaBase  uint64
	xattrBase uint64
	packedNid uint64

	prefixOnce sync.Once
	prefixes   []string // long xattr name prefixes, expanded
	prefixErr  error
}

// Open maps the image at path read-only and checks its composefs header and
// EROFS superblock. The file must not be truncated while the image is open.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Map(f)
}

// Map maps the image open as f, read-only, with the checks of Open. The
// mapping outlives f: the caller may close it once Map returns. It is the
// file's pages: a write to the file shows through, and a truncation makes
// reads past the new end fault (see Load for bytes that cannot change).
func Map(f *os.File) (*Image, error) {
	size, err := imageSize(f)
	if err != nil {
		return nil, err
	}
	data, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return mapped(data)
}

// Load copies the image open as f into private memory, read-only, with the
// checks of Open: what it shows then never changes, whatever happens to
// the file, so a digest of Bytes holds for as long as the image is open.
// It costs the image's size in memory.
func Load(f *os.File) (*Image, error) {
	size, err := imageSize(f)
	if err != nil {
		return nil, err
	}
	data, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, int64(size)), data); err != nil {
		unix.Munmap(data)
		return nil, fmt.Errorf("reading the image: %w", err)
	}
	if err := unix.Mprotect(data, unix.PROT_READ); err != nil {
		unix.Munmap(data)
		return nil, fmt.Errorf("mprotect: %w", err)
	}
	return mapped(data)
}

// imageSize checks that f can hold an image and returns its size.
func imageSize(f *os.File) (int, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, errors.New("not a regular file")
	}
	size := st.Size()
	if size < superblockOffset+superblockSize {
		return 0, fmt.Errorf("image is %d bytes, too small for a superblock: %w", size, ErrCorrupt)
	}
	if int64(int(size)) != size {
		return 0, fmt.Errorf("image of %d bytes is too large to map", size)
	}
	return int(size), nil
}

// mapped reads an image from a mapping of ours, which Close unmaps.
func mapped(data []byte) (*Image, error) {
	im, err := NewImage(data)
	if err != nil {
		_ = unix.Munmap(data)
		return nil, err
	}
	im.mapped = true
	return im, nil
}

// NewImage reads an image held in memory, with the same checks as Open.
// The image keeps data; the caller must not modify it.
func NewImage(data []byte) (*Image, error) {
	if len(data) < superblockOffset+superblockSize {
		return nil, fmt.Errorf("image is %d bytes, too small for a superblock: %w", len(data), ErrCorrupt)
	}
	im := &Image{data: data}
	im.hdr = decodeHeader(data)
	if err := im.checkHeader(); err != nil {
		return nil, err
	}
	im.sb = decodeSuperblock(data[superblockOffset:])
	im.packedNid = littleEndian.Uint64(data[superblockOffset+96:])
	if err := im.checkSuperblock(); err != nil {
		return nil, err
	}
	return im, nil
}

func (im *Image) checkHeader() error {
	h := im.hdr
	if h.Magic != composefsMagic {
		return fmt.Errorf("composefs header: magic %#08x, want %#08x (not a composefs image): %w",
			h.Magic, uint32(composefsMagic), ErrCorrupt)
	}
	if h.Version != composefsHeaderVersion {
		return fmt.Errorf("composefs header: version %d, want %d: %w", h.Version, composefsHeaderVersion, ErrUnsupported)
	}
	if h.ComposefsVersion > ComposefsVersion2 {
		return fmt.Errorf("composefs header: composefs_version %d, know 0..2: %w", h.ComposefsVersion, ErrUnsupported)
	}
	return nil
}

func (im *Image) checkSuperblock() error {
	sb := im.sb
	size := uint64(len(im.data))
	if sb.Magic != erofsMagic {
		return fmt.Errorf("superblock: magic %#08x, want %#08x: %w", sb.Magic, uint32(erofsMagic), ErrCorrupt)
	}
	if sb.BlkSzBits != BlockBits {
		return fmt.Errorf("superblock: block size 2^%d, only 4096 supported: %w", sb.BlkSzBits, ErrUnsupported)
	}
	if unknown := sb.FeatureIncompat &^ featureIncompatReaderSupports; unknown != 0 {
		return fmt.Errorf("superblock: incompatible features %#x: %w", unknown, ErrUnsupported)
	}
	if dbb := im.data[superblockOffset+sbOffDirBlkBits]; dbb != 0 {
		return fmt.Errorf("superblock: directory block size 2^%d above the block size: %w", BlockBits+int(dbb), ErrUnsupported)
	}
	if sb.ExtraDevices != 0 {
		return fmt.Errorf("superblock: %d extra devices: %w", sb.ExtraDevices, ErrUnsupported)
	}
	if end := uint64(superblockOffset + superblockSize + sbExtSlotSize*int(sb.SbExtSlots)); end > size {
		return fmt.Errorf("superblock: %d extension slots run past the image end: %w", sb.SbExtSlots, ErrCorrupt)
	}
	im.metaBase = uint64(sb.MetaBlkAddr) << BlockBits
	im.xattrBase = uint64(sb.XattrBlkAddr) << BlockBits
	if im.metaBase >= size {
		return fmt.Errorf("superblock: meta_blkaddr %d beyond the image end: %w", sb.MetaBlkAddr, ErrCorrupt)
	}
	if im.xattrBase > size {
		return fmt.Errorf("superblock: xattr_blkaddr %d beyond the image end: %w", sb.XattrBlkAddr, ErrCorrupt)
	}
	if im.metaBase+uint64(sb.RootNid)*InodeSlotSize+inodeCompactSize > size {
		return fmt.Errorf("superblock: root nid %d beyond the image end: %w", sb.RootNid, ErrCorrupt)
	}
	return nil
}

// Bytes are the image's bytes, which the caller must not modify.
func (im *Image) Bytes() []byte { return im.data }

// Close unmaps an image from Open; for NewImage it only forgets the bytes.
func (im *Image) Close() error {
	data := im.data
	im.data = nil
	if im.mapped && data != nil {
		im.mapped = false
		return unix.Munmap(data)
	}
	return nil
}

// Header returns the composefs header.
func (im *Image) Header() Header { return im.hdr }

// Superblock returns the EROFS superblock.
func (im *Image) Superblock() Superblock { return im.sb }

// RootNid is the nid of the root directory.
func (im *Image) RootNid() uint64 { return uint64(im.sb.RootNid) }

// Size is the image size in bytes.
func (im *Image) Size() int64 { return int64(len(im.data)) }

// span returns the n bytes at off, or false when they do not lie entirely
// inside the image (overflow included).
func (im *Image) span(off, n uint64) ([]byte, bool) {
	size := uint64(len(im.data))
	if off > size || n > size-off {
		return nil, false
	}
	return im.data[off : off+n : off+n], true
}

// errClosed is returned when an Image is used after Close.
var errClosed = fmt.Errorf("composefs image: %w", fs.ErrClosed)
