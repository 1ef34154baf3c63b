package verity

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"testing"
)

// TestSum2 checks blockHasher.sum2 against crypto/sha256 and sha512, with
// the two-at-once path (where this CPU has it) and without.
func TestSum2(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	blocks := [][]byte{make([]byte, BlockSize), bytes.Repeat([]byte{0xff}, BlockSize)}
	for range 50 {
		b := make([]byte, BlockSize)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		blocks = append(blocks, b)
	}
	saved := have2x
	defer func() { have2x = saved }()
	for _, fast := range []bool{saved, false} {
		have2x = fast
		for _, alg := range []Algorithm{SHA256, SHA512} {
			h := newBlockHasher(alg)
			ds := alg.Size()
			for i := 0; i+1 < len(blocks); i++ {
				a, b := blocks[i], blocks[(i*7+1)%len(blocks)]
				got1, got2 := make([]byte, ds), make([]byte, ds)
				h.sum2(alg, got1, got2, a, b)
				want1, want2 := alg.New(), alg.New()
				want1.Write(a)
				want2.Write(b)
				if !bytes.Equal(got1, want1.Sum(nil)) || !bytes.Equal(got2, want2.Sum(nil)) {
					t.Fatalf("%s, two at once %v, blocks %d and %d: wrong hash", alg, fast, i, (i*7+1)%len(blocks))
				}
			}
		}
	}
	if saved {
		var out [64]byte
		a, b := (*[BlockSize]byte)(blocks[2]), (*[BlockSize]byte)(blocks[3])
		sha256Block2x(&out, a, b)
		if [32]byte(out[:32]) != sha256.Sum256(a[:]) || [32]byte(out[32:]) != sha256.Sum256(b[:]) {
			t.Fatal("sha256Block2x disagrees with crypto/sha256")
		}
	} else {
		t.Log("this CPU has no SHA extensions: only the one-at-a-time path was tested")
	}
}

func BenchmarkSum2(b *testing.B) {
	h := newBlockHasher(SHA256)
	x, y := make([]byte, BlockSize), make([]byte, BlockSize)
	d1, d2 := make([]byte, 32), make([]byte, 32)
	b.SetBytes(2 * BlockSize)
	for b.Loop() {
		h.sum2(SHA256, d1, d2, x, y)
	}
}
