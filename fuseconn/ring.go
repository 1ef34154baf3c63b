//go:build linux

package fuseconn

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/fuseuring"
)

// offerRing decides, before mounting, whether to offer the kernel FUSE
// over io_uring: when the fuse module allows it and this process can set
// up a ring. The kernel holds every request until the rings are
// registered, so an offer must not be made that cannot be kept.
func offerRing(logger *slog.Logger) bool {
	if !fuseuring.KernelEnabled() {
		return false
	}
	if err := fuseuring.Probe(); err != nil {
		logger.Warn("FUSE over io_uring not offered: this process cannot set up a ring", "err", err)
		return false
	}
	return true
}

// testRingFails, when set, replaces the start of the rings: for the tests
// of what a failed start does.
var testRingFails func() error

// startRing runs once INIT is answered: if the kernel took the offer, the
// rings are registered and serve from then on, through the same
// ProtocolServer as /dev/fuse. A failure the kernel can fall back from is
// logged and leaves the connection on /dev/fuse; one it cannot (it waits
// for rings that will not come) aborts the connection, which is a clear
// failure where the alternative is a hang.
func (c *Conn) startRing(negotiated uint64) error {
	if negotiated&fuse.CAP_OVER_IO_URING == 0 {
		return nil
	}
	var t *fuseuring.Transport
	var err error
	if testRingFails != nil {
		err = fmt.Errorf("%w: %w", fuseuring.ErrStuck, testRingFails())
	} else {
		t, err = fuseuring.Start(c.ps, fuseuring.Config{FD: c.fd, MaxWrite: c.opts.MaxWrite, Logger: c.logger})
	}
	if errors.Is(err, fuseuring.ErrStuck) {
		c.logger.Error("FUSE over io_uring offered but not possible: aborting the connection", "err", err)
		if aerr := fuseuring.AbortConnection(c.dir); aerr != nil {
			c.logger.Error("aborting the connection failed; unmount it with umount -f", "mountpoint", c.dir, "err", aerr)
		}
		return err
	}
	if err != nil {
		c.logger.Warn("serving through /dev/fuse", "err", err)
		return nil
	}
	c.ring = t
	return nil
}
