package fusefs

import (
	"errors"
	"fmt"
	"sync"

	"github.com/composefs/composefs-go/fuseuring"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// ringState is what FS keeps of FUSE over io_uring (package fuseuring):
// whether the mount offered it, the /dev/fuse descriptors that existed
// before the mount (to find the connection's own), and the transport.
type ringState struct {
	offered   bool
	dir       string // the mount point
	before    map[int]bool
	transport *fuseuring.Transport
}

// ringTestLoseFD makes startRing miss the connection's descriptor, for the
// test of what happens then.
var ringTestLoseFD bool

// mountMu serializes mounts, so that the connection's descriptor is the
// only /dev/fuse descriptor a mount adds to the process.
var mountMu sync.Mutex

// maxWrite is the largest request the kernel may send us (the INIT reply's
// max_write): 1 MiB.
const maxWrite = 1 << 20

// offerRing decides, before mounting, whether to offer the kernel FUSE over
// io_uring: only if asked, without --debug (go-fuse logs only what comes
// through /dev/fuse), when the fuse module allows it, and when this process
// can set up a ring (the kernel holds every request until the rings are
// registered, so an offer must not be made that cannot be kept).
func (f *FS) offerRing(mo MountOptions) uint64 {
	if mo.NoIOUring || mo.Debug || !fuseuring.KernelEnabled() {
		return 0
	}
	if err := fuseuring.Probe(); err != nil {
		f.cfg.Logger.Printf("FUSE over io_uring not used: %v", err)
		return 0
	}
	f.ring.offered = true
	f.ring.before = fuseuring.DeviceFDs()
	return fuse.CAP_OVER_IO_URING
}

// startRing runs from Init, the INIT reply written: if the kernel took the
// offer, the rings are registered and serve from then on. Any failure is
// logged and leaves the connection on /dev/fuse.
func (f *FS) startRing(negotiated uint64) {
	if !f.ring.offered || negotiated&fuse.CAP_OVER_IO_URING == 0 {
		return
	}
	var fresh []int
	for d := range fuseuring.DeviceFDs() {
		if !f.ring.before[d] && !ringTestLoseFD {
			fresh = append(fresh, d)
		}
	}
	if len(fresh) != 1 {
		f.abortStuck(fmt.Errorf("%d new /dev/fuse descriptors, where the connection's should be the one", len(fresh)))
		return
	}
	fd := fresh[0]
	t, err := fuseuring.Start(f, fuseuring.Config{
		FD:           fd,
		MaxWrite:     maxWrite,
		Logger:       f.cfg.Logger,
		PanicHandler: panicHandler(f.cfg.Logger),
	})
	if errors.Is(err, fuseuring.ErrStuck) {
		f.abortStuck(err)
		return
	}
	if err != nil {
		f.cfg.Logger.Printf("%v; serving through /dev/fuse", err)
		return
	}
	f.ring.transport = t
}

// RingRequests is how many requests came through io_uring rather than
// /dev/fuse: 0 when the mount does not use it.
func (f *FS) RingRequests() uint64 { return f.ring.transport.Served() }

// abortStuck ends a connection the kernel would otherwise hold forever: it
// took the offer of io_uring and waits for rings that will not come. The
// mount then fails every request with ENOTCONN and the server stops, which
// is a clear failure where the alternative is a hang.
func (f *FS) abortStuck(why error) {
	f.cfg.Logger.Printf("FUSE over io_uring offered but not possible (%v): aborting the connection", why)
	err := fuseuring.AbortConnection(f.ring.dir)
	if err != nil {
		f.cfg.Logger.Printf("aborting the connection of %s: %v; unmount it with umount -f", f.ring.dir, err)
	}
}
