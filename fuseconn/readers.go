//go:build linux

package fuseconn

import (
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
)

// The /dev/fuse side of a connection: goroutines blocked in read(2), each
// answering the request it read with write(2). A reader serves the request
// it read itself and starts no other first: most programs ask one thing at
// a time, each after the last reply, and a reader started to wait for the
// next request meanwhile costs a wakeup of a runtime thread of its own,
// which on a VM costs as much as the request. So one reader is usually all
// there is, and one that finds another reading when it is done ends.
// Another starts when:
//   - a request comes from another thread than the one before it (the
//     kernel's pid is the thread's): two programs, or two threads of one,
//     asking at once (find | xargs cat) should not wait for each other;
//   - a handler says it will wait long (Conn.WillWait: a large object's
//     check, a remote fetch);
//   - as a last resort, every reader has served the same requests for a
//     whole look of watch's (stuckAfter).
//
// Up to maxReaders serve at once. With io_uring serving, only FORGET and
// INTERRUPT come this way. Measured on 2 CPUs in a VM, five interleaved
// cold runs each against a reader starting another whenever none was left
// reading: dpkg --verify of a Debian root 9% faster (five of five), tar of
// it 5% (five of five), an in-process read of 20,000 small files 11% (five
// of five), find | xargs cat of them 2% (three of five). Spinning on a
// non-blocking descriptor before waiting, to take the next request with no
// wakeup at all, did not add to that, and lost find | xargs cat 3%.
const maxReaders = 16

type readers struct {
	c     *Conn
	mu    sync.Mutex
	idle  int // blocked in read(2), or about to be
	total int
	wg    sync.WaitGroup
	// lastPid is the thread of the last request that names one.
	lastPid atomic.Uint32
	// taken and answered count requests, for watch to see progress.
	taken, answered atomic.Uint64
	// sleeping: watch waits on wake, for the next request taken.
	sleeping atomic.Bool
	wake     chan struct{}
	// ended is closed when the last reader has ended: the connection is
	// gone, and no reader may start again (total stays 0).
	ended chan struct{}
	// free are the buffers of readers that ended, for the next to start:
	// mapped, so that pages a reply never touched take no memory.
	free [][]byte
}

// start starts the first reader, and watch.
func (r *readers) start() {
	r.mu.Lock()
	r.total, r.idle = 1, 1
	r.mu.Unlock()
	r.wake = make(chan struct{}, 1)
	r.ended = make(chan struct{})
	r.wg.Add(2)
	go r.read()
	go r.watch()
}

// fromAnother tells whether req comes from another thread than the last
// request that named one (the header's pid is the thread's). FORGET,
// INTERRUPT and the kernel's own requests (pid 0) name none that matters.
func (r *readers) fromAnother(req []byte) bool {
	if len(req) < sizeOfInHeader {
		return false
	}
	switch *(*uint32)(unsafe.Pointer(&req[4])) {
	case opForget, opBatchForget, opInterrupt:
		return false
	}
	pid := *(*uint32)(unsafe.Pointer(&req[32]))
	return pid != 0 && r.lastPid.Swap(pid) != pid
}

// FUSE opcodes answered at once, with no reply.
const (
	opForget      = 2
	opInterrupt   = 36
	opBatchForget = 42
)

// stuckAfter is how often watch looks. It starts another reader when it
// finds every reader busy with the same requests as at its last look (10
// to 20 ms in service): a handler that waits and did not say so
// (Conn.WillWait), on a cold page of the image, a slow disk under the
// store, an object store that is itself a FUSE mount, or one request
// waiting on pages another holds (storeSmall behind a READ). It sleeps once
// it has seen nothing served for idleLooks looks in a row: waking it costs
// as much as a request, so it is not put to sleep and woken between the
// requests of a busy program.
const (
	stuckAfter = 10 * time.Millisecond
	idleLooks  = 5
)

// watch starts another reader when every reader has served the same
// requests since its last look (stuckAfter). It sleeps while the
// connection is idle: the next request taken wakes it.
func (r *readers) watch() {
	defer r.wg.Done()
	tick := time.NewTicker(stuckAfter)
	defer tick.Stop()
	last, quiet := r.progress(), 0
	for {
		select {
		case <-r.ended:
			return
		case <-tick.C:
		}
		// reading before progress: a reader counts a request taken
		// before it stops counting as reading, so none seen reading
		// means its take is already in now.
		r.mu.Lock()
		reading := r.idle > 0
		r.mu.Unlock()
		now := r.progress()
		if now != last || !reading {
			if now == last {
				// The same requests in service since the
				// last look.
				r.more()
			}
			last, quiet = now, 0
			continue
		}
		if quiet++; quiet < idleLooks {
			continue
		}
		// Nothing served for a while and a reader waiting: sleep
		// until a request is taken.
		tick.Stop()
		r.sleeping.Store(true)
		// A request taken since the look may have found sleeping
		// still false, and sent nothing: its reader could be stuck
		// with no one watching. A reader that clears sleeping sends;
		// if watch clears it itself, it does not wait.
		if r.progress() == now || !r.sleeping.CompareAndSwap(true, false) {
			select {
			case <-r.ended:
				return
			case <-r.wake:
			}
		}
		tick.Reset(stuckAfter)
		last, quiet = r.progress(), 0
	}
}

// progress is the count of requests taken and answered: the same twice
// means the same requests in service, or none.
func (r *readers) progress() [2]uint64 {
	return [2]uint64{r.taken.Load(), r.answered.Load()}
}

// wait returns once every reader has ended: the connection is gone.
func (r *readers) wait() {
	r.wg.Wait()
	for _, b := range r.free {
		unix.Munmap(b)
	}
	r.free = nil
}

// buffers returns a reader's request and reply buffers.
func (r *readers) buffers() (in, out []byte, err error) {
	r.mu.Lock()
	if n := len(r.free); n > 0 {
		b := r.free[n-1]
		r.free = r.free[:n-1]
		r.mu.Unlock()
		return b[:r.c.bufLen], b[r.c.bufLen:], nil
	}
	r.mu.Unlock()
	b, err := unix.Mmap(-1, 0, 2*r.c.bufLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, nil, err
	}
	return b[:r.c.bufLen], b[r.c.bufLen:], nil
}

// read is one reader.
func (r *readers) read() {
	defer r.wg.Done()
	c := r.c
	in, out, err := r.buffers()
	if err != nil {
		c.logger.Error("a /dev/fuse reader got no buffers and stops", "err", err)
		r.exit()
		return
	}
	defer func() {
		r.mu.Lock()
		r.free = append(r.free, in[:2*c.bufLen])
		r.mu.Unlock()
	}()
	var yield yielder
	for {
		n, err := unix.Read(c.fd, in)
		if retryRead(err) {
			continue
		}
		if err != nil {
			// ENODEV: unmounted (or aborted); nothing else is
			// expected, and nothing more can be read either way.
			if err != unix.ENODEV {
				c.logger.Error("reading /dev/fuse failed; the reader stops", "err", err)
			}
			r.exit()
			return
		}
		r.taken.Add(1)
		if r.sleeping.CompareAndSwap(true, false) {
			r.wake <- struct{}{}
		}
		r.mu.Lock()
		r.idle--
		r.mu.Unlock()
		if r.fromAnother(in[:n]) {
			r.more()
		}
		c.answer(in[:n], out)
		r.answered.Add(1)
		r.mu.Lock()
		if r.idle > 0 {
			r.total--
			r.mu.Unlock()
			return
		}
		r.idle++
		r.mu.Unlock()
		// Counted as waiting already, so that no other reader starts
		// meanwhile.
		yield.tick()
	}
}

// more starts one more reader if none is reading and there is room.
func (r *readers) more() {
	r.mu.Lock()
	// total is 0 before start and after the end, and only a reader
	// counted in it starts another.
	start := r.idle == 0 && r.total > 0 && r.total < maxReaders
	if start {
		r.idle++
		r.total++
		r.wg.Add(1)
	}
	r.mu.Unlock()
	if start {
		go r.read()
	}
}

// exit is a waiting reader ending.
func (r *readers) exit() {
	r.mu.Lock()
	r.idle--
	r.total--
	if r.total == 0 {
		close(r.ended)
	}
	r.mu.Unlock()
}

// retryRead tells the read errors that mean "read again": a signal, no
// request after all, or a request interrupted before it was read.
func retryRead(err error) bool {
	return err == unix.EINTR || err == unix.EAGAIN || err == unix.ENOENT
}

// answer serves one request read from /dev/fuse and writes its reply,
// unless it has none (FORGET, INTERRUPT).
func (c *Conn) answer(req, out []byte) {
	n, st := c.ps.HandleRequest([][]byte{req}, [][]byte{out})
	if n == 0 {
		if !st.Ok() && len(req) >= sizeOfInHeader {
			// Malformed: fail it rather than leave its caller
			// waiting forever.
			unique := *(*uint64)(unsafe.Pointer(&req[8]))
			c.writeError(unique, st)
		}
		return
	}
	c.write(out[:n])
}

// writeError answers request unique with the error st alone.
func (c *Conn) writeError(unique uint64, st fuse.Status) {
	var h [sizeOfOutHeader]byte
	fuseuring.PutErrorReply(h[:], unique, st)
	c.write(h[:])
}

// write sends a reply. ENOENT means its request is gone (interrupted and
// already answered, or the connection aborted): not worth a log line.
func (c *Conn) write(b []byte) {
	for {
		_, err := unix.Write(c.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil && err != unix.ENOENT && err != unix.ENODEV {
			c.logger.Error("writing a reply to /dev/fuse failed", "err", err)
		}
		return
	}
}
