package verity

import (
	"io"
	"sync"
)

// Hasher computes the fs-verity digest of a stream: write the content, then
// Sum. It hashes each data block as soon as it is complete, so its memory
// does not grow with the stream.
type Hasher struct {
	alg     Algorithm
	hash    blockHasher
	tree    *tree
	size    uint64
	partial [BlockSize]byte
	used    int // bytes in partial
	digest  [maxDigestSize]byte
}

// NewHasher returns a Hasher for alg. Like Algorithm.New, an algorithm that
// is not Valid is taken as SHA256; callers check Valid first.
func NewHasher(alg Algorithm) *Hasher {
	if !alg.Valid() {
		alg = SHA256
	}
	return &Hasher{alg: alg, hash: newBlockHasher(alg), tree: newTree(alg)}
}

// Algorithm is the hash algorithm of the digest.
func (h *Hasher) Algorithm() Algorithm { return h.alg }

// Size is the number of bytes written so far.
func (h *Hasher) Size() uint64 { return h.size }

// Write adds p to the content; it never fails.
func (h *Hasher) Write(p []byte) (int, error) {
	n := len(p)
	h.size += uint64(n)
	ds := h.alg.Size()
	if h.used > 0 {
		c := copy(h.partial[h.used:], p)
		h.used += c
		p = p[c:]
		if h.used < BlockSize {
			return n, nil
		}
		h.hash.sum(h.digest[:ds], h.partial[:])
		h.tree.add(h.digest[:ds])
		h.used = 0
	}
	// Whole blocks straight from p, without copying, two at a time
	// where the CPU can.
	var two [2 * maxDigestSize]byte
	for len(p) >= 2*BlockSize {
		h.hash.sum2(h.alg, two[:ds], two[ds:2*ds], p[:BlockSize], p[BlockSize:2*BlockSize])
		h.tree.add(two[:ds])
		h.tree.add(two[ds : 2*ds])
		p = p[2*BlockSize:]
	}
	for len(p) >= BlockSize {
		h.hash.sum(h.digest[:ds], p[:BlockSize])
		h.tree.add(h.digest[:ds])
		p = p[BlockSize:]
	}
	h.used = copy(h.partial[:], p)
	return n, nil
}

// ReadFrom reads r to its end into the hasher, in large reads.
func (h *Hasher) ReadFrom(r io.Reader) (int64, error) {
	bp := getBuffer()
	defer putBuffer(bp)
	buf := *bp
	var total int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			total += int64(n)
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// Sum returns the fs-verity digest of everything written so far; the
// Hasher can keep being written to.
func (h *Hasher) Sum() []byte {
	t := h.tree
	if h.used > 0 {
		t = t.clone()
		h.addPartial(t)
	}
	return digestOf(h.alg, h.size, t.root(h.size))
}

// Finish is Sum for a Hasher that is not written to again until Reset:
// it finishes the tree in place instead of copying it, allocating only
// the digest.
func (h *Hasher) Finish() []byte { return h.sumFinal() }

// sumFinal is Sum for a Hasher that will not be written to again (until
// Reset): it finishes the tree in place instead of copying it.
func (h *Hasher) sumFinal() []byte {
	if h.used > 0 {
		h.addPartial(h.tree)
		h.used = 0
	}
	return digestOf(h.alg, h.size, h.tree.finish(h.size))
}

// addPartial adds the hash of the zero-padded partial block to t.
func (h *Hasher) addPartial(t *tree) {
	clear(h.partial[h.used:])
	ds := h.alg.Size()
	h.hash.sum(h.digest[:ds], h.partial[:])
	t.add(h.digest[:ds])
}

// Reset empties the Hasher for a new stream.
func (h *Hasher) Reset() {
	h.tree.reset()
	h.size = 0
	h.used = 0
}

// Hashers are pooled for the one-shot digests of small inputs, which are
// many (every object of an image) and should not each allocate a tree.
var hasherPools [SHA512 + 1]sync.Pool

func getHasher(alg Algorithm) *Hasher {
	if h, ok := hasherPools[alg].Get().(*Hasher); ok {
		return h
	}
	return NewHasher(alg)
}

func putHasher(h *Hasher) {
	h.Reset()
	hasherPools[h.alg].Put(h)
}

// DigestBytes returns the fs-verity digest of data.
func DigestBytes(alg Algorithm, data []byte) []byte {
	if !alg.Valid() {
		alg = SHA256
	}
	h := getHasher(alg)
	defer putHasher(h)
	h.Write(data)
	return h.sumFinal()
}
