package fusefs

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// walk visits every node reachable from the root through the requests the
// kernel would send, as far as the image lets it, within limits that stop
// cycles: a depth, and a budget of entries handled and listings asked
// for (a damaged directory can list itself thousands of times over).
// Errors are expected on damaged images; panics and hangs are not.
func walk(fsys *FS) {
	budget := 20000
	buf := make([]byte, 128<<10)
	xbuf := make([]byte, 64<<10)
	var visit func(nodeID uint64, depth int)
	visit = func(nodeID uint64, depth int) {
		budget--
		if budget < 0 || depth > 12 {
			return
		}
		h := fuse.InHeader{NodeId: nodeID}
		var ao fuse.AttrOut
		if st := fsys.GetAttr(nil, &fuse.GetAttrIn{InHeader: h}, &ao); !st.Ok() {
			return
		}
		fsys.ListXAttr(nil, &h, xbuf)
		fsys.GetXAttr(nil, &h, "trusted.overlay.opaque", xbuf)
		switch ao.Mode & syscall.S_IFMT {
		case syscall.S_IFLNK:
			fsys.Readlink(nil, &h)
		case syscall.S_IFREG:
			var oo fuse.OpenOut
			if st := fsys.Open(nil, &fuse.OpenIn{InHeader: h}, &oo); !st.Ok() {
				return
			}
			for off := uint64(0); off < 256<<10; off += uint64(len(buf)) {
				res, st := fsys.Read(nil, &fuse.ReadIn{InHeader: h, Fh: oo.Fh, Offset: off, Size: uint32(len(buf))}, buf)
				if !st.Ok() {
					break
				}
				b, _ := res.Bytes(buf)
				res.Done()
				if len(b) == 0 {
					break
				}
			}
			fsys.Release(nil, &fuse.ReleaseIn{InHeader: h, Fh: oo.Fh})
		case syscall.S_IFDIR:
			var names []string
			off := uint64(0)
			for i := 0; i < 200 && budget > 0; i++ {
				budget--
				l := fuse.NewDirEntryList(make([]byte, 4096), off)
				if st := fsys.ReadDirPlus(nil, &fuse.ReadIn{InHeader: h, Offset: off, Size: 4096}, l); !st.Ok() {
					break
				}
				b := l.Bytes()
				if len(b) == 0 {
					break
				}
				for len(b) > 0 {
					budget--
					eo := *(*fuse.EntryOut)(unsafe.Pointer(&b[0]))
					b = b[unsafe.Sizeof(fuse.EntryOut{}):]
					var de fuse.DirEntry
					de, b = parseDirent(b)
					off = de.Off
					if de.Name == "." || de.Name == ".." {
						continue
					}
					if len(names) < 50 {
						names = append(names, de.Name)
					}
					if eo.NodeId == 0 {
						fsys.Lookup(nil, &h, de.Name, &eo)
					}
					if eo.NodeId != 0 {
						visit(eo.NodeId, depth+1)
					}
				}
			}
			var eo fuse.EntryOut
			fsys.Lookup(nil, &h, "no such name", &eo)
			// Looking the entries up in order, as a program reading
			// the directory's files does, sets the read-ahead going
			// over this (maybe damaged) directory too.
			for _, name := range names {
				fsys.Lookup(nil, &h, name, &eo)
			}
		}
	}
	visit(fuse.FUSE_ROOT_ID, 0)
	fsys.ahead.pending.Wait()
	fsys.OnUnmount()
}

// serveBytes sets up a server for image bytes, or returns false when the
// image is refused up front (which is fine).
func serveBytes(data []byte) (*FS, bool) {
	img, err := erofs.NewImage(data)
	if err != nil {
		return nil, false
	}
	fsys, err := newFS(img, testConfig{Store: dirStore(os.DevNull), Logger: logbuf.Discard()})
	if err != nil {
		return nil, false
	}
	return fsys, true
}

func goldenImages(t testing.TB) []string {
	imgs, _ := filepath.Glob(filepath.Join(goldenDir(t), "c", "images", "*.cfs"))
	rs, _ := filepath.Glob(filepath.Join(goldenDir(t), "rs", "*.cfs"))
	return append(imgs, rs...)
}

// ownImages are the project's images of the test tree in each layout
// version: what the tests that serve whole images start from, golden data
// or not.
func ownImages(t testing.TB) (names []string, images [][]byte) {
	tt := newTestTree(t)
	for v := range 3 {
		names = append(names, fmt.Sprintf("own/v%d", v))
		images = append(images, fixture.Image(t, tt.dump, v))
	}
	return names, images
}

// forServedImages runs fn as a subtest over each of our images, then over
// each golden image (subtests that skip without the golden data).
func forServedImages(t *testing.T, fn func(t *testing.T, data []byte)) {
	names, images := ownImages(t)
	for i, name := range names {
		t.Run(name, func(t *testing.T) { fn(t, images[i]) })
	}
	t.Run("golden", func(t *testing.T) {
		for _, p := range goldenImages(t) {
			t.Run(filepath.Base(p), func(t *testing.T) {
				data, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				fn(t, data)
			})
		}
	})
}

// TestWalk serves whole images: every request of the walk comes back.
func TestWalk(t *testing.T) {
	forServedImages(t, func(t *testing.T, data []byte) {
		fsys, ok := serveBytes(data)
		if !ok {
			t.Fatal("refused")
		}
		walk(fsys)
	})
}

// TestDamagedImages flips bytes in the metadata of images: every request
// must come back, with an error or not, and never panic.
func TestDamagedImages(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	forServedImages(t, func(t *testing.T, orig []byte) {
		served := 0
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
		t.Logf("%d damaged images served", served)
	})
}

func FuzzServe(f *testing.F) {
	_, images := ownImages(f)
	for _, data := range images {
		f.Add(data)
	}
	for _, p := range golden.Images() {
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
