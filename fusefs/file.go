package fusefs

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// fileNode is a regular file: inline or in image blocks, or external (its
// content in the object its redirect names).
type fileNode struct {
	node
}

var (
	_ = (gofs.NodeOpener)((*fileNode)(nil))
	_ = (gofs.NodeReader)((*fileNode)(nil))
	_ = (gofs.NodeFlusher)((*fileNode)(nil))
	_ = (gofs.NodeFsyncer)((*fileNode)(nil))
	_ = (gofs.FilePassthroughFder)((*objectHandle)(nil))
	_ = (gofs.FileReleaser)((*objectHandle)(nil))
)

// Open refuses writing, and for an external file opens and (per the verity
// policy) checks its object before anything is read. Contents never change,
// so the kernel keeps its page cache across opens.
func (n *fileNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY || flags&syscall.O_TRUNC != 0 {
		return nil, 0, syscall.EROFS
	}
	f := n.fsys
	alg, digest, external, err := f.img.Metacopy(&n.ino)
	if err != nil {
		return nil, 0, f.errno(&n.node, "metacopy", err)
	}
	if !external {
		return nil, fuse.FOPEN_KEEP_CACHE, 0
	}
	payload, ok, err := f.img.Redirect(&n.ino)
	if err != nil {
		return nil, 0, f.errno(&n.node, "redirect", err)
	}
	if !ok {
		return nil, 0, f.errno(&n.node, "open", errNoRedirect)
	}
	if digest == nil && f.cfg.Verity == VerityRequire {
		f.cfg.Logger.Printf("%s: object %s: refused: no fs-verity digest and verity=require", n.path(), payload)
		return nil, 0, syscall.EIO
	}
	obj, err := f.openObject(payload)
	if err != nil {
		// overlayfs answers ENOENT for a missing data-only lower file.
		f.cfg.Logger.Printf("%s: object %s: %v", n.path(), payload, err)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, syscall.ENOENT
		}
		return nil, 0, syscall.EIO
	}
	if digest != nil && f.cfg.Verity != VerityOff {
		if err := f.cfg.Cache.Verify(obj, alg, digest); err != nil {
			obj.Close()
			f.cfg.Logger.Printf("%s: object %s: fs-verity check failed: %v", n.path(), payload, err)
			return nil, 0, syscall.EIO
		}
	}
	return &objectHandle{file: obj}, fuse.FOPEN_KEEP_CACHE, 0
}

func (f *FS) openObject(payload string) (*os.File, error) {
	if f.cfg.Store == nil {
		return nil, fs.ErrNotExist
	}
	return f.cfg.Store.Open(payload)
}

// Read serves an external file from its object (when passthrough is not in
// use), and any other file from the image.
func (n *fileNode) Read(ctx context.Context, fh gofs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if h, ok := fh.(*objectHandle); ok {
		return h.read(dest, off), 0
	}
	nr, err := n.fsys.img.ReadAt(&n.ino, dest, off)
	if err != nil && err != io.EOF {
		return nil, n.fsys.errno(&n.node, "read", err)
	}
	return fuse.ReadResultData(dest[:nr]), 0
}

// Flush has nothing to do; ENOSYS makes the kernel stop sending FLUSH on
// every close.
func (n *fileNode) Flush(ctx context.Context, fh gofs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

// Fsync has nothing to do; ENOSYS makes the kernel answer it itself.
func (n *fileNode) Fsync(ctx context.Context, fh gofs.FileHandle, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}

// objectHandle is an open external file: the object it reads from.
type objectHandle struct {
	file *os.File
}

// PassthroughFd lets the kernel read the object directly, bypassing us.
func (h *objectHandle) PassthroughFd() (int, bool) {
	return int(h.file.Fd()), true
}

// read answers with a reference to the object's bytes, which go-fuse
// splices to the kernel without copying them through our memory.
func (h *objectHandle) read(dest []byte, off int64) fuse.ReadResult {
	return fuse.ReadResultFd(h.file.Fd(), off, len(dest))
}

func (h *objectHandle) Release(ctx context.Context) syscall.Errno {
	h.file.Close()
	return 0
}

// symlinkNode is a symbolic link; its target is its data.
type symlinkNode struct {
	node
}

var _ = (gofs.NodeReadlinker)((*symlinkNode)(nil))

func (n *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	t, err := n.fsys.img.Readlink(&n.ino)
	if err != nil {
		return nil, n.fsys.errno(&n.node, "readlink", err)
	}
	return []byte(t), 0
}
