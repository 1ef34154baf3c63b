package fusefs

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkWalk is the server's own cost (no FUSE round trips) of a cold
// walk of the largest golden image: every lookup, listing, getattr and
// xattr listing, on a fresh server each time.
func BenchmarkWalk(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(goldenDir(b), "c", "images", "config.v1.cfs"))
	if err != nil {
		b.Skip(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		fsys, ok := serveBytes(data)
		if !ok {
			b.Fatal("refused")
		}
		walk(fsys)
	}
}
