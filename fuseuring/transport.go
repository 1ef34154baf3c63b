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
// go-fuse still mounts, answers INIT and reads /dev/fuse: once every queue
// has a ring entry registered, the kernel sends all requests through the
// rings except FORGET and INTERRUPT, which keep coming to /dev/fuse. The
// requests are handed to the same fuse.RawFileSystem (dispatch.go).
package fuseuring

import (
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/composefs/composefs-go/internal/iouring"
	"github.com/hanwen/go-fuse/v2/fuse"
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

// threadsPerQueue is how many requests one CPU's queue can have in service
// at once. The kernel hands a new request to the entry that became free
// last, so normally one thread per CPU does the work; the others take over
// while it is held up (an OPEN that has a large object to verify). With 3,
// a stat made while five large cold files were being opened from the same
// CPU waited ~250 ms for one of them to finish; with 8 it did not wait
// for them (23-180 ms, the CPUs being busy hashing; 88-120 over
// /dev/fuse). Idle threads cost a blocked thread and untouched buffer
// pages each, and about 2 ms at mount for all of them.
const threadsPerQueue = 8

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
	// Logger receives the transport's own failures. Nil: log.Default().
	Logger *log.Logger
	// PanicHandler turns a request that panicked into its answer, as
	// go-fuse's option of that name does. Nil: EIO.
	PanicHandler func(any) fuse.Status
}

// Transport is the set of ring threads serving one connection.
type Transport struct {
	fs      fuse.RawFileSystem
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

// threadQueues is the queue of each thread to start: threadsPerQueue for
// each online CPU, one for each CPU only possible. The kernel has one queue
// per possible CPU (num_possible_cpus()), and uses none until every one
// has an entry registered.
func threadQueues() ([]int, error) {
	possible, err := cpuList("/sys/devices/system/cpu/possible")
	if err != nil {
		return nil, err
	}
	online, err := cpuList("/sys/devices/system/cpu/online")
	if err != nil {
		online = possible
	}
	isOnline := map[int]bool{}
	for _, c := range online {
		isOnline[c] = true
	}
	var qids []int
	for q := range possible {
		k := 1
		if isOnline[possible[q]] {
			k = threadsPerQueue
		}
		for range k {
			qids = append(qids, q)
		}
	}
	return qids, nil
}

func cpuList(path string) ([]int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseCPUs(strings.TrimSpace(string(b)))
}

// parseCPUs lists the CPUs of a kernel CPU list such as "0-3,8".
func parseCPUs(list string) ([]int, error) {
	var cpus []int
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("cpu list %q: bad number %q", list, lo)
		}
		z := a
		if isRange {
			if z, err = strconv.Atoi(hi); err != nil || z < a {
				return nil, fmt.Errorf("cpu list %q: bad range %q", list, part)
			}
		}
		if len(cpus)+z-a+1 > 1<<16 {
			return nil, fmt.Errorf("cpu list %q: too many cpus", list)
		}
		for c := a; c <= z; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
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

// Start sets up the rings, one set of threads per CPU, and registers them.
// Call it once the INIT reply that offered FUSE_OVER_IO_URING is written.
// On an error the kernel has been told to fall back to /dev/fuse, unless
// the error is ErrStuck.
func Start(fs fuse.RawFileSystem, cfg Config) (*Transport, error) {
	if cfg.Logger == nil {
		cfg.Logger = log.Default()
	}
	t := &Transport{fs: fs, cfg: cfg}
	pg := os.Getpagesize()
	t.payload = (max(cfg.MaxWrite, minReadBuffer) + pg - 1) / pg * pg

	// One thread per queue of a CPU that is offline: it gets a request
	// only if the CPU comes online, but the kernel waits for every queue.
	qids, err := threadQueues()
	if err != nil {
		// Without the queue count no registration can complete; one
		// thread still tells the kernel to fall back.
		qids = []int{0}
	}
	n := len(qids)
	setups := make(chan setup, n)
	orders := make([]chan order, n)
	for i, qid := range qids {
		orders[i] = make(chan order, 1)
		t.wg.Add(1)
		go t.thread(i, qid, setups, orders[i])
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
	// in is the request as go-fuse's types lay it out: the in header
	// followed by the opcode's own header. First, so that it is 8-byte
	// aligned like the structs it is read as.
	in      [40 + opInSize]byte
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

// submit queues a command for e: REGISTER, or COMMIT_AND_FETCH carrying the
// reply now in e's buffers. iovecs is 2, or anything else to be refused.
func (e *entry) submit(r *iouring.Ring, fd int, cmd uint32, commitID uint64, iovecs uint32) error {
	s := r.Next()
	if s == nil {
		return errors.New("submission queue full")
	}
	iouring.SetCmd(s, fd, cmd, uintptr(unsafe.Pointer(&e.iov[0])), iovecs, 0)
	*(*uint64)(unsafe.Pointer(&s[cmdReqCommitID])) = commitID
	*(*uint16)(unsafe.Pointer(&s[cmdReqQid])) = e.qid
	return nil
}

// setUp makes a thread's ring and its entry.
func (t *Transport) setUp(id, qid int) (*iouring.Ring, *entry, error) {
	r, err := iouring.New(2)
	if err != nil {
		return nil, nil, err
	}
	if testSetupFails != nil {
		err = testSetupFails(id)
	}
	var e *entry
	if err == nil {
		e, err = t.newEntry(qid)
	}
	if err != nil {
		r.Close()
		return nil, nil, err
	}
	return r, e, nil
}

// thread is one ring: it sets up, reports, and on orderServe registers its
// entry and serves requests until the connection ends or Stop.
func (t *Transport) thread(id, qid int, setups chan<- setup, orders <-chan order) {
	defer t.wg.Done()
	// The thread stays locked: it ends with the goroutine, and its CPU
	// affinity with it.
	runtime.LockOSThread()
	var cpus unix.CPUSet
	cpus.Set(qid)
	// An offline CPU cannot be pinned to; its queue is served unpinned.
	_ = unix.SchedSetaffinity(0, &cpus)

	r, e, err := t.setUp(id, qid)
	setups <- setup{id, err}
	if err != nil {
		<-orders
		return
	}
	defer r.Close()
	defer e.free()

	switch <-orders {
	case orderQuit:
		return
	case orderRefuse:
		if e.submit(r, t.cfg.FD, cmdRegister, 0, 1) == nil {
			r.Enter(true, waitSlice)
		}
		return
	}
	if err := e.submit(r, t.cfg.FD, cmdRegister, 0, 2); err != nil {
		t.cfg.Logger.Printf("FUSE over io_uring: queue %d: %v", qid, err)
		return
	}
	for !t.stop.Load() {
		if err := r.Enter(true, waitSlice); err != nil && err != iouring.ErrTimeout {
			t.cfg.Logger.Printf("FUSE over io_uring: queue %d: %v", qid, err)
			return
		}
		ended := false
		r.Completions(func(_ uint64, res int32) {
			if ended {
				return
			}
			if res < 0 {
				// ENOTCONN: the connection is gone (unmounted);
				// anything else ends this thread with a reason.
				if errno := unix.Errno(-res); errno != unix.ENOTCONN && errno != unix.ECANCELED {
					t.cfg.Logger.Printf("FUSE over io_uring: queue %d: %v", qid, errno)
				}
				ended = true
				return
			}
			commit := t.serve(e)
			if err := e.submit(r, t.cfg.FD, cmdCommitAndFetch, commit, 2); err != nil {
				t.cfg.Logger.Printf("FUSE over io_uring: queue %d: %v", qid, err)
				ended = true
			}
		})
		if ended {
			return
		}
	}
}

// DeviceFDs is the set of this process's descriptors open on /dev/fuse.
// go-fuse keeps the descriptor of its connection to itself; a mount made
// while no other is being made (fusefs serializes them) is the one new
// descriptor between a call before it and one after.
func DeviceFDs() map[int]bool {
	fds := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && target == "/dev/fuse" {
			fds[fd] = true
		}
	}
	return fds
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
