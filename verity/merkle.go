package verity

import (
	"crypto/sha512"
	"encoding/binary"
	"hash"
)

// The fs-verity Merkle tree as the kernel defines it
// (Documentation/filesystems/fsverity.rst), restricted to what composefs
// uses: 4096-byte blocks and no salt. Level 0 of the tree holds the hashes of
// the data blocks (the last one zero-padded); each higher level holds the
// hashes of the blocks of the level below, packed and zero-padded to whole
// blocks; the root hash is the hash of the single block at the top. A file
// of one block has no tree blocks: its root hash is the hash of that block.
// An empty file's root hash is all zeros.

const (
	// BlockSize is the Merkle tree block size composefs uses.
	BlockSize = 1 << logBlockSize
	// logBlockSize is the descriptor's log_blocksize field.
	logBlockSize = 12
	// maxDigestSize is the largest digest of a supported algorithm.
	maxDigestSize = sha512.Size
	// descriptorSize is sizeof(struct fsverity_descriptor).
	descriptorSize = 256
)

// blockHasher hashes whole blocks with one reusable hash state: Reset,
// Write, Sum into the caller's slice, so hashing a block allocates nothing
// (sha256.Sum256 allocates its state on every call). Not for concurrent
// use: each worker has its own.
type blockHasher struct {
	h hash.Hash
}

func newBlockHasher(alg Algorithm) blockHasher {
	return blockHasher{h: alg.New()}
}

// sum writes the hash of block into dst, which has the digest's length.
func (b blockHasher) sum(dst, block []byte) {
	b.h.Reset()
	b.h.Write(block)
	b.h.Sum(dst[:0])
}

// sum2 writes the hashes of two whole blocks into dst1 and dst2: at once
// where the CPU hashes two SHA-256 blocks side by side (sha256x2_gen.go),
// else one after the other.
func (b blockHasher) sum2(alg Algorithm, dst1, dst2, block1, block2 []byte) {
	if alg == SHA256 && have2x && len(block1) == BlockSize && len(block2) == BlockSize {
		var out [64]byte
		sha256Block2x(&out, (*[BlockSize]byte)(block1), (*[BlockSize]byte)(block2))
		copy(dst1, out[:32])
		copy(dst2, out[32:])
		return
	}
	b.sum(dst1, block1)
	b.sum(dst2, block2)
}

// treeLevel is the block of one tree level currently being filled.
type treeLevel struct {
	block [BlockSize]byte
	used  int    // bytes of block filled
	count uint64 // hashes ever added to this level
}

// tree builds the levels above the data: it is fed the hash of every data
// block in order and yields the root hash. Its memory is one block per
// level (at most a dozen levels for any file size).
type tree struct {
	alg    Algorithm
	hash   blockHasher
	levels []*treeLevel
	// scratch receives block hashes; a field rather than a local because
	// the hash.Hash interface makes any slice passed to it escape.
	scratch [maxDigestSize]byte
}

func newTree(alg Algorithm) *tree {
	return &tree{alg: alg, hash: newBlockHasher(alg)}
}

// add appends the hash of a data block to level 0.
func (t *tree) add(d []byte) { t.push(0, d) }

// push appends hash d to level i. Digest sizes divide the block size, so a
// level's block is complete exactly when it is full; its hash then moves up.
func (t *tree) push(i int, d []byte) {
	for ; ; i++ {
		if i == len(t.levels) {
			t.grow()
		}
		l := t.levels[i]
		l.used += copy(l.block[l.used:], d)
		l.count++
		if l.used < BlockSize {
			return
		}
		l.used = 0
		d = t.scratch[:len(d)]
		t.hash.sum(d, l.block[:])
	}
}

// grow adds a level, reusing one a reset left behind.
func (t *tree) grow() {
	n := len(t.levels)
	if n < cap(t.levels) {
		t.levels = t.levels[:n+1]
		if l := t.levels[n]; l != nil {
			l.used, l.count = 0, 0
			return
		}
	} else {
		t.levels = append(t.levels, nil)
	}
	t.levels[n] = new(treeLevel)
}

// reset empties the tree, keeping its level blocks for reuse.
func (t *tree) reset() { t.levels = t.levels[:0] }

// root returns the root hash, finishing a copy of the tree so that it can
// still grow; finish does the same in place, for one-shot digests.
func (t *tree) root(dataSize uint64) []byte {
	if dataSize == 0 || len(t.levels) == 0 {
		return make([]byte, t.alg.Size())
	}
	return t.clone().finish(dataSize)
}

// finish completes the tree in place and returns the root hash. The top of
// the tree is the first level that received a single hash; every level
// below it is finished by hashing its zero-padded partial block upwards.
func (t *tree) finish(dataSize uint64) []byte {
	ds := t.alg.Size()
	if dataSize == 0 || len(t.levels) == 0 {
		return make([]byte, ds)
	}
	for i := 0; i < len(t.levels); i++ {
		l := t.levels[i]
		if l.count == 1 {
			return append([]byte(nil), l.block[:ds]...)
		}
		if l.used > 0 {
			clear(l.block[l.used:])
			l.used = 0
			// push copies its argument before it reuses scratch.
			t.hash.sum(t.scratch[:ds], l.block[:])
			t.push(i+1, t.scratch[:ds])
		}
	}
	// Not reached: a level with more than one hash always feeds the next.
	return make([]byte, ds)
}

func (t *tree) clone() *tree {
	c := &tree{alg: t.alg, hash: t.hash, levels: make([]*treeLevel, len(t.levels))}
	for i, l := range t.levels {
		cp := *l
		c.levels[i] = &cp
	}
	return c
}

// descriptor encodes struct fsverity_descriptor (version 1, no salt, no
// signature); the fs-verity digest of a file is the hash of these bytes.
func descriptor(alg Algorithm, dataSize uint64, rootHash []byte) [descriptorSize]byte {
	var d [descriptorSize]byte
	d[0] = 1 // version
	d[1] = byte(alg)
	d[2] = logBlockSize
	d[3] = 0                                // salt_size
	binary.LittleEndian.PutUint32(d[4:], 0) // sig_size
	binary.LittleEndian.PutUint64(d[8:], dataSize)
	copy(d[16:16+maxDigestSize], rootHash) // root_hash[64]
	// salt[32] and reserved[144] stay zero.
	return d
}

// digestOf is the file digest: the hash of the descriptor.
func digestOf(alg Algorithm, dataSize uint64, rootHash []byte) []byte {
	d := descriptor(alg, dataSize, rootHash)
	h := alg.New()
	h.Write(d[:])
	return h.Sum(nil)
}
