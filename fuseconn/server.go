//go:build linux

package fuseconn

import (
	"fmt"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// A connection that will never take requests through io_uring (not
// offered: the fuse module does not allow it, or the caller said no) is
// served by go-fuse's own Server, handed the descriptor as the "/dev/fd/N"
// mountpoint it accepts. Why not the ProtocolServer and our readers, as
// with rings: the Server recycles its request structures and read buffers
// where ProtocolServer.HandleRequest allocates ~2.5 KB per request, and
// replies to READ with splice. Measured on a cold `find -ls` of 20,000
// files, /dev/fuse alone: 339 ms through the Server, 358 ms through the
// ProtocolServer, with twice the futex calls (garbage collection and
// goroutine hand-offs).

// startServer answers INIT through a go-fuse Server and starts it serving.
func (c *Conn) startServer(init func(*Conn, uint64)) error {
	// The Server owns and closes its descriptor; ours stays open until
	// it has finished, for the backing-file ioctls and page-cache
	// pushes of notify.go, which may come late from background work.
	dup, err := unix.FcntlInt(uintptr(c.fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("duplicating the /dev/fuse descriptor: %w", err)
	}
	srv, err := fuse.NewServer(initByUs{c.fs}, fmt.Sprintf("/dev/fd/%d", dup), &c.opts)
	if err != nil {
		return fmt.Errorf("INIT: %w", err)
	}
	if init != nil {
		init(c, srv.KernelSettings().Flags64())
	}
	go func() {
		srv.Serve() // until the mount is gone; then fs.OnUnmount
		unix.Close(c.fd)
		close(c.done)
	}()
	return nil
}

// initByUs hides the file system's Init from go-fuse's Server, which
// calls it with itself once INIT is answered: Options.Init is called
// instead, with the Conn, as on the io_uring path.
type initByUs struct{ fuse.RawFileSystem }

func (initByUs) Init(*fuse.Server) {}
