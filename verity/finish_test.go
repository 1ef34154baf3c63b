package verity

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestHasherFinish: Finish gives the digest Sum gives, for sizes around
// block and tree-level boundaries, and a Hasher reset after Finish and
// used again gives the digest of the new content alone.
func TestHasherFinish(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, alg := range []Algorithm{SHA256, SHA512} {
		reused := NewHasher(alg)
		for _, size := range []int{0, 1, BlockSize - 1, BlockSize, BlockSize + 1, 70000, 129 * BlockSize, 129*BlockSize + 5} {
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(r.Uint32())
			}
			want := DigestBytes(alg, data)
			h := NewHasher(alg)
			h.Write(data)
			if sum := h.Sum(); !bytes.Equal(sum, want) {
				t.Fatalf("%s, %d bytes: Sum %x, want %x", alg, size, sum, want)
			}
			if got := h.Finish(); !bytes.Equal(got, want) {
				t.Errorf("%s, %d bytes: Finish %x, want %x", alg, size, got, want)
			}
			reused.Write(data)
			if got := reused.Finish(); !bytes.Equal(got, want) {
				t.Errorf("%s, %d bytes, a Hasher reused: Finish %x, want %x", alg, size, got, want)
			}
			reused.Reset()
		}
	}
}
