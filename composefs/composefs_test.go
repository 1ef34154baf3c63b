package composefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"testing/fstest"
	"time"

	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// tree is a small image with every kind of entry and its objects in a flat
// store: good ones, one without a digest, one tampered with, one missing.
type tree struct {
	dump                     string
	store                    string
	ext, nodigest, bad, gone fixture.Object
	good                     bool // only the entries every check can read
}

func content(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func newTree(t *testing.T, good bool) *tree {
	rng := rand.New(rand.NewPCG(3, 4))
	tr := &tree{
		store:    t.TempDir(),
		ext:      fixture.NewObject(content(rng, 70_000)),
		nodigest: fixture.NewObject(content(rng, 3000)),
		bad:      fixture.NewObject(content(rng, 9000)),
		gone:     fixture.NewObject(content(rng, 10)),
		good:     good,
	}
	tr.ext.Put(t, tr.store, tr.ext.Content)
	tr.nodigest.Put(t, tr.store, tr.nodigest.Content)
	flipped := bytes.Clone(tr.bad.Content)
	flipped[1234] ^= 1
	tr.bad.Put(t, tr.store, flipped)

	var b strings.Builder
	b.WriteString("/ 0 40755 4 0 0 0 1000.5 - - - user.root=1\n")
	b.WriteString("/dir 0 40750 2 1 2 0 2000.123456789 - - - user.a=1 trusted.overlay.custom=2 security.x=s\n")
	b.WriteString("/dir/inline 5 100644 2 0 0 0 1000.0 - hello -\n")
	b.WriteString("/dir/hl 0 @100644 0 0 0 0 0.0 /dir/inline - -\n")
	fmt.Fprintf(&b, "/dir/ext %d 100640 1 3 4 0 1000.0 %s - %s\n", len(tr.ext.Content), tr.ext.Payload, tr.ext.Digest)
	fmt.Fprintf(&b, "/dir/nodigest %d 100644 1 0 0 0 1000.0 %s - -\n", len(tr.nodigest.Content), tr.nodigest.Payload)
	b.WriteString("/dir/link 6 120777 1 0 0 0 1000.0 target - -\n")
	b.WriteString("/dir/empty 0 100600 1 0 0 0 1000.0 - - -\n")
	b.WriteString("/dev 0 20644 1 0 0 259 1000.0 - - -\n")
	b.WriteString("/fifo 0 10644 1 0 0 0 1000.0 - - -\n")
	b.WriteString("/rootwh 0 20000 1 0 0 0 1000.0 - - -\n")
	if !good {
		fmt.Fprintf(&b, "/dir/bad %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tr.bad.Content), tr.bad.Payload, tr.bad.Digest)
		fmt.Fprintf(&b, "/dir/gone %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tr.gone.Content), tr.gone.Payload, tr.gone.Digest)
		b.WriteString("/wdir 0 40755 2 0 0 0 1000.0 - - -\n")
		b.WriteString("/wdir/wh 0 20000 1 0 0 0 1000.0 - - -\n")
		b.WriteString("/wdir/f 0 100644 1 0 0 0 1000.0 - - -\n")
	}
	tr.dump = b.String()
	return tr
}

func (tr *tree) open(t *testing.T, version int, mode VerityMode) *FS {
	t.Helper()
	store, err := objects.OpenFlat(tr.store)
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenBytes(fixture.Image(t, tr.dump, version), Config{Store: store, Verity: mode})
	if err != nil {
		t.Fatalf("OpenBytes: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestFSTest runs testing/fstest over the view of every layout version:
// every entry opens, reads (external files from the store, checked) and
// lists consistently.
func TestFSTest(t *testing.T) {
	tr := newTree(t, true)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			f := tr.open(t, v, VerityOn)
			want := []string{"dir", "dir/inline", "dir/hl", "dir/ext", "dir/nodigest", "dir/link", "dir/empty", "dev", "fifo"}
			if err := fstest.TestFS(f, want...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestView(t *testing.T) {
	tr := newTree(t, false)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			f := tr.open(t, v, VerityOn)
			if b, err := fs.ReadFile(f, "dir/ext"); err != nil || !bytes.Equal(b, tr.ext.Content) {
				t.Errorf("dir/ext: %d bytes, %v", len(b), err)
			}
			if b, err := fs.ReadFile(f, "dir/nodigest"); err != nil || !bytes.Equal(b, tr.nodigest.Content) {
				t.Errorf("dir/nodigest: %d bytes, %v", len(b), err)
			}
			if b, err := fs.ReadFile(f, "dir/inline"); err != nil || string(b) != "hello" {
				t.Errorf("dir/inline: %q, %v", b, err)
			}
			// A tampered object: no byte of it is served.
			b, err := fs.ReadFile(f, "dir/bad")
			if !errors.Is(err, ErrDigestMismatch) || !errors.Is(err, verity.ErrMismatch) || b != nil || Errno(err) != syscall.EIO {
				t.Errorf("dir/bad: %d bytes, %v", len(b), err)
			}
			if _, err := fs.ReadFile(f, "dir/gone"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("dir/gone: %v", err)
			}
			// Stat opens no object: sizes are the files'.
			fi, err := fs.Stat(f, "dir/bad")
			if err != nil || fi.Size() != int64(len(tr.bad.Content)) || fi.Mode() != 0o644 {
				t.Errorf("stat dir/bad: %v %v", fi, err)
			}
			ext, _ := fs.Stat(f, "dir/ext")
			a := ext.Sys().(*Attr)
			if ext.Size() != 70_000 || a.UID != 3 || a.GID != 4 || a.Blocks != 18*8 || ext.Mode() != 0o640 {
				t.Errorf("stat dir/ext: %v %+v", ext, a)
			}
			in, _ := fs.Stat(f, "dir/inline")
			hl, _ := fs.Stat(f, "dir/hl")
			if ai, ah := in.Sys().(*Attr), hl.Sys().(*Attr); ai.Ino != ah.Ino || ai.Nlink != 2 {
				t.Errorf("hardlink: %+v %+v", ai, ah)
			}
			if target, err := f.ReadLink("dir/link"); err != nil || target != "target" {
				t.Errorf("readlink: %q %v", target, err)
			}
			if _, err := f.Open("dir/link/x"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a path through a symlink: %v", err)
			}
			dev, err := fs.Stat(f, "dev")
			if err != nil || dev.Mode()&fs.ModeCharDevice == 0 || dev.Sys().(*Attr).Rdev != 259 {
				t.Errorf("dev: %v %v", dev, err)
			}
			// The root's listing leaves whiteouts out (the stubs of V0/V1
			// among them); other directories list them, unfound.
			names := func(dir string) []string {
				list, err := fs.ReadDir(f, dir)
				if err != nil {
					t.Fatalf("readdir %s: %v", dir, err)
				}
				var out []string
				for _, e := range list {
					out = append(out, e.Name())
				}
				return out
			}
			if v < 2 {
				// V0/V1 store a user's chardev 0/0 escaped, as an
				// empty file carrying trusted.overlay.overlay.whiteout:
				// the mount shows that file.
				if got := names("."); !slices.Equal(got, []string{"dev", "dir", "fifo", "rootwh", "wdir"}) {
					t.Errorf("root lists %q", got)
				}
				if fi, err := fs.Stat(f, "wdir/wh"); err != nil || !fi.Mode().IsRegular() || fi.Size() != 0 {
					t.Errorf("escaped whiteout: %v %v", fi, err)
				}
				return
			}
			if got := names("."); !slices.Equal(got, []string{"dev", "dir", "fifo", "wdir"}) {
				t.Errorf("root lists %q", got)
			}
			if _, err := fs.Stat(f, "rootwh"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("root whiteout: %v", err)
			}
			if got := names("wdir"); !slices.Equal(got, []string{"f", "wh"}) {
				t.Errorf("wdir lists %q", got)
			}
			list, _ := fs.ReadDir(f, "wdir")
			if _, err := list[1].Info(); !errors.Is(err, fs.ErrNotExist) || list[1].Type() != fs.ModeDevice|fs.ModeCharDevice {
				t.Errorf("whiteout entry: %v %v", list[1].Type(), err)
			}
		})
	}
}

// TestVerityModes: require refuses what has no digest, off serves what it
// is given.
func TestVerityModes(t *testing.T) {
	tr := newTree(t, false)
	req := tr.open(t, 1, VerityRequire)
	if _, err := fs.ReadFile(req, "dir/nodigest"); !errors.Is(err, ErrNoDigest) {
		t.Errorf("require, no digest: %v", err)
	}
	if _, err := fs.ReadFile(req, "dir/ext"); err != nil {
		t.Errorf("require, digest: %v", err)
	}
	off := tr.open(t, 1, VerityOff)
	b, err := fs.ReadFile(off, "dir/bad")
	if err != nil || bytes.Equal(b, tr.bad.Content) || len(b) != len(tr.bad.Content) {
		t.Errorf("off, tampered: %d bytes, %v", len(b), err)
	}
	none, err := OpenBytes(fixture.Image(t, tr.dump, 1), Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fs.ReadFile(none, "dir/ext"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("no store: %v", err)
	}
}

// TestOpenNeverBlocks: a fifo opens as a file with nothing to read.
func TestOpenNeverBlocks(t *testing.T) {
	f := newTree(t, true).open(t, 1, VerityOn)
	done := make(chan error, 1)
	go func() {
		file, err := f.Open("fifo")
		if err == nil {
			_, err = file.Read(make([]byte, 1))
			file.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != io.EOF {
			t.Errorf("fifo read: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("opening a fifo blocked")
	}
}

func TestXattrs(t *testing.T) {
	f := newTree(t, true).open(t, 1, VerityOn)
	names, err := f.ListXattr("dir")
	slices.Sort(names)
	if err != nil || !slices.Equal(names, []string{"security.x", "trusted.overlay.custom", "user.a"}) {
		t.Errorf("dir xattrs %q, %v", names, err)
	}
	if v, err := f.GetXattr("dir", "trusted.overlay.custom"); err != nil || string(v) != "2" {
		t.Errorf("escaped xattr: %q %v", v, err)
	}
	// overlayfs' own xattrs of an external file are hidden.
	if names, err := f.ListXattr("dir/ext"); err != nil || len(names) != 0 {
		t.Errorf("dir/ext xattrs %q, %v", names, err)
	}
	if _, err := f.GetXattr("dir/ext", "trusted.overlay.metacopy"); !errors.Is(err, syscall.ENODATA) {
		t.Errorf("metacopy visible: %v", err)
	}
	for name, want := range map[string]syscall.Errno{"user.": syscall.EINVAL, "foo.bar": syscall.EOPNOTSUPP, "user.none": syscall.ENODATA} {
		if _, err := f.GetXattr("dir", name); !errors.Is(err, want) {
			t.Errorf("getxattr %q: %v, want %v", name, err, want)
		}
	}
}

// TestReadDirAt: a listing resumes at the Next of any entry with the
// entries after it, as FUSE's READDIR offsets need.
func TestReadDirAt(t *testing.T) {
	var b strings.Builder
	b.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
	for i := range 600 { // several directory blocks
		fmt.Fprintf(&b, "/f%04d-%s 0 100644 1 0 0 0 0.0 - - -\n", i, strings.Repeat("x", i%40))
	}
	f, err := OpenBytes(fixture.Image(t, b.String(), 1), Config{})
	if err != nil {
		t.Fatal(err)
	}
	root, _ := f.Inode(f.RootNid())
	type ent struct {
		name string
		next uint64
	}
	var all []ent
	if err := f.ReadDirAt(&root, 0, func(d *Dirent) bool { all = append(all, ent{string(d.Name), d.Next}); return true }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 602 || all[0].name != "." || all[1].name != ".." {
		t.Fatalf("%d entries, first %v", len(all), all[:2])
	}
	for i, e := range all {
		var got []string
		f.ReadDirAt(&root, e.next, func(d *Dirent) bool { got = append(got, string(d.Name)); return len(got) < 2 })
		var want []string
		for _, w := range all[i+1 : min(i+3, len(all))] {
			want = append(want, w.name)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("after %q: %q, want %q", e.name, got, want)
		}
		if i >= 2 {
			if pos, err := f.DirPosAfter(&root, e.name); err != nil || pos != e.next {
				t.Fatalf("DirPosAfter(%q) = %d, %v; Next %d", e.name, pos, err, e.next)
			}
		}
	}
}

func TestValidRedirect(t *testing.T) {
	for v, want := range map[string]bool{
		"/ab/cdef": true, "/a": true, "name": true,
		"": false, "/": false, "//ab": false, "/ab//cd": false, "/ab/": false, "a/b": false,
	} {
		if got := validRedirect([]byte(v)); got != want {
			t.Errorf("validRedirect(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestParseVerityMode(t *testing.T) {
	for _, m := range []VerityMode{VerityOn, VerityRequire, VerityOff} {
		got, err := ParseVerityMode(m.String())
		if err != nil || got != m {
			t.Errorf("%v: %v %v", m, got, err)
		}
	}
	if _, err := ParseVerityMode("maybe"); err == nil {
		t.Error("maybe: no error")
	}
}

// TestImageDigest: with Config.ImageDigest the view shows the bytes whose
// digest was checked, even once the file is rewritten in place; without
// it, the view follows the file. A wrong digest is refused.
func TestImageDigest(t *testing.T) {
	tr := newTree(t, true)
	a := fixture.Image(t, tr.dump, 1)
	// The same layout and size, other names: "dir" becomes "dur".
	b := fixture.Image(t, strings.ReplaceAll(tr.dump, "/dir", "/dur"), 1)
	if len(a) != len(b) || bytes.Equal(a, b) {
		t.Fatalf("images of %d and %d bytes, equal %v: want the same size, other bytes", len(a), len(b), bytes.Equal(a, b))
	}
	path := filepath.Join(t.TempDir(), "image.cfs")
	if err := os.WriteFile(path, a, 0o644); err != nil {
		t.Fatal(err)
	}
	rootNames := func(v *FS) []string {
		t.Helper()
		ents, err := v.ReadDir(".")
		if err != nil {
			t.Fatalf("ReadDir: %v", err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		return names
	}
	digest := verity.DigestBytes(verity.SHA256, a)
	checked, err := Open(path, Config{ImageDigest: digest})
	if err != nil {
		t.Fatalf("Open with the right digest: %v", err)
	}
	defer checked.Close()
	followed, err := Open(path, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer followed.Close()
	want := rootNames(checked)

	// Rewritten in place: the same inode, the same size.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := rootNames(checked); !slices.Equal(got, want) {
		t.Errorf("checked view after the rewrite: %q, want %q as checked", got, want)
	}
	if got := rootNames(followed); !slices.Contains(got, "dur") {
		t.Errorf("mapped view after the rewrite: %q, want the new image's names (the test's rewrite did not take)", got)
	}

	wrong := bytes.Clone(digest)
	wrong[0] ^= 1
	if _, err := Open(path, Config{ImageDigest: wrong}); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("Open with a wrong digest: %v, want ErrMismatch", err)
	} else if n := strings.Count(err.Error(), path); n != 1 {
		t.Errorf("Open with a wrong digest: %q names the image %d times, want once", err, n)
	}
	if _, err := OpenBytes(a, Config{ImageDigest: wrong}); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("OpenBytes with a wrong digest: %v, want ErrMismatch", err)
	}
	if _, err := Open(path, Config{ImageDigest: digest[:5]}); err == nil {
		t.Errorf("Open with a 5-byte digest: no error")
	}
}
