package fusefs

import (
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// overlayfs reserves trusted.overlay.* for itself and hides it; composefs
// stores a file's own trusted.overlay.X as trusted.overlay.overlay.X, which
// overlayfs shows unescaped. The kernel view is reproduced here.
const (
	overlayPrefix = "trusted.overlay."
	escapedPrefix = "trusted.overlay.overlay."
	trustedPrefix = "trusted."
)

// shownName is the name a stored xattr is listed under; ok is false for
// overlayfs' private xattrs, which are never shown.
func shownName(stored string) (name string, ok bool) {
	if strings.HasPrefix(stored, escapedPrefix) {
		return overlayPrefix + stored[len(escapedPrefix):], true
	}
	if strings.HasPrefix(stored, overlayPrefix) {
		return "", false
	}
	return stored, true
}

// storedName is the name under which the xattr a caller asks for is stored.
func storedName(name string) string {
	if strings.HasPrefix(name, overlayPrefix) {
		return escapedPrefix + name[len(overlayPrefix):]
	}
	return name
}

// checkXattrName answers, as the kernel does for EROFS under overlayfs, a
// name that cannot name an xattr: an empty name in a namespace is EINVAL, a
// namespace the kernel has no handler for is EOPNOTSUPP. (For FUSE, the
// kernel leaves both to the server.)
func checkXattrName(name string) syscall.Errno {
	switch name {
	case "user.", "trusted.", "security.", overlayPrefix:
		return syscall.EINVAL
	case "system.posix_acl_access", "system.posix_acl_default":
		return 0
	}
	for _, p := range []string{"user.", "trusted.", "security."} {
		if strings.HasPrefix(name, p) {
			return 0
		}
	}
	return syscall.EOPNOTSUPP
}

// privileged tells whether the caller may see trusted.* xattrs. The kernel
// asks for CAP_SYS_ADMIN; FUSE tells us only the caller's ids, so root
// stands for it. (The kernel itself refuses unprivileged getxattr of
// trusted.* before asking us; listing is ours to filter.)
func privileged(h *fuse.InHeader) bool {
	return h.Uid == 0
}

func (f *FS) GetXAttr(cancel <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	debug.SetPanicOnFault(true)
	if errno := checkXattrName(attr); errno != 0 {
		return 0, fuse.Status(errno)
	}
	if strings.HasPrefix(attr, trustedPrefix) && !privileged(h) {
		return 0, fuse.ENODATA
	}
	in, st := f.inode(h.NodeId)
	if !st.Ok() {
		return 0, st
	}
	v, found, err := f.img.GetXattr(&in, storedName(attr))
	if err != nil {
		return 0, f.fail(in.Nid, "getxattr "+attr, err)
	}
	if !found {
		return 0, fuse.ENODATA
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
	xs, err := f.img.Xattrs(&in)
	if err != nil {
		return 0, f.fail(in.Nid, "listxattr", err)
	}
	priv := privileged(h)
	var buf []byte
	for _, shared := range []bool{false, true} {
		for _, x := range xs {
			if x.Shared != shared {
				continue
			}
			// The kernel's EROFS lists only names it has a handler for.
			if checkXattrName(x.Name) != 0 {
				continue
			}
			name, ok := shownName(x.Name)
			if !ok || (!priv && strings.HasPrefix(name, trustedPrefix)) {
				continue
			}
			buf = append(buf, name...)
			buf = append(buf, 0)
		}
	}
	if len(buf) > len(dest) {
		return uint32(len(buf)), fuse.ERANGE
	}
	return uint32(copy(dest, buf)), fuse.OK
}
