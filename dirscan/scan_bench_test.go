package dirscan

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/objects"
)

// benchTree makes a tree shaped like a small system image: files of 0 to
// 32 KiB (one in twenty empty, one in seven inline-sized, the rest spread
// evenly on a log scale) in a random hierarchy of directories. It returns
// the root and the bytes of content.
func benchTree(b *testing.B, files, dirs int) (string, int64) {
	b.Helper()
	root := filepath.Join(b.TempDir(), "tree")
	rng := rand.New(rand.NewPCG(42, 7))
	paths := []string{root}
	if err := os.Mkdir(root, 0o755); err != nil {
		b.Fatal(err)
	}
	for i := range dirs {
		d := filepath.Join(paths[rng.IntN(len(paths))], fmt.Sprintf("d%04d", i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		paths = append(paths, d)
	}
	var total int64
	buf := make([]byte, 32<<10)
	for i := range files {
		var n int
		switch r := rng.Float64(); {
		case r < 0.05:
		case r < 0.20:
			n = 1 + rng.IntN(64)
		default:
			n = int(math.Exp(math.Log(65) + rng.Float64()*(math.Log(32<<10)-math.Log(65))))
		}
		for j := range n {
			buf[j] = byte(rng.Uint32())
		}
		p := filepath.Join(paths[rng.IntN(len(paths))], fmt.Sprintf("f%05d.dat", i))
		if err := os.WriteFile(p, buf[:n], 0o644); err != nil {
			b.Fatal(err)
		}
		total += int64(n)
	}
	return root, total
}

// BenchmarkScan scans a 20,000-file, 1,400-directory tree (warm cache):
// metadata only, with fs-verity digests of every external file (what
// mkcomposefs does without --digest-store), and copying them into a fresh
// flat digest store each time (--digest-store).
func BenchmarkScan(b *testing.B) {
	root, size := benchTree(b, 20000, 1400)
	b.Run("metadata", func(b *testing.B) {
		for b.Loop() {
			if _, err := Scan(root, Options{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("digest", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if _, err := Scan(root, Options{ComputeDigest: true}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("store", func(b *testing.B) {
		b.SetBytes(size)
		base := b.TempDir()
		i := 0
		for b.Loop() {
			b.StopTimer()
			dir := filepath.Join(base, fmt.Sprint(i))
			i++
			if err := os.Mkdir(dir, 0o755); err != nil {
				b.Fatal(err)
			}
			store, err := objects.OpenFlat(dir)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			_, err = Scan(root, Options{Store: store})
			b.StopTimer()
			store.Close()
			os.RemoveAll(dir)
			b.StartTimer()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
