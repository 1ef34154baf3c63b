package composefs

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"sync"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// Config says where external files' contents come from and how they are
// checked.
type Config struct {
	// Store holds the objects external files name. Nil means no object
	// exists: opening an external file fails with fs.ErrNotExist, as the
	// kernel's open of a metacopy file without its data does.
	Store objects.Store
	// Verity is the policy for checking objects against their digest.
	Verity VerityMode
	// Cache remembers objects already verified, so that an unchanged
	// object is hashed once (once per open while it changed within
	// seconds of its hash: verity.Cache). Nil gets a cache of the FS's
	// own.
	Cache *verity.Cache
	// ImageDigest, when set, is the image's expected fs-verity digest
	// (SHA-256 or SHA-512, by its length). Open and OpenFile then copy the
	// image into private memory (erofs.Load) and check the digest over
	// exactly those bytes, so that what is shown is what was checked,
	// whatever happens to the file afterwards. A mismatch is an error
	// wrapping verity.ErrMismatch.
	ImageDigest []byte
}

// FS is a composefs image as the kernel's EROFS+overlayfs mount shows it.
// It is safe for concurrent use; Close must not race with other calls.
type FS struct {
	img     *erofs.Image
	cfg     Config
	rootNid uint64

	// dirs maps each directory nid met by path resolution to the one
	// place it lives (dirPlace). A directory reached from a second place
	// is a cycle or a directory hardlink; refusing it keeps every walk of
	// the io/fs view a walk of a tree, bounded by the image's dirents.
	dirs sync.Map
}

// Open maps the image at path (or loads it, with Config.ImageDigest) and
// shows it with cfg's store and policy.
func Open(path string, cfg Config) (*FS, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return OpenFile(f, cfg)
}

// OpenFile maps the image open as f (or loads it, with
// Config.ImageDigest); f may be closed once it returns.
func OpenFile(f *os.File, cfg Config) (*FS, error) {
	load := erofs.Map
	if cfg.ImageDigest != nil {
		load = erofs.Load
	}
	img, err := load(f)
	if err != nil {
		return nil, err
	}
	return checkAndShow(img, f.Name(), cfg)
}

// OpenBytes shows the image held in data, which must not change while the
// FS is in use.
func OpenBytes(data []byte, cfg Config) (*FS, error) {
	img, err := erofs.NewImage(data)
	if err != nil {
		return nil, err
	}
	return checkAndShow(img, "", cfg)
}

// checkAndShow checks img against cfg.ImageDigest, if set, and shows it;
// it closes img on failure. name is the image file's, "" for bytes.
func checkAndShow(img *erofs.Image, name string, cfg Config) (*FS, error) {
	if want := cfg.ImageDigest; want != nil {
		alg, ok := verity.AlgorithmForDigestSize(len(want))
		if !ok {
			img.Close()
			return nil, fmt.Errorf("image digest of %d bytes: neither SHA-256 nor SHA-512", len(want))
		}
		if got := verity.DigestBytes(alg, img.Bytes()); !bytes.Equal(got, want) {
			img.Close()
			mismatch := &verity.MismatchError{Alg: alg, Expected: want, Actual: got}
			if name == "" {
				// Bytes with no file behind them (OpenBytes).
				return nil, fmt.Errorf("image digest: %w", mismatch)
			}
			// A *fs.PathError, as os.Open's are, so that a caller
			// naming the image itself can drop this mention of it
			// (errpath.Cause).
			return nil, &fs.PathError{Op: "image digest of", Path: name, Err: mismatch}
		}
	}
	f, err := New(img, cfg)
	if err != nil {
		img.Close()
		return nil, err
	}
	return f, nil
}

// New shows an image already open. It decodes the root inode only,
// refusing an image whose root is not a directory; everything else is
// decoded when asked for. Close closes img.
func New(img *erofs.Image, cfg Config) (*FS, error) {
	if cfg.Cache == nil {
		cfg.Cache = verity.NewCache()
	}
	nid := img.RootNid()
	if nid == 0 {
		return nil, fmt.Errorf("root nid 0 lies in the image header: %w", erofs.ErrCorrupt)
	}
	in, err := img.Inode(nid)
	if err != nil {
		return nil, fmt.Errorf("root inode: %w", err)
	}
	if !in.IsDir() {
		return nil, fmt.Errorf("root inode %d is not a directory (mode %#o): %w", nid, in.Mode, erofs.ErrCorrupt)
	}
	return &FS{img: img, cfg: cfg, rootNid: nid}, nil
}

// Close unmaps the image. Objects already opened stay usable.
func (f *FS) Close() error { return f.img.Close() }

// Image is the image shown, for what only the on-disk format tells
// (superblock, layout): how a file is shown is f's business.
func (f *FS) Image() *erofs.Image { return f.img }

// Config is the configuration f was opened with, its defaults filled in.
func (f *FS) Config() Config { return f.cfg }

// RootNid is the nid of the root directory.
func (f *FS) RootNid() uint64 { return f.rootNid }

// Inode decodes the inode at nid.
func (f *FS) Inode(nid uint64) (erofs.Inode, error) { return f.img.Inode(nid) }
