package fusefs

import (
	"io"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// walk visits every node reachable from the root through the node methods
// the kernel would call, as far as the image lets it, within limits that
// stop cycles. Errors are expected on damaged images; panics and hangs are
// not.
func walk(fsys *FS) {
	budget := 5000
	buf := make([]byte, 128<<10)
	xbuf := make([]byte, 64<<10)
	var visit func(n *gofs.Inode, depth int)
	visit = func(n *gofs.Inode, depth int) {
		budget--
		if budget < 0 || depth > 12 {
			return
		}
		ops := n.Operations()
		var ao fuse.AttrOut
		ops.(gofs.NodeGetattrer).Getattr(rootCtx, nil, &ao)
		ops.(gofs.NodeListxattrer).Listxattr(rootCtx, xbuf)
		ops.(gofs.NodeGetxattrer).Getxattr(rootCtx, "trusted.overlay.opaque", xbuf)
		switch o := ops.(type) {
		case *symlinkNode:
			o.Readlink(rootCtx)
		case *fileNode:
			fh, _, errno := o.Open(rootCtx, syscall.O_RDONLY)
			if errno != 0 {
				return
			}
			for off := int64(0); off < 256<<10; off += int64(len(buf)) {
				res, errno := o.Read(rootCtx, fh, buf, off)
				if errno != 0 {
					break
				}
				b, _ := res.Bytes(buf)
				res.Done()
				if len(b) == 0 {
					break
				}
			}
			if r, ok := fh.(gofs.FileReleaser); ok {
				r.Release(rootCtx)
			}
		case *dirNode:
			fh, _, _ := o.OpendirHandle(rootCtx, 0)
			h := fh.(*dirHandle)
			for i := 0; i < 2000; i++ {
				de, errno := h.Readdirent(rootCtx)
				if errno != 0 || de == nil {
					break
				}
				if de.Name == "." || de.Name == ".." {
					continue
				}
				var out fuse.EntryOut
				ch, errno := h.Lookup(rootCtx, de.Name, &out)
				if errno != 0 {
					continue
				}
				n.AddChild(de.Name, ch, false)
				visit(ch, depth+1)
			}
			var out fuse.EntryOut
			o.Lookup(rootCtx, "no such name", &out)
		}
	}
	visit(fsys.Root().EmbeddedInode(), 0)
}

// serveBytes sets up a server for image bytes the way a mount would, or
// returns false when the image is refused up front (which is fine).
func serveBytes(data []byte) (*FS, bool) {
	img, err := erofs.NewImage(data)
	if err != nil {
		return nil, false
	}
	fsys, err := New(img, Config{Store: dirStore(os.DevNull), Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, false
	}
	gofs.NewNodeFS(fsys.Root(), fsys.NodeOptions(MountOptions{Logger: log.New(io.Discard, "", 0)}))
	return fsys, true
}

func goldenImages(t testing.TB) []string {
	imgs, _ := filepath.Glob(filepath.Join(goldenDir(t), "c", "images", "*.cfs"))
	rs, _ := filepath.Glob(filepath.Join(goldenDir(t), "rs", "*.cfs"))
	return append(imgs, rs...)
}

func TestGoldenWalk(t *testing.T) {
	for _, p := range goldenImages(t) {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		fsys, ok := serveBytes(data)
		if !ok {
			t.Errorf("%s: refused", filepath.Base(p))
			continue
		}
		walk(fsys)
	}
}

// TestDamagedImages flips bytes in the metadata of golden images: every
// request must come back, with an error or not, and never panic.
func TestDamagedImages(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	served := 0
	for _, p := range goldenImages(t) {
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			data := append([]byte(nil), orig...)
			// Damage the metadata area mostly: superblock, inodes,
			// xattrs, directories.
			limit := min(len(data), 64<<10)
			for range 1 + rng.IntN(8) {
				data[1024+rng.IntN(limit-1024)] ^= byte(1 + rng.IntN(255))
			}
			fsys, ok := serveBytes(data)
			if !ok {
				continue
			}
			served++
			walk(fsys)
		}
	}
	t.Logf("%d damaged images served", served)
}

func FuzzServe(f *testing.F) {
	for _, p := range goldenImages(f) {
		if data, err := os.ReadFile(p); err == nil && len(data) < 256<<10 {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if fsys, ok := serveBytes(data); ok {
			walk(fsys)
		}
	})
}
