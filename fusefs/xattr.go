package fusefs

import (
	"errors"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/composefs"
)

// Xattrs are shown as the view names them (composefs.XattrNames); what is
// FUSE's alone is who asks and how big the answer may be.

const trustedPrefix = "trusted."

// privileged tells whether the caller may see trusted.* xattrs. The kernel
// asks for CAP_SYS_ADMIN; FUSE tells us only the caller's ids, so root
// stands for it. (The kernel itself refuses unprivileged getxattr of
// trusted.* before asking us; listing is ours to filter.)
func privileged(h *fuse.InHeader) bool {
	return h.Uid == 0
}

func (f *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	debug.SetPanicOnFault(true)
	if errno := composefs.CheckXattrName(attr); errno != 0 {
		return 0, fuse.Status(errno)
	}
	if strings.HasPrefix(attr, trustedPrefix) && !privileged(h) {
		return 0, fuse.ENODATA
	}
	in, st := f.inode(h.NodeId)
	if !st.Ok() {
		return 0, st
	}
	v, err := f.view.XattrValue(&in, attr)
	if errors.Is(err, syscall.ENODATA) {
		return 0, fuse.ENODATA
	}
	if err != nil {
		return 0, f.fail(in.Nid, "getxattr", err, "xattr", attr)
	}
	if len(v) > len(dest) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

// ListXAttr lists in the kernel's EROFS order: the inode's inline xattrs,
// then its shared ones.
func (f *FS) ListXAttr(cancel <-chan struct{}, h *fuse.InHeader, dest []byte) (uint32, fuse.Status) {
	debug.SetPanicOnFault(true)
	in, st := f.inode(h.NodeId)
	if !st.Ok() {
		return 0, st
	}
	names, err := f.view.XattrNames(&in)
	if err != nil {
		return 0, f.fail(in.Nid, "listxattr", err)
	}
	priv := privileged(h)
	var buf []byte
	for _, name := range names {
		if !priv && strings.HasPrefix(name, trustedPrefix) {
			continue
		}
		buf = append(buf, name...)
		buf = append(buf, 0)
	}
	if len(buf) > len(dest) {
		return uint32(len(buf)), fuse.ERANGE
	}
	return uint32(copy(dest, buf)), fuse.OK
}
