package verity

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkDigestFile reports MB/s of DigestFile (userspace, all cores) on
// a 64 MiB file in the page cache.
func BenchmarkDigestFile(b *testing.B) {
	const size = 64 << 20
	path := filepath.Join(b.TempDir(), "data")
	if err := os.WriteFile(path, mod251(size), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, alg := range algorithms {
		b.Run(alg.String(), func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetBytes(size)
			for b.Loop() {
				if _, err := DigestFile(alg, f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHasher reports MB/s of the single-goroutine streaming Hasher.
func BenchmarkHasher(b *testing.B) {
	data := mod251(4 << 20)
	for _, alg := range algorithms {
		b.Run(alg.String(), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			h := NewHasher(alg)
			for b.Loop() {
				h.Reset()
				h.Write(data)
				h.Sum()
			}
		})
	}
}

// BenchmarkDigestSmallFile measures the per-file overhead for a typical
// small object.
func BenchmarkDigestSmallFile(b *testing.B) {
	path := filepath.Join(b.TempDir(), "small")
	if err := os.WriteFile(path, mod251(10000), 0o644); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DigestFile(SHA256, f); err != nil {
			b.Fatal(err)
		}
	}
}
