package erofs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// damageImages are the golden images the damage tests start from, after
// ours (forDamageImages): C's V0 and V1 (shared xattrs, hardlinks, escapes,
// long symlinks) and a V2.
var damageImages = []string{
	"c/images/extra-features.v1.cfs",
	"c/images/special.default.cfs",
	"c/images/longlink.v1.cfs",
	"c/images/honggfuzz-bigfile-with-acl.v1.cfs",
	"rs/derived-simple.v2.cfs",
}

// forDamageImages runs fn, as a subtest, over our image of ownDump in each
// version, then over each of damageImages (subtests that skip without the
// golden data).
func forDamageImages(t *testing.T, fn func(t *testing.T, rel string, base []byte)) {
	for v := range 3 {
		name := fmt.Sprintf("own/v%d", v)
		t.Run(name, func(t *testing.T) {
			base, _ := ownImage(t, v)
			fn(t, name, base)
		})
	}
	for _, rel := range damageImages {
		t.Run("golden/"+rel, func(t *testing.T) { fn(t, rel, loadGolden(t, rel)) })
	}
}

func loadGolden(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(goldenDir(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// survive reads all of a damaged image within a deadline and returns
// what NewImage or exercise reported; a panic fails the test where it
// happens, a hang fails it here.
func survive(t *testing.T, what string, data []byte) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		im, err := NewImage(data)
		if err == nil {
			err = exercise(im)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !acceptable(err) {
			t.Fatalf("%s: %v", what, err)
		}
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: still reading after 20s", what)
	}
	return nil
}

// TestDamageByteFlips flips bytes all over the images: every outcome must
// be a clean read or an ErrCorrupt/ErrUnsupported error.
func TestDamageByteFlips(t *testing.T) {
	forDamageImages(t, func(t *testing.T, rel string, base []byte) {
		// Every byte when EROFS_DAMAGE_FULL is set (about a minute),
		// a sample otherwise.
		stride := 41
		if os.Getenv("EROFS_DAMAGE_FULL") != "" {
			stride = 1
		} else if testing.Short() {
			stride = 211
		} else if strings.HasPrefix(rel, "own/") {
			// Our images are several times larger than C's small ones
			// (hundreds of inodes), and each flip reads all of one: a
			// sample of about 500 places keeps them to seconds.
			stride = max(stride, len(base)/500|1)
		}
		var clean, corrupt, unsupported int
		for off := 0; off < len(base); off += stride {
			if off >= 8192 && allZero(base[off:min(off+64, len(base))]) && off%61 != 0 {
				continue // long zero runs: sample them
			}
			for _, x := range []byte{0xff, 0x01, 0x80} {
				data := append([]byte(nil), base...)
				data[off] ^= x
				switch err := survive(t, fmt.Sprintf("%s: byte %d ^ %#x", rel, off, x), data); {
				case err == nil:
					clean++
				case errors.Is(err, ErrCorrupt):
					corrupt++
				default:
					unsupported++
				}
			}
		}
		t.Logf("%s: %d flips: %d read clean, %d ErrCorrupt, %d ErrUnsupported", rel, clean+corrupt+unsupported, clean, corrupt, unsupported)
	})
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// TestDamageTruncation cuts the images short at many lengths.
func TestDamageTruncation(t *testing.T) {
	forDamageImages(t, func(t *testing.T, rel string, base []byte) {
		cuts := []int{0, 1, 31, 32, 1023, 1024, 1151, 1152, 1153, 4095, 4096, len(base) - 1}
		for n := 0; n < len(base); n += 509 {
			cuts = append(cuts, n)
		}
		failed := 0
		for _, n := range cuts {
			if n < 0 || n > len(base) {
				continue
			}
			if err := survive(t, fmt.Sprintf("%s: first %d bytes", rel, n), base[:n:n]); err != nil {
				failed++
			}
		}
		if failed == 0 {
			t.Errorf("%s: no truncation was noticed", rel)
		}
		t.Logf("%s: %d truncations, %d refused", rel, len(cuts), failed)
	})
}

// TestDamageRandom overwrites random runs of bytes with random values.
func TestDamageRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 300
	if os.Getenv("EROFS_DAMAGE_FULL") != "" {
		n = 20000
	} else if testing.Short() {
		n = 100
	}
	forDamageImages(t, func(t *testing.T, rel string, base []byte) {
		for i := 0; i < n; i++ {
			data := append([]byte(nil), base...)
			for k := rng.IntN(8) + 1; k > 0; k-- {
				off := rng.IntN(len(data))
				// Mostly the metadata in front, where it hurts.
				if rng.IntN(4) > 0 {
					off = rng.IntN(min(len(data), 3*BlockSize))
				}
				for j := rng.IntN(8) + 1; j > 0 && off < len(data); j-- {
					data[off] = byte(rng.Uint32())
					off++
				}
			}
			survive(t, fmt.Sprintf("%s: random damage %d", rel, i), data)
		}
	})
}
