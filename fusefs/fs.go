package fusefs

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// Config says where external files' contents come from and how they are
// checked.
type Config struct {
	// Store holds the objects external files name. Nil means no object
	// exists: opening an external file fails with ENOENT.
	Store objects.Store
	// Verity is the policy for checking objects against their digest.
	Verity VerityMode
	// Cache remembers objects already verified, so each unchanged object
	// is hashed once. Nil gets a cache of the file system's own.
	Cache *verity.Cache
	// Logger receives one line per refused open and per damaged part of
	// the image met while serving. Nil means log.Default().
	Logger *log.Logger
}

// FS is one composefs image served through FUSE.
type FS struct {
	img  *erofs.Image
	cfg  Config
	root *dirNode
}

// New prepares img for serving. It decodes the root inode only, refusing an
// image whose root is not a directory; everything else is decoded when the
// kernel asks for it.
func New(img *erofs.Image, cfg Config) (*FS, error) {
	if cfg.Cache == nil {
		cfg.Cache = verity.NewCache()
	}
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	f := &FS{img: img, cfg: cfg}
	nid := img.RootNid()
	in, err := img.Inode(nid)
	if err != nil {
		return nil, fmt.Errorf("root inode: %w", err)
	}
	if !in.IsDir() {
		return nil, fmt.Errorf("root inode %d is not a directory (mode %#o): %w", nid, in.Mode, erofs.ErrCorrupt)
	}
	if nid == 0 {
		return nil, fmt.Errorf("root nid 0 lies in the image header: %w", erofs.ErrCorrupt)
	}
	f.root = &dirNode{node: node{fsys: f, ino: in}, isRoot: true}
	return f, nil
}

// Root is the root directory node, to pass to fs.NewNodeFS or fs.Mount
// (with the options from NodeOptions, which carry the root's inode number).
func (f *FS) Root() gofs.InodeEmbedder { return f.root }

// Image is the image being served.
func (f *FS) Image() *erofs.Image { return f.img }

// errno turns an error from the image or the store into the errno the
// request answers: ENOENT for a missing name or object, EINVAL for a
// redirect overlayfs would refuse, EIO for anything else (damage included),
// which fails that one request and nothing more.
func (f *FS) errno(n *node, what string, err error) syscall.Errno {
	if errors.Is(err, fs.ErrNotExist) {
		return syscall.ENOENT
	}
	f.cfg.Logger.Printf("%s: %s: %v", n.path(), what, err)
	if errors.As(err, new(errInvalidRedirect)) {
		return syscall.EINVAL
	}
	return syscall.EIO
}
