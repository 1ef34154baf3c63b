package objects

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// withResolvers runs f with openat2 and again with the component-by-
// component fallback that kernels without openat2 get.
func withResolvers(t *testing.T, f func(t *testing.T)) {
	t.Run("openat2", f)
	t.Run("fallback", func(t *testing.T) {
		was := openat2Missing.Load()
		openat2Missing.Store(true)
		defer openat2Missing.Store(was)
		f(t)
	})
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(link), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

// unsafeStore builds a store with the traps the tests aim payloads at.
func unsafeStore(t *testing.T) (dir, outside string) {
	base := t.TempDir()
	dir = filepath.Join(base, "store")
	outside = filepath.Join(base, "secret")
	mustWrite(t, outside, "secret")
	mustWrite(t, filepath.Join(dir, "ab", "cdef"), "object")
	mustWrite(t, filepath.Join(dir, "ab", "file"), "a file, not a directory")
	mustSymlink(t, outside, filepath.Join(dir, "ab", "abs-link"))
	mustSymlink(t, "../../secret", filepath.Join(dir, "ab", "rel-link"))
	mustSymlink(t, "cdef", filepath.Join(dir, "ab", "inside-link"))
	mustSymlink(t, base, filepath.Join(dir, "up"))
	mustSymlink(t, "/etc", filepath.Join(dir, "etc"))
	if err := os.MkdirAll(filepath.Join(dir, "ab", "dir-object"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(filepath.Join(dir, "ab", "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, outside
}

func TestFlatStoreRefusesUnsafePayloads(t *testing.T) {
	withResolvers(t, func(t *testing.T) {
		dir, _ := unsafeStore(t)
		s, err := OpenFlat(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		cases := []struct {
			payload string
			want    error
		}{
			{"../x", ErrUnsafePath},
			{"../secret", ErrUnsafePath},
			{"a/../../b", ErrUnsafePath},
			{"ab/../ab/cdef", ErrUnsafePath},
			{"./ab/cdef", ErrUnsafePath},
			{"ab//cdef", ErrUnsafePath},
			{"ab/cdef/", ErrUnsafePath},
			{"", ErrUnsafePath},
			{"/", ErrUnsafePath},
			{"//etc/passwd", ErrUnsafePath},
			{"ab/cd\x00ef", ErrUnsafePath},
			{strings.Repeat("a/", 3000) + "b", ErrUnsafePath},
			{"ab/abs-link", ErrUnsafePath},    // symlink to a file outside
			{"ab/rel-link", ErrUnsafePath},    // relative symlink leading out
			{"ab/inside-link", ErrUnsafePath}, // even one staying inside
			{"up/secret", ErrUnsafePath},      // symlinked directory
			{"etc/passwd", ErrUnsafePath},     // symlinked directory, absolute
			{"/etc/passwd", ErrUnsafePath},    // the leading "/" is the store root
			{"ab/dir-object", ErrNotRegular},
			{"ab/fifo", ErrNotRegular},
			{"ab/missing", fs.ErrNotExist},
			{"zz/cdef", fs.ErrNotExist},
			{"ab/file/x", fs.ErrNotExist},
		}
		for _, c := range cases {
			f, err := s.Open(c.payload)
			if err == nil {
				data, _ := io.ReadAll(f)
				f.Close()
				t.Errorf("Open(%q) succeeded, read %q", c.payload, data)
				continue
			}
			if !errors.Is(err, c.want) {
				t.Errorf("Open(%q): %v, want %v", c.payload, err, c.want)
			}
			if !strings.Contains(err.Error(), "object") {
				t.Errorf("Open(%q): unclear error %q", c.payload, err)
			}
			ok, herr := s.Has(c.payload)
			if ok {
				t.Errorf("Has(%q) = true", c.payload)
			}
			if c.want == fs.ErrNotExist {
				if herr != nil {
					t.Errorf("Has(%q): %v, want false and no error", c.payload, herr)
				}
			} else if !errors.Is(herr, c.want) {
				t.Errorf("Has(%q): %v, want %v", c.payload, herr, c.want)
			}
		}
		t.Logf("example: %v", func() error { _, err := s.Open("a/../../b"); return err }())
		t.Logf("example: %v", func() error { _, err := s.Open("ab/abs-link"); return err }())
		t.Logf("example: %v", func() error { _, err := s.Open("ab/dir-object"); return err }())

		for _, p := range []string{"ab/cdef", "/ab/cdef"} {
			f, err := s.Open(p)
			if err != nil {
				t.Fatalf("Open(%q): %v", p, err)
			}
			data, err := io.ReadAll(f)
			f.Close()
			if err != nil || string(data) != "object" {
				t.Errorf("Open(%q) read %q, %v", p, data, err)
			}
			if ok, err := s.Has(p); !ok || err != nil {
				t.Errorf("Has(%q) = %v, %v", p, ok, err)
			}
		}
	})
}

// TestFlatStoreSymlinkedSubdir: a symlink where an XX directory should be.
func TestFlatStoreSymlinkedSubdir(t *testing.T) {
	withResolvers(t, func(t *testing.T) {
		base := t.TempDir()
		dir := filepath.Join(base, "store")
		mustWrite(t, filepath.Join(base, "elsewhere", "cdef"), "planted")
		mustSymlink(t, filepath.Join(base, "elsewhere"), filepath.Join(dir, "ab"))
		s, err := OpenFlat(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.Open("ab/cdef"); !errors.Is(err, ErrUnsafePath) {
			t.Fatalf("Open through a symlinked XX dir: %v", err)
		}
	})
}

func TestFlatStoreSearchOrder(t *testing.T) {
	base := t.TempDir()
	a, b, c := filepath.Join(base, "a"), filepath.Join(base, "b"), filepath.Join(base, "c")
	mustWrite(t, filepath.Join(a, "00", "both"), "from a")
	mustWrite(t, filepath.Join(b, "00", "both"), "from b")
	mustWrite(t, filepath.Join(b, "00", "only-b"), "only in b")
	mustWrite(t, filepath.Join(c, "00", "only-c"), "only in c")
	for _, args := range [][]string{{a, b, c}, {a + ":" + b, c}, {a + ":" + b + ":" + c}} {
		s, err := OpenFlat(args...)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Dirs(); len(got) != 3 || got[0] != a || got[1] != b || got[2] != c {
			t.Fatalf("Dirs %q", got)
		}
		for p, want := range map[string]string{"00/both": "from a", "00/only-b": "only in b", "/00/only-c": "only in c"} {
			f, err := s.Open(p)
			if err != nil {
				t.Fatalf("%q: Open(%q): %v", args, p, err)
			}
			data, _ := io.ReadAll(f)
			f.Close()
			if string(data) != want {
				t.Errorf("%q: Open(%q) = %q, want %q", args, p, data, want)
			}
		}
		if _, err := s.Open("00/nowhere"); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), a+":"+b+":"+c) {
			t.Errorf("missing object: %v", err)
		}
		s.Close()
	}
	for _, bad := range [][]string{{}, {a + "::" + b}, {":" + a}, {filepath.Join(base, "none")}} {
		if _, err := OpenFlat(bad...); err == nil {
			t.Errorf("OpenFlat(%q) succeeded", bad)
		}
	}
}

func TestMulti(t *testing.T) {
	base := t.TempDir()
	mustWrite(t, filepath.Join(base, "a", "00", "x"), "a")
	mustWrite(t, filepath.Join(base, "b", "00", "y"), "b")
	if err := os.MkdirAll(filepath.Join(base, "a", "00", "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, filepath.Join(base, "b", "00", "dir"), "hidden behind a's directory")
	sa, _ := OpenFlat(filepath.Join(base, "a"))
	sb, _ := OpenFlat(filepath.Join(base, "b"))
	defer sa.Close()
	defer sb.Close()
	m := Multi(sa, sb)
	for p, want := range map[string]string{"00/x": "a", "00/y": "b"} {
		f, err := m.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		if string(data) != want {
			t.Errorf("%s: %q", p, data)
		}
		if ok, err := m.Has(p); !ok || err != nil {
			t.Errorf("Has(%s) = %v %v", p, ok, err)
		}
	}
	if _, err := m.Open("00/z"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	if _, err := m.Open("00/dir"); !errors.Is(err, ErrNotRegular) {
		t.Errorf("a directory in the first store must stop the search: %v", err)
	}
	if _, err := m.Open("../x"); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("unsafe: %v", err)
	}
}

func TestPayloadForDigest(t *testing.T) {
	d := make([]byte, 32)
	d[0], d[31] = 0xab, 0x01
	p := PayloadForDigest(d)
	if len(p) != 65 || !strings.HasPrefix(p, "ab/0000") || !strings.HasSuffix(p, "01") {
		t.Fatalf("%q", p)
	}
	if p := PayloadForDigest(make([]byte, 64)); len(p) != 129 || p[2] != '/' {
		t.Fatalf("%q", p)
	}
}

// FuzzCleanPayload: whatever is accepted stays beneath the root when
// joined to it, and has no component that could climb.
func FuzzCleanPayload(f *testing.F) {
	for _, s := range []string{"ab/cdef", "/ab/cdef", "../x", "/etc/passwd", "a/../../b", "a//b", "a\x00b", ".", "", "//x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		rel, err := cleanPayload(payload)
		if err != nil {
			if !errors.Is(err, ErrUnsafePath) {
				t.Fatalf("%q: error %v does not wrap ErrUnsafePath", payload, err)
			}
			return
		}
		const root = "/root/store"
		if j := filepath.Join(root, rel); !strings.HasPrefix(j, root+"/") || filepath.Clean(j) != j {
			t.Fatalf("%q accepted as %q, joins to %q", payload, rel, j)
		}
		if strings.ContainsRune(rel, 0) {
			t.Fatalf("%q: NUL accepted", payload)
		}
	})
}

// TestAbsolutePayloadIsStoreRelative: "/etc/passwd" names etc/passwd in
// the store, never the host's file.
func TestAbsolutePayloadIsStoreRelative(t *testing.T) {
	withResolvers(t, func(t *testing.T) {
		dir := t.TempDir()
		s, err := OpenFlat(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.Open("/etc/passwd")
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("Open(/etc/passwd): %v", err)
		}
		mustWrite(t, filepath.Join(dir, "etc", "passwd"), "the store's own")
		f, err := s.Open("/etc/passwd")
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		if string(data) != "the store's own" {
			t.Fatalf("read %q", data)
		}
	})
}

// TestObjectOpenFlags: an object comes back blocking (it was opened with
// O_NONBLOCK, so that a fifo planted in the store cannot hang the open),
// read-only, and with O_NOATIME where the opener may set it (the owner, or
// root), so that serving it leaves its access time alone.
func TestObjectOpenFlags(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ab", "cdef"), []byte("content"), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := OpenFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.Open("ab/cdef")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	flags, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if flags&unix.O_NONBLOCK != 0 {
		t.Error("object left non-blocking")
	}
	if flags&unix.O_ACCMODE != unix.O_RDONLY {
		t.Errorf("object opened with access mode %#o, want read-only", flags&unix.O_ACCMODE)
	}
	if flags&unix.O_NOATIME == 0 {
		t.Error("object opened without O_NOATIME by its owner")
	}
}
