//go:build linux

// Package fuseuring serves a FUSE connection's requests over io_uring
// (FUSE_OVER_IO_URING, Linux 6.14 and later) instead of read(2) and
// write(2) on /dev/fuse.
//
// Why: on /dev/fuse every request wakes a server thread on whichever CPU
// it slept, and every reply wakes the caller back across CPUs. A stat walk
// is a chain of such round trips, and on virtual machines a cross-CPU wake
// costs several times a local one. With io_uring the kernel queues each
// request on the ring of the CPU its caller runs on; our threads for that
// queue are pinned to that CPU, so the request is served where it was made.
//
// The connection's owner (package fuseconn) mounts, answers INIT and reads
// /dev/fuse: once every queue has a ring entry registered, the kernel sends
// all requests through the rings except FORGET and INTERRUPT, which keep
// coming to /dev/fuse. Requests from both are handed to the same Handler
// (serve.go), which decodes them.
package fuseuring

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/composefs/composefs-go/internal/iouring"
	"golang.org/x/sys/unix"
)

// From include/uapi/linux/fuse.h.
const (
	cmdRegister       = 1
	cmdCommitAndFetch = 2

	// The header buffer of a ring entry: the in (or out) header, the
	// opcode's own fixed header, then struct fuse_uring_ent_in_out.
	hdrInOut    = 0
	hdrOpIn     = 128
	hdrEntInOut = 256
	hdrSize     = 288
	opInSize    = 128

	// Offsets in struct fuse_uring_ent_in_out.
	entCommitID  = hdrEntInOut + 8
	entPayloadSz = hdrEntInOut + 16

	// Offsets in struct fuse_uring_cmd_req, in the SQE's command area.
	cmdReqCommitID = iouring.CmdOffset + 8
	cmdReqQid      = iouring.CmdOffset + 16

	minReadBuffer = 8192
)

// waitSlice bounds a wait in the kernel, so that Stop is seen even when no
// request and no teardown arrives.
const waitSlice = time.Second

// Config is what the transport needs to know of the connection.
type Config struct {
	// FD is the connection's /dev/fuse descriptor.
	FD int
	// MaxWrite is the max_write the INIT reply gave the kernel: the
	// payload buffer of each entry must hold that much.
	MaxWrite int
	// Logger receives the transport's own failures, at error level. Nil
	// means slog.Default().
	Logger *slog.Logger
}

// Transport is the set of ring threads serving one connection.
type Transport struct {
	h       Handler
	cfg     Config
	payload int
	stop    atomic.Bool
	wg      sync.WaitGroup
	served  atomic.Uint64
}

// Probe reports whether this process can set up the rings Start needs: a
// mount must not offer FUSE_OVER_IO_URING to the kernel otherwise, since
// the kernel then holds every request until the rings are registered.
func Probe() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := iouring.New(1)
	if err != nil {
		return err
	}
	return r.Close()
}

// KernelSwitch is the fuse module's parameter that allows FUSE over
// io_uring: "Y" or "N", off unless an administrator turns it on.
const KernelSwitch = "/sys/module/fuse/parameters/enable_uring"

// KernelEnabled reports whether the fuse module allows io_uring.
func KernelEnabled() bool {
	b, err := os.ReadFile(KernelSwitch)
	return err == nil && strings.TrimSpace(string(b)) == "Y"
}

// order is what Start tells a thread once all have set up.
type order int

const (
	orderQuit order = iota
	orderServe
	// orderRefuse sends one REGISTER the kernel must reject, which makes it
	// give up io_uring on the connection and serve it through /dev/fuse.
	orderRefuse
)

// Start sets up the rings and threads (plan.go) and registers their
// entries, to be served by h. Call it once the INIT reply that offered
// FUSE_OVER_IO_URING is written. On an error the kernel has been told to
// fall back to /dev/fuse, unless the error is ErrStuck.
func Start(h Handler, cfg Config) (*Transport, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{h: h, cfg: cfg}
	pg := os.Getpagesize()
	t.payload = (max(cfg.MaxWrite, minReadBuffer) + pg - 1) / pg * pg

	plans, err := machinePlan()
	if err != nil {
		// Without the queue count no registration can complete; one
		// thread still tells the kernel to fall back.
		plans = []threadPlan{{queues: []int{0}}}
	}
	n := len(plans)
	setups := make(chan setup, n)
	orders := make([]chan order, n)
	for i, p := range plans {
		orders[i] = make(chan order, 1)
		t.wg.Add(1)
		go t.thread(i, p, setups, orders[i])
	}
	failed, healthy := err, -1
	for range n {
		s := <-setups
		switch {
		case s.err != nil:
			failed = s.err
		case healthy < 0:
			healthy = s.thread
		}
	}
	if failed == nil {
		for _, o := range orders {
			o <- orderServe
		}
		return t, nil
	}
	for i, o := range orders {
		if i == healthy {
			o <- orderRefuse
		} else {
			o <- orderQuit
		}
	}
	t.wg.Wait()
	if healthy < 0 {
		return nil, fmt.Errorf("FUSE over io_uring: %w: %w", ErrStuck, failed)
	}
	return nil, fmt.Errorf("FUSE over io_uring: %w", failed)
}

// ErrStuck is Start's error when no ring at all could be made, not even to
// refuse with: the kernel then holds every request of the connection
// waiting for registrations, and only aborting the connection ends that.
var ErrStuck = errors.New("no ring to fall back with")

// testSetupFails, when set, can make a thread's setup fail: for the test
// of the fall back to /dev/fuse.
var testSetupFails func(thread int) error

// setup is a thread's report once its ring is made, or not.
type setup struct {
	thread int
	err    error
}

// Stop ends the threads, at the latest a waitSlice after the call, and
// waits for them. The kernel ends them itself at unmount.
func (t *Transport) Stop() {
	if t == nil {
		return
	}
	t.stop.Store(true)
	t.wg.Wait()
}

// Served is the number of requests answered through the rings.
func (t *Transport) Served() uint64 {
	if t == nil {
		return 0
	}
	return t.served.Load()
}

// entry is one registered ring entry: its buffers and our scratch space.
type entry struct {
	mem     []byte // header, then payload; mapped, so never moved
	hdr     []byte
	payload []byte
	iov     [2]unix.Iovec
	qid     uint16
}

func (t *Transport) newEntry(qid int) (*entry, error) {
	pg := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, pg+t.payload, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, fmt.Errorf("entry buffers: %w", err)
	}
	e := &entry{mem: mem, hdr: mem[:hdrSize], payload: mem[pg:], qid: uint16(qid)}
	e.iov[0].Base = &e.hdr[0]
	e.iov[0].SetLen(hdrSize)
	e.iov[1].Base = &e.payload[0]
	e.iov[1].SetLen(len(e.payload))
	return e, nil
}

func (e *entry) free() { unix.Munmap(e.mem) }

// submit queues a command for e, the entry at index i of its ring:
// REGISTER, or COMMIT_AND_FETCH carrying the reply now in e's buffers.
// iovecs is 2, or anything else to be refused.
func (e *entry) submit(r *iouring.Ring, i, fd int, cmd uint32, commitID uint64, iovecs uint32) error {
	s := r.Next()
	if s == nil {
		return errors.New("submission queue full")
	}
	iouring.SetCmd(s, fd, cmd, uintptr(unsafe.Pointer(&e.iov[0])), iovecs, uint64(i))
	*(*uint64)(unsafe.Pointer(&s[cmdReqCommitID])) = commitID
	*(*uint16)(unsafe.Pointer(&s[cmdReqQid])) = e.qid
	return nil
}

// setUp makes a thread's ring and its entries, one per queue it serves.
func (t *Transport) setUp(id int, queues []int) (*iouring.Ring, []*entry, error) {
	r, err := iouring.New(uint32(len(queues)))
	if err != nil {
		return nil, nil, err
	}
	if testSetupFails != nil {
		err = testSetupFails(id)
	}
	var entries []*entry
	for _, q := range queues {
		if err != nil {
			break
		}
		var e *entry
		if e, err = t.newEntry(q); err == nil {
			entries = append(entries, e)
		}
	}
	if err != nil {
		for _, e := range entries {
			e.free()
		}
		r.Close()
		return nil, nil, err
	}
	return r, entries, nil
}

// thread is one ring: it sets up, reports, and on orderServe registers its
// entries and serves requests until the connection ends or Stop.
func (t *Transport) thread(id int, p threadPlan, setups chan<- setup, orders <-chan order) {
	defer t.wg.Done()
	// The thread stays locked: it ends with the goroutine, and its CPU
	// affinity with it.
	runtime.LockOSThread()
	if len(p.cpus) > 0 {
		var cpus unix.CPUSet
		for _, c := range p.cpus {
			cpus.Set(c)
		}
		// A CPU gone offline since cannot be pinned to; then the
		// thread runs unpinned.
		_ = unix.SchedSetaffinity(0, &cpus)
	}

	r, entries, err := t.setUp(id, p.queues)
	setups <- setup{id, err}
	if err != nil {
		<-orders
		return
	}
	defer r.Close()
	defer func() {
		for _, e := range entries {
			e.free()
		}
	}()

	switch <-orders {
	case orderQuit:
		return
	case orderRefuse:
		if entries[0].submit(r, 0, t.cfg.FD, cmdRegister, 0, 1) == nil {
			r.Enter(true, waitSlice)
		}
		return
	}
	for i, e := range entries {
		if err := e.submit(r, i, t.cfg.FD, cmdRegister, 0, 2); err != nil {
			t.cfg.Logger.Error("FUSE over io_uring: registering a ring entry failed; its thread stops", "queue", e.qid, "err", err)
			return
		}
	}
	for !t.stop.Load() {
		if err := r.Enter(true, waitSlice); err != nil && err != iouring.ErrTimeout {
			t.cfg.Logger.Error("FUSE over io_uring: waiting on the ring failed; its thread stops", "thread", id, "err", err)
			return
		}
		ended := false
		r.Completions(func(i uint64, res int32) {
			if ended || i >= uint64(len(entries)) {
				return
			}
			e := entries[i]
			if res < 0 {
				// ENOTCONN: the connection is gone (unmounted);
				// anything else ends this thread with a reason.
				if errno := unix.Errno(-res); errno != unix.ENOTCONN && errno != unix.ECANCELED {
					t.cfg.Logger.Error("FUSE over io_uring: the kernel failed a ring entry; its thread stops", "queue", e.qid, "err", errno)
				}
				ended = true
				return
			}
			commit := t.serve(e)
			if err := e.submit(r, int(i), t.cfg.FD, cmdCommitAndFetch, commit, 2); err != nil {
				t.cfg.Logger.Error("FUSE over io_uring: committing a reply failed; its thread stops", "queue", e.qid, "err", err)
				ended = true
			}
		})
		if ended {
			return
		}
	}
}

// AbortConnection aborts the FUSE connection mounted at dir, through
// /sys/fs/fuse/connections (mounting fusectl there if it is not yet, which
// takes root): every request then fails with ENOTCONN and the server's
// reads end. For a connection that would otherwise hang.
func AbortConnection(dir string) error {
	// DONT_SYNC: the attributes the kernel has, without a request a hung
	// connection would hold like all the others.
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, dir, unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st); err != nil {
		return err
	}
	abort := fmt.Sprintf("/sys/fs/fuse/connections/%d/abort", st.Dev_minor)
	if _, err := os.Stat(abort); err != nil {
		unix.Mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, "")
	}
	return os.WriteFile(abort, []byte("1"), 0)
}
