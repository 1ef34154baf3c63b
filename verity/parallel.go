package verity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
)

// Level 0 of the tree (the hashes of the data blocks) is nearly all of the
// work: the levels above hash 1/128 (sha256) or 1/64 (sha512) as much. So
// data is cut into chunks of whole blocks, workers read and hash chunks in
// parallel, and the calling goroutine feeds their block hashes, in file
// order, into the tree. The result is the same for any number of workers.

const (
	// chunkSize is the data one job covers: large enough that reads and
	// channel hand-offs are cheap per byte, small enough to stay in a
	// core's cache between the read and the hash.
	chunkSize = 128 << 10
	// parallelMin is the size from which DigestFile uses workers.
	parallelMin = 2 * chunkSize
)

// chunk is one job: a block-aligned range of the data and its block hashes.
type chunk struct {
	off   int64
	n     int    // data bytes in buf
	buf   []byte // chunkSize bytes
	sums  []byte // one digest per block
	nsums int
	err   error
	done  chan struct{}
}

// hashChunk hashes the blocks of c.
func hashChunk(hash blockHasher, alg Algorithm, c *chunk) {
	c.nsums = hashBlocks(hash, alg, c.sums, c.buf[:c.n])
}

// hashBlocks writes into sums the hash of each block of data, the last
// one zero-padded if short, and returns how many it hashed: whole blocks
// two at a time where the CPU can, and nothing copied.
func hashBlocks(hash blockHasher, alg Algorithm, sums, data []byte) int {
	ds := alg.Size()
	i, off := 0, 0
	for ; off+2*BlockSize <= len(data); off += 2 * BlockSize {
		hash.sum2(alg, sums[i*ds:(i+1)*ds], sums[(i+1)*ds:(i+2)*ds],
			data[off:off+BlockSize], data[off+BlockSize:off+2*BlockSize])
		i += 2
	}
	for ; off < len(data); off += BlockSize {
		hash.sumPadded(sums[i*ds:(i+1)*ds], data[off:min(off+BlockSize, len(data))])
		i++
	}
	return i
}

// pipeline runs the workers and keeps the jobs in flight in order.
type pipeline struct {
	alg    Algorithm
	ds     int
	readAt io.ReaderAt // when set, workers read their own chunk
	jobs   chan *chunk
	wg     sync.WaitGroup
	queue  []*chunk // submitted, oldest first
	free   []*chunk
	max    int // chunks in flight at most
	tree   *tree
	size   uint64
	closed bool
	// sums, when not nil, collects the block hashes in file order
	// (digestAt's keep).
	sums []byte
}

func newPipeline(alg Algorithm, workers int, readAt io.ReaderAt) *pipeline {
	if workers < 1 {
		workers = 1
	}
	p := &pipeline{
		alg:    alg,
		ds:     alg.Size(),
		readAt: readAt,
		max:    4 * workers,
		tree:   newTree(alg),
	}
	p.jobs = make(chan *chunk, p.max)
	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	return p
}

func (p *pipeline) work() {
	defer p.wg.Done()
	hash := newBlockHasher(p.alg)
	for c := range p.jobs {
		if p.readAt != nil {
			c.err = readFullAt(p.readAt, c.buf[:c.n], c.off)
		}
		if c.err == nil {
			hashChunk(hash, p.alg, c)
		}
		c.done <- struct{}{}
	}
}

// get returns a chunk to fill, retiring the oldest job when all are busy.
func (p *pipeline) get() (*chunk, error) {
	if len(p.free) == 0 && len(p.queue) >= p.max {
		if err := p.retire(); err != nil {
			return nil, err
		}
	}
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free = p.free[:n-1]
		return c, nil
	}
	return &chunk{
		buf:  make([]byte, chunkSize),
		sums: make([]byte, chunkSize/BlockSize*p.ds),
		done: make(chan struct{}, 1),
	}, nil
}

func (p *pipeline) submit(c *chunk) {
	c.err = nil
	p.queue = append(p.queue, c)
	p.jobs <- c
}

// retire waits for the oldest job and adds its block hashes to the tree.
func (p *pipeline) retire() error {
	c := p.queue[0]
	p.queue = p.queue[1:]
	<-c.done
	p.free = append(p.free, c)
	if c.err != nil {
		return c.err
	}
	for i := range c.nsums {
		p.tree.add(c.sums[i*p.ds : (i+1)*p.ds])
	}
	if p.sums != nil {
		p.sums = append(p.sums, c.sums[:c.nsums*p.ds]...)
	}
	p.size += uint64(c.n)
	return nil
}

// finish drains the jobs and returns the digest.
func (p *pipeline) finish() ([]byte, error) {
	var err error
	for len(p.queue) > 0 && err == nil {
		err = p.retire()
	}
	p.stop()
	if err != nil {
		return nil, err
	}
	return digestOf(p.alg, p.size, p.tree.finish(p.size)), nil
}

// stop ends the workers after the jobs in flight; safe to call twice.
func (p *pipeline) stop() {
	if p.closed {
		return
	}
	p.closed = true
	close(p.jobs)
	for _, c := range p.queue {
		<-c.done
	}
	p.queue = nil
	p.wg.Wait()
}

// digestAt hashes size bytes of src with workers reading and hashing. It
// stops with ctx's error once ctx is done: the check costs nothing next to a
// chunk's hashing, and the chunks already handed out (a few per worker)
// are all that is hashed after it. With keep it also returns the block
// sums: nothing more is hashed or read for them.
func digestAt(ctx context.Context, alg Algorithm, src io.ReaderAt, size int64, workers int, keep bool) ([]byte, *BlockSums, error) {
	p := newPipeline(alg, workers, src)
	defer p.stop()
	if keep {
		p.sums = make([]byte, 0, sumsLen(alg, size))
	}
	for off := int64(0); off < size; off += chunkSize {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c, err := p.get()
		if err != nil {
			return nil, nil, err
		}
		c.off = off
		c.n = int(min(chunkSize, size-off))
		p.submit(c)
	}
	d, err := p.finish()
	if err != nil || !keep {
		return d, nil, err
	}
	return d, &BlockSums{alg: alg, size: size, sums: p.sums}, nil
}

// digestStream hashes r to its end. Input that ends within the first chunk
// is hashed right here, without starting workers.
func digestStream(alg Algorithm, r io.Reader, workers int) ([]byte, error) {
	bp := getBuffer()
	defer putBuffer(bp)
	n, err := io.ReadFull(r, *bp)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return DigestBytes(alg, (*bp)[:n]), nil
	}
	if err != nil {
		return nil, err
	}
	p := newPipeline(alg, workers, nil)
	defer p.stop()
	c, _ := p.get()
	copy(c.buf, *bp)
	c.n = n
	p.submit(c)
	for {
		c, err := p.get()
		if err != nil {
			return nil, err
		}
		n, err := io.ReadFull(r, c.buf)
		if n > 0 {
			c.n = n
			p.submit(c)
		} else {
			p.free = append(p.free, c)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return p.finish()
		}
		if err != nil {
			return nil, err
		}
	}
}

// buffers keeps read buffers of chunkSize bytes, reused across calls:
// hashing many small files should not allocate a buffer each. Not a
// sync.Pool, which is emptied at every other collection: a server with a
// small heap collects every few files, and each hash then allocated its
// 128 KiB again (35 MB over a read of 20,000 files, a tenth of a MiB per
// collection), garbage that brought the next collection sooner and the
// peak RSS up. keptBuffers covers a server's read-ahead workers and the
// opens beside them; more at once allocate, and drop theirs after.
const keptBuffers = 8

var buffers = make(chan *[]byte, keptBuffers)

func getBuffer() *[]byte {
	select {
	case b := <-buffers:
		return b
	default:
		b := make([]byte, chunkSize)
		return &b
	}
}

func putBuffer(b *[]byte) {
	select {
	case buffers <- b:
	default:
	}
}

// readFullAt fills buf from src at off; running short means the file
// shrank since its size was taken (while it was hashed, or since its
// block sums were).
func readFullAt(src io.ReaderAt, buf []byte, off int64) error {
	n, err := src.ReadAt(buf, off)
	if n == len(buf) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return fmt.Errorf("reading at offset %d: file shrank: %w", off+int64(n), io.ErrUnexpectedEOF)
	}
	return err
}
