package erofs

import (
	"os"
	"path/filepath"
	"testing"
)

// fuzzSeedMax leaves the 1.6 MB config images out of the seed corpus: the
// golden tests read them whole already, and mutating them is slow.
const fuzzSeedMax = 256 << 10

// FuzzImage reads arbitrary bytes as an image through every API: NewImage,
// the dump walk, inodes, directories (Lookup agreeing with ReadDir), xattrs,
// data, links and the resumable directory cursor. Damage must come back as ErrCorrupt or
// ErrUnsupported; no panic, no hang.
func FuzzImage(f *testing.F) {
	d := filepath.Join("..", "..", "shared", "golden")
	var seeds []string
	for _, pat := range []string{"c/images/*.cfs", "rs/*.cfs", "fuzz-seeds/*.fuzz"} {
		m, _ := filepath.Glob(filepath.Join(d, pat))
		seeds = append(seeds, m...)
	}
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err == nil && len(b) <= fuzzSeedMax {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		im, err := NewImage(data)
		if err != nil {
			if !acceptable(err) {
				t.Fatalf("NewImage: %v", err)
			}
			return
		}
		if err := exercise(im); !acceptable(err) {
			t.Fatal(err)
		}
	})
}
