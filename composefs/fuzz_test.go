package composefs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/objects"
)

// Bounds on the work one input may cause.
const (
	fuzzPaths   = 2000
	fuzzReadMax = 64 << 10
	fuzzSeedMax = 256 << 10
)

// FuzzView shows arbitrary bytes as an image through the io/fs view: walk,
// stat, readlink, xattrs and contents, with a store that has every object
// (empty) and verity on. Damage must be an error; no panic, no hang.
func FuzzView(f *testing.F) {
	for _, v := range []int{0, 1, 2} {
		f.Add(fixture.Image(f, newTreeDump(), v))
	}
	d := filepath.Join("..", "..", "shared", "golden")
	for _, pat := range []string{"c/images/*.cfs", "rs/*.cfs", "fuzz-seeds/*.fuzz"} {
		m, _ := filepath.Glob(filepath.Join(d, pat))
		for _, s := range m {
			if b, err := os.ReadFile(s); err == nil && len(b) <= fuzzSeedMax {
				f.Add(b)
			}
		}
	}
	store := emptyStore(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := OpenBytes(data, Config{Store: store})
		if err != nil {
			if !errors.Is(err, erofs.ErrCorrupt) && !errors.Is(err, erofs.ErrUnsupported) {
				t.Fatalf("OpenBytes: %v", err)
			}
			return
		}
		exerciseView(v)
	})
}

// exerciseView reads everything the view offers, within bounds.
func exerciseView(v *FS) {
	paths := 0
	buf := make([]byte, 16<<10)
	fs.WalkDir(v, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if paths++; paths > fuzzPaths {
			return fs.SkipAll
		}
		fs.Stat(v, p)
		v.ListXattr(p)
		v.GetXattr(p, "user.a")
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			v.ReadLink(p)
		case d.Type().IsRegular():
			file, err := v.Open(p)
			if err != nil {
				return nil
			}
			for total := 0; total < fuzzReadMax; {
				n, err := file.Read(buf)
				total += n
				if err != nil {
					break
				}
			}
			file.Close()
		}
		return nil
	})
}

// emptyStore is a store in which every well-formed payload names an empty
// object: enough to reach the reading code of any image.
type emptyStoreT struct{ path string }

func emptyStore(tb testing.TB) objects.Store {
	p := filepath.Join(tb.TempDir(), "empty")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		tb.Fatal(err)
	}
	return emptyStoreT{p}
}

func (s emptyStoreT) Open(payload string) (*os.File, error) {
	if payload == "" || strings.Contains(payload, "..") {
		return nil, objects.ErrUnsafePath
	}
	return os.Open(s.path)
}

func (s emptyStoreT) Has(string) (bool, error) { return true, nil }

// newTreeDump is the dump of newTree without its objects in place: a seed.
func newTreeDump() string {
	return "/ 0 40755 2 0 0 0 0.0 - - - user.a=1\n" +
		"/d 0 40755 2 0 0 0 0.0 - - - trusted.overlay.overlay.x=1\n" +
		"/d/f 5 100644 1 0 0 0 0.0 - hello -\n" +
		"/d/e 10 100644 1 0 0 0 0.0 ab/cdef - 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n" +
		"/d/l 1 120777 1 0 0 0 0.0 x - -\n" +
		"/w 0 20000 1 0 0 0 0.0 - - -\n"
}
