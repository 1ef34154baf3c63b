package verity

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// BlockSums is level 0 of a file's fs-verity Merkle tree: the hash of each
// of its data blocks, in order (the last one zero-padded). The levels
// above are 1/128 (sha256) of its size, so the file's digest follows from
// it at little cost (Digest); and once that digest is the one wanted, a
// read can be checked against the hashes of the blocks it covers alone
// (ReadAt). That is how the kernel's fs-verity reads: a file's first bytes
// are served once their blocks are checked, not once all of it is hashed.
type BlockSums struct {
	alg  Algorithm
	size int64
	sums []byte // one digest per block
}

// TreeMinSize is the smallest file whose block sums are kept (Trees) and
// read by (BlockSums.ReadAt). A smaller file is hashed whole in one read
// loop, and so quickly that checking it block by block gains nothing a
// separate file of sums would not cost back.
const TreeMinSize = 256 << 10

// TreeMaxSize is the largest: its sums (8 MiB for sha256) are held in
// memory while the file is open, or held for another open. A larger file
// is hashed whole, as before, and a sparse file claiming a terabyte costs
// no 8 GiB of sums.
const TreeMaxSize = 1 << 30

// keepsSums tells whether a file of size bytes has its block sums kept.
func keepsSums(size int64) bool { return size >= TreeMinSize && size <= TreeMaxSize }

// blockCount is the number of data blocks in a file of size bytes.
func blockCount(size int64) int64 { return (size + BlockSize - 1) / BlockSize }

// sumsLen is the length of the block sums of a file of size bytes.
func sumsLen(alg Algorithm, size int64) int64 { return blockCount(size) * int64(alg.Size()) }

// Len is the memory the sums take, in bytes.
func (b *BlockSums) Len() int64 { return int64(len(b.sums)) }

// Digest is the fs-verity digest of the file the sums describe: the
// levels above level 0 are built from them.
func (b *BlockSums) Digest() []byte {
	t := newTree(b.alg)
	ds := b.alg.Size()
	for off := 0; off < len(b.sums); off += ds {
		t.add(b.sums[off : off+ds])
	}
	size := uint64(b.size)
	return digestOf(b.alg, size, t.finish(size))
}

// BlockMismatchError is a block read that does not hash to its sum: the
// file is not the one its digest describes.
type BlockMismatchError struct {
	// Offset is where the block begins in the file.
	Offset int64
}

func (e *BlockMismatchError) Error() string {
	return fmt.Sprintf("block at offset %d does not match its fs-verity hash", e.Offset)
}

// Unwrap makes the error an ErrMismatch.
func (e *BlockMismatchError) Unwrap() error { return ErrMismatch }

// ReadAt reads from src, the file the sums describe, into p at off, as
// io.ReaderAt does (short with io.EOF at the end of the file), and
// returns the bytes only once every block they come from hashes to its
// sum: the whole block is read and hashed, even for a read of part of
// it. The bytes checked are the very bytes returned, so a file changed
// after it was opened can give an error, never unchecked content. A block
// that does not match gives a *BlockMismatchError; a file that ends
// before the sums do gives an error wrapping io.ErrUnexpectedEOF; either
// way no bytes, and none left in p. The sums bound what is read: bytes
// past their size are not the file's, and are never read.
func (b *BlockSums) ReadAt(src io.ReaderAt, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("read at negative offset %d", off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	end := min(off+int64(len(p)), b.size)
	first := off &^ (BlockSize - 1)
	last := min((end+BlockSize-1)&^(BlockSize-1), b.size)
	span := int(last - first)
	// Whole blocks read straight into p; anything else (a read that
	// begins or ends within a block, as the kernel's never do) through
	// a buffer of whole blocks.
	direct := first == off && span <= len(p)
	var buf []byte
	if direct {
		buf = p[:span]
	} else if span <= chunkSize {
		bp := getBuffer()
		defer putBuffer(bp)
		buf = (*bp)[:span]
	} else {
		buf = make([]byte, span)
	}
	err := readFullAt(src, buf, first)
	if err == nil {
		err = b.check(buf, first)
	}
	if err != nil {
		if direct {
			clear(buf) // no unchecked bytes left for a careless caller
		}
		return 0, err
	}
	n := int(end - off)
	if !direct {
		copy(p, buf[off-first:end-first])
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// check hashes data, the file's bytes from block-aligned offset at up to a
// block boundary or the end of the file, and compares the hashes with the
// sums of those blocks.
func (b *BlockSums) check(data []byte, at int64) error {
	ds := b.alg.Size()
	c := getChecker(b.alg)
	defer putChecker(b.alg, c)
	n := int(blockCount(int64(len(data))))
	if cap(c.sums) < n*ds {
		c.sums = make([]byte, n*ds)
	}
	got := c.sums[:n*ds]
	hashBlocks(c.hash, b.alg, got, data)
	i := int(at / BlockSize)
	want := b.sums[i*ds : (i+n)*ds]
	if bytes.Equal(got, want) {
		return nil
	}
	for j := 0; ; j++ {
		if !bytes.Equal(got[j*ds:(j+1)*ds], want[j*ds:(j+1)*ds]) {
			return &BlockMismatchError{Offset: int64(i+j) * BlockSize}
		}
	}
}

// zeroBlock pads a file's short last block for its hash.
var zeroBlock [BlockSize]byte

// sumPadded writes into dst the hash of block, zero-padded to BlockSize,
// without copying it.
func (b blockHasher) sumPadded(dst, block []byte) {
	b.h.Reset()
	b.h.Write(block)
	if len(block) < BlockSize {
		b.h.Write(zeroBlock[:BlockSize-len(block)])
	}
	b.h.Sum(dst[:0])
}

// checker is what a check of a read needs: a hash state and room for the
// hashes of its blocks, kept in a pool (every READ of a file checked block
// by block needs one) so that a check allocates nothing.
type checker struct {
	hash blockHasher
	sums []byte
}

// checkers holds one pool per algorithm; BlockSums are only ever made
// with a valid one.
var checkers = [...]sync.Pool{
	SHA256: {New: func() any { return &checker{hash: newBlockHasher(SHA256)} }},
	SHA512: {New: func() any { return &checker{hash: newBlockHasher(SHA512)} }},
}

func getChecker(alg Algorithm) *checker { return checkers[alg].Get().(*checker) }

// putChecker pools c again, unless a large read grew its room past what
// reads through FUSE (1 MiB at most) need.
func putChecker(alg Algorithm, c *checker) {
	if cap(c.sums) <= 256*maxDigestSize {
		checkers[alg].Put(c)
	}
}
