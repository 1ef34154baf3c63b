//go:build linux

package fuseconn

import (
	"sync"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
)

// The /dev/fuse side of a connection: goroutines blocked in read(2), each
// answering the request it read with write(2). Blocking reads, as go-fuse
// does them, since a request then wakes the thread that serves it
// directly. There are as many readers as requests in service plus up to
// maxIdle waiting, up to maxReaders: with io_uring serving, only FORGET and
// INTERRUPT come this way and a few readers are all there is; over
// /dev/fuse alone, a reader taking a request starts another when none is
// left waiting, and one that finds enough waiting ends. Enough is a few
// more than one: an OPEN and the RELEASE of the file before it often come
// together, and a reader ending only for another to start at the next such
// pair cost two wakeups of a runtime thread per file read (futex, traced
// on find | xargs cat).
const (
	maxReaders = 16
	maxIdle    = 4
)

type readers struct {
	c     *Conn
	mu    sync.Mutex
	idle  int // blocked in read(2), or about to be
	total int
	wg    sync.WaitGroup
	// free are the buffers of readers that ended, for the next to start:
	// mapped, so that pages a reply never touched take no memory.
	free [][]byte
}

func (r *readers) start() {
	r.mu.Lock()
	r.total, r.idle = 1, 1
	r.mu.Unlock()
	r.wg.Add(1)
	go r.read()
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
		r.mu.Lock()
		r.idle--
		more := r.idle == 0 && r.total < maxReaders
		if more {
			r.idle++
			r.total++
			r.wg.Add(1)
		}
		r.mu.Unlock()
		if more {
			go r.read()
		}
		c.answer(in[:n], out)
		r.mu.Lock()
		if r.idle >= maxIdle {
			r.total--
			r.mu.Unlock()
			return
		}
		r.idle++
		r.mu.Unlock()
		// Counted as waiting already, so that no other reader starts
		// one more meanwhile.
		yield.tick()
	}
}

// exit is a waiting reader ending.
func (r *readers) exit() {
	r.mu.Lock()
	r.idle--
	r.total--
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
