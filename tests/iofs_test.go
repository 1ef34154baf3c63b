package tests

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"testing/fstest"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/objects"
)

// TestIOFSMatchesKernel reads images through the composefs package alone,
// as a Go program would (composefs.Open with a flat store, fs.WalkDir,
// fs.ReadFile, ReadLink, the xattr methods, fstest.TestFS), and compares
// what it sees with the kernel's mount of the same image, path by path:
// types, permissions, owners, sizes, mtimes, links, inode numbers, xattrs,
// contents and symlink targets. Then a tampered object must fail to read,
// where the kernel (without fs-verity here) would serve it.
func TestIOFSMatchesKernel(t *testing.T) {
	requireRoot(t)
	for seed := uint64(1); seed <= 2; seed++ {
		tree := genTree(seed, 150)
		objDir := tempDir(t, fmt.Sprintf("objects-%d", seed))
		tree.putObjects(t, objDir)
		for _, v := range []int{0, 1, 2} {
			t.Run(fmt.Sprintf("seed%d/v%d", seed, v), func(t *testing.T) {
				image := tree.image(t, v)
				store, err := objects.OpenFlat(objDir)
				if err != nil {
					t.Fatal(err)
				}
				view, err := composefs.Open(image, composefs.Config{Store: store})
				if err != nil {
					t.Fatal(err)
				}
				defer view.Close()
				want := takeSnapshot(t, kernelMount(t, image, objDir))
				got := viewSnapshot(t, view)
				for _, e := range want.Entries {
					// io/fs has no d_ino or d_type of its own: what a
					// listing says is compared through the entries.
					e.DirType, e.DirIno = 0, 0
				}
				reportDiffs(t, snapshotDiffs(want, got), len(want.Entries))

			})
		}
	}

	// testing/fstest over a tree whose names it accepts (it refuses
	// backslashes, which Windows would read as separators), in the
	// versions that store a user's whiteout escaped, as a file: fstest
	// wants every listed name to open, and a V2 whiteout outside the root
	// is listed but not found, as the kernel has it.
	portable := genTreeOf(24, 150, strings.ReplaceAll(nameChars, "\\", ""))
	portableObjects := tempDir(t, "objects-portable")
	portable.putObjects(t, portableObjects)
	for _, v := range []int{0, 1} {
		store, _ := objects.OpenFlat(portableObjects)
		view, err := composefs.Open(portable.image(t, v), composefs.Config{Store: store})
		if err != nil {
			t.Fatal(err)
		}
		var files []string
		fs.WalkDir(view, ".", func(p string, d fs.DirEntry, err error) error {
			if _, ierr := d.Info(); err == nil && ierr == nil && p != "." {
				files = append(files, p)
			}
			return nil
		})
		if err := fstest.TestFS(view, files...); err != nil {
			t.Errorf("v%d: %v", v, err)
		}
		view.Close()
	}

	// A tampered object: the kernel without fs-verity serves its bytes;
	// the view refuses them.
	tree := genTree(23, 60)
	objDir := tempDir(t, "objects-tampered")
	tree.putObjects(t, objDir)
	image := tree.image(t, 1)
	// The victim is an object some file names with its digest, picked in
	// the tree's order: a file without a digest is served whatever its
	// object holds, as the kernel does, so only files with one must refuse.
	var victim string
	checked := map[string]bool{}
	for _, e := range tree.entries {
		if e.Digest != "" && len(tree.objects[e.Payload]) > 0 && victim == "" {
			victim = e.Payload
		}
		if e.Digest != "" && e.Payload == victim {
			checked[strings.TrimPrefix(e.Path, "/")] = true
		}
	}
	if victim == "" {
		t.Fatal("the tree has no object")
	}
	p := filepath.Join(objDir, victim)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0x20
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	store, _ := objects.OpenFlat(objDir)
	view, err := composefs.Open(image, composefs.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	defer view.Close()
	refused := 0
	fs.WalkDir(view, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		content, err := fs.ReadFile(view, p)
		if errors.Is(err, composefs.ErrDigestMismatch) {
			refused++
		} else if err == nil && string(content) == string(b) && checked[p] {
			t.Errorf("%s: the tampered object's bytes were served", p)
		}
		return nil
	})
	if refused == 0 {
		t.Errorf("no file of the tampered object %s was refused", victim)
	}
}

// viewSnapshot records the view as takeSnapshot records a mount, through
// io/fs and the view's xattr methods only.
func viewSnapshot(t *testing.T, view *composefs.FS) *snapshot {
	t.Helper()
	s := &snapshot{Entries: map[string]*entryRecord{}, Listings: map[string][]string{}}
	err := fs.WalkDir(view, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		key := "/" + p
		if p == "." {
			key = "/"
		}
		e := &entryRecord{}
		s.Entries[key] = e
		info, err := d.Info()
		if err != nil {
			e.StatErr = errnoString(err)
			return nil
		}
		a := info.Sys().(*composefs.Attr)
		e.Mode, e.UID, e.GID = a.Mode, a.UID, a.GID
		e.Size, e.Nlink, e.Rdev = int64(a.Size), uint64(a.Nlink), uint64(a.Rdev)
		e.Mtime = [2]int64{a.MtimeSec, int64(a.MtimeNsec)}
		e.Ino = a.Ino
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFLNK:
			target, err := view.ReadLink(p)
			if err != nil {
				target = "error: " + errnoString(err)
			}
			e.Target = target
		case unix.S_IFREG:
			e.Content = viewContentHash(view, p, e.Size)
		case unix.S_IFDIR:
			list, err := fs.ReadDir(view, p)
			if err != nil {
				s.Listings[key] = []string{"error: " + errnoString(err)}
				break
			}
			names := []string{".", ".."}
			for _, l := range list {
				names = append(names, l.Name())
			}
			sort.Strings(names)
			s.Listings[key] = names
		}
		names, err := view.ListXattr(p)
		if err != nil {
			e.XattrErr = errnoString(err)
		}
		e.Xattrs = xattrRecords(names, func(name string) ([]byte, error) { return view.GetXattr(p, name) }, errnoString)
		return nil
	})
	if err != nil {
		t.Fatalf("walking the view: %v", err)
	}
	s.groupHardlinks()
	return s
}

// errnoString names the errno the kernel would answer for a view's error.
func errnoString(err error) string {
	return unix.ErrnoName(composefs.Errno(err))
}

// viewContentHash hashes a file's bytes as contentHash does a mount's.
func viewContentHash(view *composefs.FS, p string, size int64) string {
	f, err := view.Open(p)
	if err != nil {
		return "error: " + errnoString(err)
	}
	defer f.Close()
	return hashContent(f.(interface {
		io.Reader
		io.ReaderAt
	}), size, errnoString)
}
