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

// The /dev/fuse side of a connection: goroutines reading requests, each
// answering the one it read with write(2). A reader serves its request
// itself, without waking another first: a program's requests mostly come
// one at a time, each after the last reply, and on a VM a wakeup costs as
// much as the request. So one reader is usually all there is, and another
// starts only when requests queue (a read finds one waiting at once) or a
// request is about to wait (Conn.WillWait: an object opened and checked,
// a disk read) and none is left reading; one that finds another reading
// when it is done ends. Up to maxReaders serve at once: with io_uring
// serving, only FORGET and INTERRUPT come this way.
//
// Over /dev/fuse alone, the descriptor is non-blocking and a reader with
// nothing to read tries again for up to spinFor before it waits in
// poll(2): the next request of a program that reads file after file comes
// within that, and a reader still running takes it with no wakeup. Cold
// dpkg --verify of a Debian root (12,000 requests) took 8% less time that
// way, tar 10% (2 CPUs, a VM; see readersSpin in the notes of issue 11).
const (
	maxReaders = 16
	spinFor    = 40 * time.Microsecond
)

type readers struct {
	c     *Conn
	mu    sync.Mutex
	idle  int // reading, waiting for a request, or about to
	total int
	wg    sync.WaitGroup
	// taken and answered count requests, for watch to see progress.
	taken, answered atomic.Uint64
	// sleeping: watch waits on wake, for the next request taken.
	sleeping atomic.Bool
	wake     chan struct{}
	// ended is closed when the last reader has ended: the connection is
	// gone, and no reader may start again.
	ended chan struct{}
	done  bool
	// lastPid is the process of the last request found waiting.
	lastPid atomic.Uint32
	// spin: c.fd is non-blocking and readers spin before they wait.
	spin bool
	// free are the buffers of readers that ended, for the next to start:
	// mapped, so that pages a reply never touched take no memory.
	free [][]byte
}

// start starts the first reader. spin says whether requests come mostly
// this way (no rings serving).
func (r *readers) start(spin bool) {
	if spin {
		flags, err := unix.FcntlInt(uintptr(r.c.fd), unix.F_GETFL, 0)
		if err == nil {
			_, err = unix.FcntlInt(uintptr(r.c.fd), unix.F_SETFL, flags|unix.O_NONBLOCK)
		}
		r.spin = err == nil
	}
	r.mu.Lock()
	r.total, r.idle = 1, 1
	r.mu.Unlock()
	r.wake = make(chan struct{}, 1)
	r.ended = make(chan struct{})
	r.wg.Add(2)
	go r.read()
	go r.watch()
}

// stuckAfter is how long a request may keep the only reader without
// another starting, when its handler did not say it would wait
// (Conn.WillWait): a cold page of the image, a slow disk under the store,
// an object store that is itself a FUSE mount. watch looks that often,
// and sleeps once it has seen nothing served for idleLooks looks in a row:
// waking it costs as much as a request, so it is not put to sleep and
// woken between the requests of a busy program.
const (
	stuckAfter = 10 * time.Millisecond
	idleLooks  = 5
)

// watch starts another reader when none has finished a request for
// stuckAfter while none is reading. It sleeps while the connection is
// idle: the next request taken wakes it.
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
		now := r.progress()
		r.mu.Lock()
		reading := r.idle > 0
		r.mu.Unlock()
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
		select {
		case <-r.ended:
			return
		case <-r.wake:
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
		n, queued, err := r.next(in)
		if err != nil {
			// ENODEV: unmounted (or aborted); nothing else is
			// expected, and nothing more can be read either way.
			if err != unix.ENODEV {
				c.logger.Error("reading /dev/fuse failed; the reader stops", "err", err)
			}
			r.exit()
			return
		}
		r.mu.Lock()
		r.idle--
		r.mu.Unlock()
		if queued && r.fromAnother(in[:n]) {
			// Requests are coming faster than one reader serves
			// them, from more than one process.
			r.more()
		}
		r.taken.Add(1)
		if r.sleeping.CompareAndSwap(true, false) {
			r.wake <- struct{}{}
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
		// Counted as reading already, so that no other reader starts
		// meanwhile.
		yield.tick()
	}
}

// next reads the next request into in. queued says it was there at once,
// without spinning or waiting for it.
func (r *readers) next(in []byte) (n int, queued bool, err error) {
	fd := r.c.fd
	if !r.spin {
		for {
			n, err = unix.Read(fd, in)
			if !retryRead(err) {
				return n, false, err
			}
		}
	}
	var until time.Time
	for try := 0; ; try++ {
		n, err = unix.Read(fd, in)
		if err != unix.EAGAIN {
			if retryRead(err) {
				continue
			}
			return n, try == 0, err
		}
		now := time.Now()
		if try == 0 {
			until = now.Add(spinFor)
		}
		if now.Before(until) {
			continue
		}
		// poll(2) as a system call the runtime knows may block.
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, -1); err != nil && err != unix.EINTR {
			return 0, false, err
		}
	}
}

// fromAnother tells whether req, found waiting, is the request of another
// process than the one before it, and one that could take a while. A
// program that reads file after file is often quick to ask again, its
// next request in before the reader is back; another reader would
// only cost a wakeup. Two programs asking at once can each use one.
func (r *readers) fromAnother(req []byte) bool {
	if len(req) < sizeOfInHeader {
		return false
	}
	switch op := *(*uint32)(unsafe.Pointer(&req[4])); op {
	case opForget, opBatchForget, opInterrupt:
		return false
	}
	pid := *(*uint32)(unsafe.Pointer(&req[32]))
	last := r.lastPid.Swap(pid)
	return last != pid
}

// FUSE opcodes that are answered at once, with no reply.
const (
	opForget      = 2
	opInterrupt   = 36
	opBatchForget = 42
)

// more starts one more reader if none is reading and there is room.
func (r *readers) more() {
	r.mu.Lock()
	start := r.idle == 0 && r.total < maxReaders && !r.done
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
	if r.total == 0 && !r.done {
		r.done = true
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
