//go:build linux

// Package fuseconn serves one FUSE connection: it mounts (mount(2) as
// root, fusermount3 otherwise) so that it holds the connection's /dev/fuse
// descriptor by construction, answers INIT, then feeds every request to one
// go-fuse ProtocolServer, whichever way the request comes: read(2) from
// /dev/fuse (readers.go) or, where the kernel offers FUSE over io_uring,
// the rings of package fuseuring. One server for both matters: INTERRUPT
// and FORGET always come through /dev/fuse, and an INTERRUPT stops only a
// request that same server has in flight.
//
// It also gives the file system what it needs of the connection beyond
// replies: passthrough backing files and page-cache pushes (notify.go).
package fuseconn

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
)

// Options say how to mount and how to serve.
type Options struct {
	// Protocol is what the ProtocolServer negotiates at INIT and how it
	// answers (MaxWrite, capabilities, MaxStackDepth, Debug,
	// PanicHandler), and how the mount is made: FsName (the source),
	// Name (the subtype), AllowOther and Options (ro, nosuid,
	// default_permissions, ...). DirectMount and ExtraCapabilities'
	// CAP_OVER_IO_URING are decided here. Its Logger, go-fuse's, is best
	// left nil: the ProtocolServer's lines then go to Logger, its request
	// log (Debug) at debug level and its complaints about malformed
	// requests as warnings.
	Protocol fuse.MountOptions
	// Logger receives the connection's own failures and, with
	// Protocol.Debug, each passthrough backing file registered and
	// dropped, at debug level. Nil means slog.Default().
	Logger *slog.Logger
	// IOUring offers the kernel FUSE over io_uring where it allows it.
	IOUring bool
	// Init is called once INIT is answered, before any other request is
	// served, with the capabilities the kernel offered.
	Init func(c *Conn, offered uint64)
}

// Conn is one mounted connection being served.
type Conn struct {
	fd     int
	dir    string
	direct bool // mounted with mount(2), not fusermount3
	fs     fuse.RawFileSystem
	ps     *fuse.ProtocolServer
	opts   fuse.MountOptions // with the defaults filled in
	logger *slog.Logger
	bufLen int // a request or reply of max_write, and its headers

	readers readers
	ring    *fuseuring.Transport
	done    chan struct{}

	unmountMu sync.Mutex
}

// Mount mounts fs on dir, answers INIT and serves until the mount goes
// away; it returns once the mount is live.
func Mount(dir string, fs fuse.RawFileSystem, opts Options) (*Conn, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	po := opts.Protocol
	if po.Logger == nil {
		level := slog.LevelWarn
		if po.Debug {
			level = slog.LevelDebug
		}
		po.Logger = slog.NewLogLogger(logger.Handler(), level)
	}
	if po.Name == "" {
		po.Name = fs.String()
	}
	po.MaxWrite = clampMaxWrite(po.MaxWrite)
	po.ExtraCapabilities &^= fuse.CAP_OVER_IO_URING
	if opts.IOUring && offerRing(logger) {
		po.ExtraCapabilities |= fuse.CAP_OVER_IO_URING
	}
	c := &Conn{
		dir:    dir,
		fs:     fs,
		opts:   po,
		logger: logger,
		bufLen: po.MaxWrite + os.Getpagesize(),
		done:   make(chan struct{}),
	}
	c.readers.c = c
	spec := mountSpec{
		dir:        dir,
		source:     po.FsName,
		subtype:    po.Name,
		allowOther: po.AllowOther,
		maxRead:    po.MaxWrite,
		options:    po.Options,
	}
	var err error
	c.fd, err = -1, errNotRoot
	if os.Geteuid() == 0 {
		c.fd, err = mountDirect(spec)
		c.direct = err == nil
	}
	if c.fd < 0 {
		// Root may still lack CAP_SYS_ADMIN (a container); the
		// setuid helper may be allowed what we are not.
		var ferr error
		if c.fd, ferr = mountFusermount(spec); ferr != nil {
			return nil, fmt.Errorf("%w; %w", err, ferr)
		}
	}
	c.ps = fuse.NewProtocolServer(fs, &po)
	offered, negotiated, err := c.init()
	if err != nil {
		c.abandon()
		return nil, fmt.Errorf("INIT: %w", err)
	}
	if opts.Init != nil {
		opts.Init(c, offered)
	}
	if err := c.startRing(negotiated); err != nil {
		c.abandon()
		return nil, err
	}
	c.readers.start()
	go c.serve()
	if err := c.learnNoPoll(); err != nil {
		c.logger.Warn("could not have the kernel learn that the connection has no poll", "err", err)
	}
	return c, nil
}

// pollHackName is the file at the root that go-fuse's ProtocolServer
// answers for itself, never asking the file system: a regular file that
// opens and whose POLL answers ENOSYS.
const pollHackName = ".go-fuse-epoll-hack"

// learnNoPoll has the kernel ask POLL once, of that file, and learn from
// the ENOSYS that this connection has no poll. Why: Go's runtime registers
// every file it opens with epoll, and that epoll_ctl sends POLL to the
// server holding its thread's P (the runtime does not count it as a
// system call). Were the first POLL to come from this process's own
// goroutines (tests, or anything serving and reading the same mount),
// enough of them would take every P, and the ring threads that must answer
// could never run. Here the epoll_ctl is an ordinary system call.
func (c *Conn) learnNoPoll() error {
	fd, err := unix.Open(filepath.Join(c.dir, pollHackName), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	// EPERM is the answer once the kernel has learnt it: the file then
	// counts as one that cannot be polled.
	err = epollAdd(ep, fd, unix.EPOLLIN)
	if err != nil && err != unix.EPERM {
		return err
	}
	return nil
}

// epollAdd is epoll_ctl(EPOLL_CTL_ADD) as a system call the runtime knows
// may block: x/sys's EpollCtl is a raw one, which keeps this thread's P
// while the kernel waits for our own answer to POLL. Were a garbage
// collection to stop the world meanwhile, it would wait for that P, and
// the readers that must answer could not run: a deadlock, seen in
// TestRingMount under load.
func epollAdd(ep, fd int, events uint32) error {
	ev := unix.EpollEvent{Events: events, Fd: int32(fd)}
	_, _, errno := unix.Syscall6(unix.SYS_EPOLL_CTL, uintptr(ep), unix.EPOLL_CTL_ADD, uintptr(fd), uintptr(unsafe.Pointer(&ev)), 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

var errNotRoot = errors.New("mount(2) takes root")

// clampMaxWrite is max_write as the kernel takes it: at most
// fs.fuse.max_pages_limit pages (256 unless raised), 128 KiB unless said.
func clampMaxWrite(w int) int {
	if w <= 0 {
		w = 128 << 10
	}
	limit := 256
	if b, err := os.ReadFile("/proc/sys/fs/fuse/max_pages_limit"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n > 0 {
			limit = n
		}
	}
	return min(w, limit*os.Getpagesize())
}

// init reads the kernel's INIT from /dev/fuse and lets the ProtocolServer
// answer it: the capabilities both sides take are the ProtocolServer's
// choice (go-fuse's doInit), from the kernel's offer and our options.
func (c *Conn) init() (offered, negotiated uint64, err error) {
	in := make([]byte, c.bufLen)
	out := make([]byte, c.bufLen)
	var n int
	for {
		n, err = unix.Read(c.fd, in)
		if !retryRead(err) {
			break
		}
	}
	if err != nil {
		return 0, 0, fmt.Errorf("reading /dev/fuse: %w", err)
	}
	const opInit = 26
	if n < sizeOfInHeader || *(*uint32)(unsafe.Pointer(&in[4])) != opInit {
		return 0, 0, fmt.Errorf("first request of %d bytes is no INIT", n)
	}
	// go-fuse's InitIn starts with the in header.
	var kernel fuse.InitIn
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&kernel)), unsafe.Sizeof(kernel)), in[:n])
	m, st := c.ps.HandleRequest([][]byte{in[:n]}, [][]byte{out})
	if !st.Ok() || m < sizeOfOutHeader {
		return 0, 0, fmt.Errorf("no reply (%v)", st)
	}
	if errno := *(*int32)(unsafe.Pointer(&out[4])); errno != 0 {
		return 0, 0, fmt.Errorf("refused: %w", unix.Errno(-errno))
	}
	var reply fuse.InitOut
	copy(unsafe.Slice((*byte)(unsafe.Pointer(&reply)), unsafe.Sizeof(reply)), out[sizeOfOutHeader:m])
	if _, err := unix.Write(c.fd, out[:m]); err != nil {
		return 0, 0, fmt.Errorf("writing the reply: %w", err)
	}
	return kernel.Flags64(), reply.Flags64(), nil
}

// The FUSE header sizes, as the rings use them too.
const (
	sizeOfInHeader  = fuseuring.SizeOfInHeader
	sizeOfOutHeader = fuseuring.SizeOfOutHeader
)

// serve waits for the end of the connection (every reader has seen it),
// then stops the rings and lets go of the descriptor.
func (c *Conn) serve() {
	c.readers.wait()
	c.ring.Stop()
	c.fs.OnUnmount()
	unix.Close(c.fd)
	close(c.done)
}

// abandon undoes a mount that never got to serve.
func (c *Conn) abandon() {
	if err := unmount(c.dir, c.direct); err != nil {
		unix.Unmount(c.dir, unix.MNT_DETACH)
	}
	c.ring.Stop()
	unix.Close(c.fd)
}

// WillWait is for a request's handler about to wait for long (a large
// object's check, a remote fetch): it makes sure another reader takes the
// requests that come meanwhile, since the reader serving this one serves
// no other until it is done (readers.go). Requests served by the rings
// need none.
func (c *Conn) WillWait() {
	if c.ring == nil {
		c.readers.more()
	}
}

// Wait returns once the mount is gone and its requests are answered.
func (c *Conn) Wait() { <-c.done }

// Unmount unmounts and waits for serving to end. A mount in use fails
// with EBUSY and keeps being served.
func (c *Conn) Unmount() error {
	return c.whileServing(func() error {
		if err := unmount(c.dir, c.direct); err != nil {
			return err
		}
		c.Wait()
		return nil
	})
}

// Detach unmounts lazily: the mount leaves the tree at once and is served
// until its last user lets go, then Wait returns. For a mount that Unmount
// finds busy.
func (c *Conn) Detach() error {
	return c.whileServing(func() error { return detach(c.dir, c.direct) })
}

// whileServing runs an unmount, one at a time, unless serving has ended:
// the mountpoint may then hold another mount.
func (c *Conn) whileServing(f func() error) error {
	c.unmountMu.Lock()
	defer c.unmountMu.Unlock()
	select {
	case <-c.done:
		return nil
	default:
	}
	return f()
}

// Dir is where the connection is mounted.
func (c *Conn) Dir() string { return c.dir }

// RingRequests is how many requests came through io_uring rather than
// /dev/fuse: 0 when the connection does not use it.
func (c *Conn) RingRequests() uint64 { return c.ring.Served() }

func sleep(try int) { time.Sleep(time.Duration(10<<try) * time.Millisecond) }
