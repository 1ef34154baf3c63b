package verity

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// referenceDigest is the textbook construction, level by level with whole
// levels in memory: slow and simple, to check the streaming tree against.
func referenceDigest(alg Algorithm, data []byte) []byte {
	ds := alg.Size()
	hashBlock := func(b []byte) []byte {
		blk := make([]byte, BlockSize)
		copy(blk, b)
		h := alg.New()
		h.Write(blk)
		return h.Sum(nil)
	}
	root := make([]byte, ds)
	if len(data) > 0 {
		level := data
		for {
			var next []byte
			for off := 0; off < len(level); off += BlockSize {
				next = append(next, hashBlock(level[off:min(off+BlockSize, len(level))])...)
			}
			if len(next) == ds {
				root = next
				break
			}
			level = next
		}
	}
	desc := make([]byte, 256)
	desc[0], desc[1], desc[2] = 1, byte(alg), 12
	binary.LittleEndian.PutUint64(desc[8:], uint64(len(data)))
	copy(desc[16:], root)
	h := alg.New()
	h.Write(desc)
	return h.Sum(nil)
}

func TestAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	// Sizes at the level boundaries of both algorithms (128 sha256 or 64
	// sha512 hashes per block), then random ones.
	sizes := []int{0, 1, 4095, 4096, 4097, 128 * 4096, 128*4096 + 1, 64 * 4096, 64*4096 + 1,
		64 * 64 * 4096, 64*64*4096 + 1}
	for range 16 {
		sizes = append(sizes, rng.IntN(1<<20))
	}
	src := rand.NewChaCha8([32]byte{7})
	for _, n := range sizes {
		data := make([]byte, n)
		src.Read(data)
		for _, alg := range algorithms {
			want := referenceDigest(alg, data)
			if got := DigestBytes(alg, data); !bytes.Equal(got, want) {
				t.Errorf("%s size %d: got %x, want %x", alg, n, got, want)
			}
		}
	}
}

func TestHasherSumDoesNotDisturb(t *testing.T) {
	data := mod251(3*4096 + 17)
	for _, alg := range algorithms {
		h := NewHasher(alg)
		h.Write(data[:5000])
		if got, want := h.Sum(), DigestBytes(alg, data[:5000]); !bytes.Equal(got, want) {
			t.Errorf("%s: first Sum %x, want %x", alg, got, want)
		}
		h.Write(data[5000:])
		if got, want := h.Sum(), DigestBytes(alg, data); !bytes.Equal(got, want) {
			t.Errorf("%s: second Sum %x, want %x", alg, got, want)
		}
		if h.Size() != uint64(len(data)) {
			t.Errorf("Size %d, want %d", h.Size(), len(data))
		}
		h.Reset()
		if got, want := h.Sum(), DigestBytes(alg, nil); !bytes.Equal(got, want) {
			t.Errorf("%s: Sum after Reset %x, want %x", alg, got, want)
		}
	}
}

func TestEmptyRootHashIsZero(t *testing.T) {
	for _, alg := range algorithms {
		want := referenceDigest(alg, nil)
		if got := DigestBytes(alg, []byte{}); !bytes.Equal(got, want) {
			t.Errorf("%s: %x, want %x", alg, got, want)
		}
		d := descriptor(alg, 0, make([]byte, alg.Size()))
		if !bytes.Equal(d[16:80], make([]byte, 64)) || d[0] != 1 || d[1] != byte(alg) || d[2] != 12 {
			t.Errorf("%s: empty descriptor % x", alg, d[:80])
		}
	}
}

// FuzzHasherWrites checks that any split of the input into writes gives
// the reference digest.
func FuzzHasherWrites(f *testing.F) {
	f.Add([]byte("hello world"), uint16(3))
	f.Add(mod251(4097), uint16(4096))
	f.Add(mod251(9000), uint16(1))
	f.Add([]byte{}, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, step uint16) {
		for _, alg := range algorithms {
			h := NewHasher(alg)
			s := int(step)%5000 + 1
			for rest := data; len(rest) > 0; {
				n := min(s, len(rest))
				h.Write(rest[:n])
				rest = rest[n:]
				s = s*7%5000 + 1
			}
			if got, want := h.Sum(), referenceDigest(alg, data); !bytes.Equal(got, want) {
				t.Fatalf("%s len %d: got %x, want %x", alg, len(data), got, want)
			}
		}
	})
}
