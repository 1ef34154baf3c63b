//go:build linux

package fuseconn

import (
	"math"
	"syscall"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// The connection's own operations, on its /dev/fuse descriptor: they work
// the same whichever way requests come, since the kernel takes them only
// there.

// From include/uapi/linux/fuse.h: _IOW(229, 1, struct fuse_backing_map)
// and _IOW(229, 2, uint32_t).
const (
	iocBackingOpen  = 0x4010e501
	iocBackingClose = 0x4004e502

	// notifyStore is FUSE_NOTIFY_STORE, sent in the error field of an
	// out header whose unique is 0.
	notifyStore = 4
)

// RegisterBackingFd makes m's file a passthrough backing file of the
// connection (FUSE_DEV_IOC_BACKING_OPEN, which takes CAP_SYS_ADMIN) and
// returns its id for an OPEN reply.
func (c *Conn) RegisterBackingFd(m *fuse.BackingMap) (int32, syscall.Errno) {
	id, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), iocBackingOpen, uintptr(unsafe.Pointer(m)))
	if c.opts.Debug {
		if errno != 0 {
			c.logger.Debug("passthrough backing file refused", "fd", m.Fd, "err", errno)
		} else {
			c.logger.Debug("passthrough backing file registered", "fd", m.Fd, "id", id)
		}
	}
	return int32(id), errno
}

// UnregisterBackingFd drops a backing file id (FUSE_DEV_IOC_BACKING_CLOSE).
func (c *Conn) UnregisterBackingFd(id int32) syscall.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), iocBackingClose, uintptr(unsafe.Pointer(&id)))
	if c.opts.Debug {
		if errno != 0 {
			c.logger.Debug("passthrough backing file not dropped", "id", id, "err", errno)
		} else {
			c.logger.Debug("passthrough backing file dropped", "id", id)
		}
	}
	return errno
}

// InodeNotifyStoreCache puts data into the page cache of inode node at
// offset, as FUSE_NOTIFY_STORE: one write of the out header, struct
// fuse_notify_store_out and the data.
func (c *Conn) InodeNotifyStoreCache(node uint64, offset int64, data []byte) fuse.Status {
	if len(data) > math.MaxInt32 {
		// The size field has 32 bits; nobody pushes that much at once.
		return fuse.ERANGE
	}
	var msg [sizeOfOutHeader + unsafe.Sizeof(fuse.NotifyStoreOut{})]byte
	*(*uint32)(unsafe.Pointer(&msg[0])) = uint32(len(msg) + len(data))
	*(*int32)(unsafe.Pointer(&msg[4])) = notifyStore
	store := (*fuse.NotifyStoreOut)(unsafe.Pointer(&msg[sizeOfOutHeader]))
	store.Nodeid, store.Offset, store.Size = node, uint64(offset), uint32(len(data))
	_, err := unix.Writev(c.fd, [][]byte{msg[:], data})
	if err != nil {
		return fuse.ToStatus(err)
	}
	return fuse.OK
}
