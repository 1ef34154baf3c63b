package dirscan

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// tree is a test directory and what Scan should make of it.
type tree struct {
	root string
	// files by path in the image ("/a/b") to their content, for digests.
	content map[string][]byte
}

func (tr *tree) fs(path string) string { return filepath.Join(tr.root, path) }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// buildTree makes a directory with every file type, xattrs, odd names,
// hardlinks and nanosecond mtimes. Device nodes and trusted.* xattrs need
// root; without it the test is skipped.
func buildTree(t *testing.T) *tree {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for device nodes and trusted.* xattrs")
	}
	tr := &tree{root: t.TempDir(), content: map[string][]byte{}}
	mkdir := func(p string) { must(t, os.Mkdir(tr.fs(p), 0o755)) }
	file := func(p string, data []byte, perm os.FileMode) {
		must(t, os.WriteFile(tr.fs(p), data, perm))
		must(t, os.Chmod(tr.fs(p), perm))
		tr.content[p] = data
	}
	mkdir("/dir")
	mkdir("/dir/sub")
	mkdir("/dir/sub/deeper")
	mkdir("/empty-dir")
	file("/empty", nil, 0o600)
	file("/small", []byte("hello\n"), 0o644)
	file("/inline-max", bytes.Repeat([]byte{'i'}, 64), 0o644)
	file("/external-min", bytes.Repeat([]byte{'e'}, 65), 0o755)
	big := make([]byte, 3*4096+17)
	for i := range big {
		big[i] = byte(i % 251)
	}
	file("/dir/big", big, 0o640)
	file("/dir/sub/deeper/leaf", []byte("leaf"), 0o444)
	odd := "/dir/ sp\tace\n\\x=-\xff"
	file(odd, []byte("odd"), 0o600)
	file("/-", []byte("-"), 0o600)
	file("/hl-a", bytes.Repeat([]byte{'h'}, 100), 0o644)
	must(t, os.Link(tr.fs("/hl-a"), tr.fs("/dir/hl-b")))
	must(t, os.Link(tr.fs("/hl-a"), tr.fs("/hl-c")))
	file("/hl-small", []byte("tiny"), 0o644)
	must(t, os.Link(tr.fs("/hl-small"), tr.fs("/dir/sub/hl-small2")))
	must(t, os.Symlink("../small", tr.fs("/dir/link")))
	must(t, os.Symlink(strings.Repeat("t", 1000), tr.fs("/long-link")))
	must(t, unix.Mkfifo(tr.fs("/fifo"), 0o620))
	must(t, unix.Mknod(tr.fs("/sock"), unix.S_IFSOCK|0o755, 0))
	must(t, unix.Mknod(tr.fs("/chr"), unix.S_IFCHR|0o644, int(unix.Mkdev(1, 3))))
	must(t, unix.Mknod(tr.fs("/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(259, 1<<12|5))))
	must(t, unix.Mknod(tr.fs("/dir/whiteout"), unix.S_IFCHR|0o000, 0))
	must(t, os.Chown(tr.fs("/small"), 1000, 70000))
	must(t, unix.Lchown(tr.fs("/dir/link"), 5, 6))

	setx := func(p, name, value string) {
		must(t, unix.Lsetxattr(tr.fs(p), name, []byte(value), 0))
	}
	setx("/", "user.root", "r")
	setx("/small", "user.z", "last")
	setx("/small", "user.a", "first=\x00\xff")
	setx("/small", "trusted.overlay.opaque", "y")
	setx("/small", "user.empty", "")
	setx("/dir/link", "trusted.sym", "s")
	setx("/hl-a", "user.hl", "shared")
	setx("/dir", "trusted.dir", "d")

	// Nanosecond mtimes, set last (children change their directory's).
	for i, p := range []string{"/small", "/dir/big", "/dir/link", "/fifo", "/chr", "/dir/sub/deeper", "/dir/sub", "/dir", "/"} {
		ts := []unix.Timespec{{Sec: 1, Nsec: 0}, {Sec: 1700000000 + int64(i), Nsec: int64(i*111111111 + 7)}}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, tr.fs(p), ts, unix.AT_SYMLINK_NOFOLLOW))
	}
	return tr
}

// expected builds what Scan should return for the tree, from lstat of each
// path, in the order Scan lists them.
func (tr *tree) expected(t *testing.T, opts Options, paths []string) []dumpfile.Entry {
	t.Helper()
	var out []dumpfile.Entry
	for _, p := range paths {
		var st unix.Stat_t
		must(t, unix.Lstat(tr.fs(p), &st))
		e := dumpfile.Entry{Path: p, Size: uint64(st.Size), Mode: st.Mode, Nlink: 1, UID: st.Uid, GID: st.Gid}
		if !opts.UseEpoch {
			e.Mtime = dumpfile.Timespec{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)}
		}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Rdev = st.Rdev
		case unix.S_IFLNK:
			target, err := os.Readlink(tr.fs(p))
			must(t, err)
			e.Payload = target
		case unix.S_IFDIR:
			e.Nlink = 2
			ents, err := os.ReadDir(tr.fs(p))
			must(t, err)
			for _, d := range ents {
				if d.IsDir() {
					e.Nlink++
				}
			}
		case unix.S_IFREG:
			data := tr.content[p]
			switch {
			case len(data) == 0:
			case len(data) <= 64:
				e.Content = data
			case opts.ComputeDigest:
				d := verity.DigestBytes(verity.SHA256, data)
				e.Digest = hex.EncodeToString(d)
				e.Payload = e.Digest[:2] + "/" + e.Digest[2:]
			default:
				e.Payload = p[1:]
			}
		}
		if !opts.SkipXattrs {
			e.Xattrs = tr.xattrs(t, p, opts.UserXattrs)
		}
		out = append(out, e)
	}
	return out
}

func (tr *tree) xattrs(t *testing.T, p string, userOnly bool) []dumpfile.Xattr {
	want := map[string][]dumpfile.Xattr{
		"/":         {{Name: "user.root", Value: []byte("r")}},
		"/small":    {{Name: "trusted.overlay.opaque", Value: []byte("y")}, {Name: "user.a", Value: []byte("first=\x00\xff")}, {Name: "user.empty", Value: []byte{}}, {Name: "user.z", Value: []byte("last")}},
		"/dir/link": {{Name: "trusted.sym", Value: []byte("s")}},
		"/hl-a":     {{Name: "user.hl", Value: []byte("shared")}},
		"/dir/hl-b": {{Name: "user.hl", Value: []byte("shared")}},
		"/hl-c":     {{Name: "user.hl", Value: []byte("shared")}},
		"/dir":      {{Name: "trusted.dir", Value: []byte("d")}},
	}[p]
	var out []dumpfile.Xattr
	for _, x := range want {
		if !userOnly || strings.HasPrefix(x.Name, "user.") {
			out = append(out, x)
		}
	}
	return out
}

// scanOrder is the order Scan lists the test tree in: depth first, names
// sorted bytewise.
var scanOrder = []string{
	"/", "/-", "/blk", "/chr", "/dir", "/dir/ sp\tace\n\\x=-\xff", "/dir/big", "/dir/hl-b", "/dir/link",
	"/dir/sub", "/dir/sub/deeper", "/dir/sub/deeper/leaf", "/dir/sub/hl-small2", "/dir/whiteout",
	"/empty", "/empty-dir", "/external-min", "/fifo", "/hl-a", "/hl-c", "/hl-small", "/inline-max",
	"/long-link", "/small", "/sock",
}

func TestScanLikeC(t *testing.T) {
	tr := buildTree(t)
	tr.content["/dir/hl-b"] = tr.content["/hl-a"]
	tr.content["/hl-c"] = tr.content["/hl-a"]
	tr.content["/dir/sub/hl-small2"] = tr.content["/hl-small"]
	for _, opts := range []Options{
		{ComputeDigest: true},
		{ComputeDigest: true, Threads: 1},
		{},
		{UseEpoch: true, ComputeDigest: true},
		{UserXattrs: true},
		{SkipXattrs: true},
	} {
		got, err := Scan(tr.root, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		want := tr.expected(t, opts, scanOrder)
		compareEntries(t, opts, got, want)
	}
}

func TestScanSkipDevices(t *testing.T) {
	tr := buildTree(t)
	got, err := Scan(tr.root, Options{SkipDevices: true, SkipXattrs: true})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, e := range got {
		paths = append(paths, e.Path)
	}
	var want []string
	for _, p := range scanOrder {
		if p != "/blk" && p != "/chr" && p != "/dir/whiteout" {
			want = append(want, p)
		}
	}
	if !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths %q\nwant %q", paths, want)
	}
}

func TestScanHardlinks(t *testing.T) {
	tr := buildTree(t)
	got, err := Scan(tr.root, Options{Hardlinks: true, ComputeDigest: true})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]*dumpfile.Entry{}
	for i := range got {
		byPath[got[i].Path] = &got[i]
	}
	a, b, c := byPath["/dir/hl-b"], byPath["/hl-a"], byPath["/hl-c"]
	// The first in entry order holds the data.
	if a.IsHardlink() || a.Digest == "" || a.Payload == "" || a.Nlink != 3 {
		t.Fatalf("target %+v", a)
	}
	for _, l := range []*dumpfile.Entry{b, c} {
		if l.Hardlink != "/dir/hl-b" || l.Payload != "" || l.Digest != a.Digest || l.Nlink != 3 ||
			l.Size != a.Size || l.Mode != a.Mode || !reflect.DeepEqual(l.Xattrs, a.Xattrs) {
			t.Errorf("hardlink %+v", l)
		}
	}
	small, small2 := byPath["/dir/sub/hl-small2"], byPath["/hl-small"]
	if small.IsHardlink() || string(small.Content) != "tiny" || small.Nlink != 2 ||
		small2.Hardlink != "/dir/sub/hl-small2" || string(small2.Content) != "tiny" {
		t.Errorf("small hardlinks %+v %+v", small, small2)
	}
	// Everything else is as without Hardlinks.
	if n := byPath["/small"].Nlink; n != 1 {
		t.Errorf("nlink %d", n)
	}
	// The tree is valid and prints as composefs-info would.
	var buf bytes.Buffer
	must(t, dumpfile.WriteAll(&buf, got))
	again, err := dumpfile.ParseAll(&buf, dumpfile.ParseOptions{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, got) {
		t.Fatal("dumpfile round trip differs")
	}
}

// TestScanHardlinkedWhiteout: with Hardlinks, a whiteout the source has
// under two names would become a hardlinked whiteout, which is refused
// (dumpfile.ErrHardlinkedWhiteout); without Hardlinks each name is a
// whiteout of its own, as in C.
func TestScanHardlinkedWhiteout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a character device 0/0")
	}
	root := t.TempDir()
	must(t, os.Mkdir(filepath.Join(root, "a"), 0o755))
	must(t, unix.Mknod(filepath.Join(root, "a", "wh"), unix.S_IFCHR, 0))
	must(t, os.Link(filepath.Join(root, "a", "wh"), filepath.Join(root, "wh2")))

	_, err := Scan(root, Options{Hardlinks: true})
	if !errors.Is(err, dumpfile.ErrHardlinkedWhiteout) {
		t.Fatalf("Hardlinks: error %v, want ErrHardlinkedWhiteout", err)
	}
	for _, name := range []string{filepath.Join(root, "wh2"), "/a/wh"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error %q does not name %s", err, name)
		}
	}

	for _, opts := range []Options{{}, {Hardlinks: true, SkipDevices: true}} {
		got, err := Scan(root, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		whiteouts := 0
		for _, e := range got {
			if e.IsHardlink() {
				t.Errorf("%+v: %s is a hardlink", opts, e.Path)
			}
			if e.IsWhiteout() {
				whiteouts++
				if e.Nlink != 1 {
					t.Errorf("%+v: %s has nlink %d", opts, e.Path, e.Nlink)
				}
			}
		}
		if want := map[bool]int{false: 2, true: 0}[opts.SkipDevices]; whiteouts != want {
			t.Errorf("%+v: %d whiteouts, want %d", opts, whiteouts, want)
		}
	}
}

// compareEntries reports the first difference readably.
func compareEntries(t *testing.T, opts Options, got, want []dumpfile.Entry) {
	t.Helper()
	for i := range min(len(got), len(want)) {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Fatalf("%+v: entry %d:\n got  %+v\n want %+v", opts, i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%+v: %d entries, want %d", opts, len(got), len(want))
	}
}

// fakeStore records what it was given.
type fakeStore struct {
	mu    sync.Mutex
	added map[string][]byte
}

func (s *fakeStore) Add(alg verity.Algorithm, src *os.File) (string, []byte, error) {
	data, err := os.ReadFile(src.Name())
	if err != nil {
		return "", nil, err
	}
	d := verity.DigestBytes(alg, data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.added == nil {
		s.added = map[string][]byte{}
	}
	s.added[src.Name()] = data
	h := hex.EncodeToString(d)
	return h[:2] + "/" + h[2:], d, nil
}

func TestScanStoreAndSHA512(t *testing.T) {
	root := t.TempDir()
	must(t, os.WriteFile(filepath.Join(root, "big"), bytes.Repeat([]byte("x"), 5000), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "small"), []byte("x"), 0o644))
	store := &fakeStore{}
	got, err := Scan(root, Options{Store: store, DigestAlgorithm: verity.SHA512, Threads: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(store.added) != 1 || store.added[filepath.Join(root, "big")] == nil {
		t.Fatalf("store got %d files", len(store.added))
	}
	big := got[1]
	want := hex.EncodeToString(verity.DigestBytes(verity.SHA512, bytes.Repeat([]byte("x"), 5000)))
	if big.Path != "/big" || big.Digest != want || big.Payload != want[:2]+"/"+want[2:] || big.Content != nil {
		t.Fatalf("big: %+v", big)
	}
	if small := got[2]; string(small.Content) != "x" || small.Payload != "" || small.Digest != "" {
		t.Fatalf("small: %+v", small)
	}
}

// failingStore refuses every object as objects.FlatStore.Add does when
// its store cannot be written: an *fs.PathError about the source.
type failingStore struct{}

func (failingStore) Add(alg verity.Algorithm, src *os.File) (string, []byte, error) {
	return "", nil, &fs.PathError{Op: "add object", Path: src.Name(), Err: fmt.Errorf("into store /s: %w", unix.ENOSPC)}
}

// TestScanErrorsNamePathOnce: an error about a file names it once, on
// disk, after "scan", whatever layer below named it too (lstat, open, the
// store); the cause stays testable.
func TestScanErrorsNamePathOnce(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(root, "missing")
	must(t, os.Mkdir(filepath.Join(root, "src"), 0o755))
	big := filepath.Join(root, "src", "big")
	must(t, os.WriteFile(big, bytes.Repeat([]byte("x"), 5000), 0o644))
	type errorCase struct {
		name string
		root string
		opts Options
		want string
		is   error
	}
	cases := []errorCase{
		{"missing root", missing, Options{}, "scan " + missing + ": no such file or directory", fs.ErrNotExist},
		{"file root", big, Options{}, "scan " + big + ": not a directory", unix.ENOTDIR},
		{"store full", filepath.Join(root, "src"), Options{Store: failingStore{}}, "scan " + big + ": into store /s: no space left on device", unix.ENOSPC},
	}
	if os.Geteuid() != 0 {
		locked := filepath.Join(root, "locked")
		must(t, os.WriteFile(locked, []byte("x"), 0o000))
		cases = append(cases, errorCase{"unreadable file", root, Options{}, "scan " + locked + ": permission denied", fs.ErrPermission})
	}
	for _, c := range cases {
		_, err := Scan(c.root, c.opts)
		if err == nil || err.Error() != c.want {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
			continue
		}
		if !errors.Is(err, c.is) {
			t.Errorf("%s: %v is not %v", c.name, err, c.is)
		}
	}
}

func TestScanErrors(t *testing.T) {
	root := t.TempDir()
	if _, err := Scan(filepath.Join(root, "missing"), Options{}); err == nil {
		t.Error("missing root accepted")
	}
	must(t, os.WriteFile(filepath.Join(root, "f"), nil, 0o644))
	if _, err := Scan(filepath.Join(root, "f"), Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("file root: %v", err)
	}
	must(t, os.Symlink(".", filepath.Join(root, "link")))
	if _, err := Scan(filepath.Join(root, "link"), Options{}); err == nil {
		t.Error("symlink root followed")
	}
	if _, err := Scan(root, Options{SkipXattrs: true, UserXattrs: true}); err == nil {
		t.Error("conflicting options accepted")
	}
}

// TestScanXattrBudget: xattrs over C's per-file budget are refused, as C
// refuses them. ext4 cannot hold that much, so this uses a tmpfs.
func TestScanXattrBudget(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=4m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	f := filepath.Join(dir, "x")
	must(t, os.WriteFile(f, nil, 0o644))
	for i := range 8 {
		if err := unix.Lsetxattr(f, fmt.Sprintf("trusted.big%d", i), bytes.Repeat([]byte("v"), 3900), 0); err != nil {
			t.Skipf("filesystem refuses big xattrs: %v", err)
		}
	}
	if _, err := Scan(dir, Options{}); err != nil {
		t.Fatalf("8 × 3900 bytes is within the budget: %v", err)
	}
	must(t, unix.Lsetxattr(f, "trusted.big8", bytes.Repeat([]byte("v"), 3000), 0))
	if _, err := Scan(dir, Options{}); err == nil || !strings.Contains(err.Error(), "maximum 32767") {
		t.Errorf("oversized xattrs: %v", err)
	}
	// Only user.* xattrs count with UserXattrs.
	if _, err := Scan(dir, Options{UserXattrs: true}); err != nil {
		t.Errorf("UserXattrs: %v", err)
	}
}
