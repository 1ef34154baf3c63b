//go:build linux

// Package iouring is the small part of io_uring the FUSE transport needs:
// one ring of 128-byte submission entries, owned by the one thread that made
// it, that submits IORING_OP_URING_CMD entries and waits for completions.
//
// The ring is set up SINGLE_ISSUER|DEFER_TASKRUN: the kernel runs the
// ring's deferred work (for FUSE: copying a request into our buffers) only
// when the owner waits in Enter, on the owner's thread. So the caller must
// lock its goroutine to its thread (runtime.LockOSThread) before New and
// use the ring from that goroutine only.
package iouring

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// From include/uapi/linux/io_uring.h.
const (
	setupSQE128       = 1 << 10
	setupSingleIssuer = 1 << 12
	setupDeferTaskrun = 1 << 13

	featSingleMmap = 1 << 0

	enterGetEvents = 1 << 0
	enterExtArg    = 1 << 3

	offSQRing = 0
	offSQEs   = 0x10000000

	// OpURingCmd passes a command to the file's own handler
	// (for /dev/fuse: FUSE over io_uring).
	OpURingCmd = 46

	// SQESize is the size of one submission entry (SQE128).
	SQESize = 128
	// CmdOffset is where a URING_CMD's command area starts in an entry;
	// it runs to the end of the 128 bytes.
	CmdOffset = 48
	cqeSize   = 16
)

type sqOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

type params struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFd uint32
	resv                                                                   [3]uint32
	sq                                                                     sqOffsets
	cq                                                                     cqOffsets
}

// getEventsArg is struct io_uring_getevents_arg: how Enter passes a timeout.
type getEventsArg struct {
	sigmask     uint64
	sigmaskSize uint32
	minWaitUsec uint32
	ts          uint64
}

// Ring is one io_uring instance.
type Ring struct {
	fd       int
	ringMem  []byte // the submission and completion rings, one mapping
	sqeMem   []byte
	sqHead   *uint32
	sqTail   *uint32
	sqMask   uint32
	sqCount  uint32
	sqLocal  uint32 // our tail: entries taken, not yet published
	cqHead   *uint32
	cqTail   *uint32
	cqMask   uint32
	cqes     unsafe.Pointer
	ts       unix.Timespec
	waitArgs getEventsArg
}

// New sets up a ring of (at least) entries submission entries.
func New(entries uint32) (*Ring, error) {
	var p params
	p.flags = setupSQE128 | setupSingleIssuer | setupDeferTaskrun
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r := &Ring{fd: int(fd)}
	if p.features&featSingleMmap == 0 {
		r.Close()
		return nil, errors.New("io_uring: kernel too old (no single mmap)")
	}
	size := max(p.sq.array+p.sqEntries*4, p.cq.cqes+p.cqEntries*cqeSize)
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mapping the rings: %w", err)
	}
	r.ringMem = mem
	sqes, err := unix.Mmap(r.fd, offSQEs, int(p.sqEntries*SQESize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("io_uring: mapping the entries: %w", err)
	}
	r.sqeMem = sqes
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead, r.sqTail = at(p.sq.head), at(p.sq.tail)
	r.sqMask, r.sqCount = *at(p.sq.ringMask), p.sqEntries
	r.sqLocal = atomic.LoadUint32(r.sqTail)
	// Slot i of the indirection array always names entry i.
	for i := range p.sqEntries {
		*at(p.sq.array + 4*i) = i
	}
	r.cqHead, r.cqTail = at(p.cq.head), at(p.cq.tail)
	r.cqMask = *at(p.cq.ringMask)
	r.cqes = unsafe.Pointer(&mem[p.cq.cqes])
	return r, nil
}

// Close releases the ring; commands still in flight are cancelled.
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
		r.ringMem = nil
	}
	if r.fd < 0 {
		return nil
	}
	err := unix.Close(r.fd)
	r.fd = -1
	return err
}

// Next returns the next free submission entry, zeroed, or nil when all are
// taken and not yet consumed by the kernel. It is sent by the next Enter.
func (r *Ring) Next() []byte {
	if r.sqLocal-atomic.LoadUint32(r.sqHead) >= r.sqCount {
		return nil
	}
	i := r.sqLocal & r.sqMask
	r.sqLocal++
	e := r.sqeMem[i*SQESize : (i+1)*SQESize]
	clear(e)
	return e
}

// ErrTimeout is Enter's answer when the wait ended with no completion.
var ErrTimeout = errors.New("io_uring: wait timed out")

// Enter submits the entries taken since the last call and, if wait, waits
// up to timeout for at least one completion. An interrupted wait returns
// nil: the caller looks at the completion queue either way.
func (r *Ring) Enter(wait bool, timeout time.Duration) error {
	atomic.StoreUint32(r.sqTail, r.sqLocal)
	toSubmit := r.sqLocal - atomic.LoadUint32(r.sqHead)
	var flags, minComplete uintptr
	var arg, argSize uintptr
	if wait {
		flags, minComplete = enterGetEvents, 1
		if timeout > 0 {
			r.ts = unix.NsecToTimespec(timeout.Nanoseconds())
			r.waitArgs = getEventsArg{ts: uint64(uintptr(unsafe.Pointer(&r.ts)))}
			flags |= enterExtArg
			arg, argSize = uintptr(unsafe.Pointer(&r.waitArgs)), unsafe.Sizeof(r.waitArgs)
		}
	}
	_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), minComplete, flags, arg, argSize)
	switch errno {
	case 0, unix.EINTR:
		return nil
	case unix.ETIME:
		return ErrTimeout
	}
	return fmt.Errorf("io_uring_enter: %w", errno)
}

// Completions calls f for each completion that arrived, in order, and
// frees their slots.
func (r *Ring) Completions(f func(userData uint64, res int32)) {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		c := unsafe.Add(r.cqes, uintptr(head&r.cqMask)*cqeSize)
		f(*(*uint64)(c), *(*int32)(unsafe.Add(c, 8)))
	}
	atomic.StoreUint32(r.cqHead, head)
}

// SetCmd fills e as an IORING_OP_URING_CMD on fd with command op; the
// caller writes the command itself into e[CmdOffset:].
func SetCmd(e []byte, fd int, op uint32, addr uintptr, length uint32, userData uint64) {
	e[0] = OpURingCmd
	*(*int32)(unsafe.Pointer(&e[4])) = int32(fd)
	*(*uint32)(unsafe.Pointer(&e[8])) = op
	*(*uint64)(unsafe.Pointer(&e[16])) = uint64(addr)
	*(*uint32)(unsafe.Pointer(&e[24])) = length
	*(*uint64)(unsafe.Pointer(&e[32])) = userData
}
