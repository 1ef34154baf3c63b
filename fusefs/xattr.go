package fusefs

import (
	"context"
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
func privileged(ctx context.Context) bool {
	c, ok := fuse.FromContext(ctx)
	return !ok || c.Uid == 0
}

func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	if errno := checkXattrName(attr); errno != 0 {
		return 0, errno
	}
	if strings.HasPrefix(attr, trustedPrefix) && !privileged(ctx) {
		return 0, syscall.ENODATA
	}
	v, found, err := n.fsys.img.GetXattr(&n.ino, storedName(attr))
	if err != nil {
		return 0, n.fsys.errno(n, "getxattr "+attr, err)
	}
	if !found {
		return 0, syscall.ENODATA
	}
	if len(v) > len(dest) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

// Listxattr lists in the kernel's EROFS order: the inode's inline xattrs,
// then its shared ones.
func (n *node) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	xs, err := n.fsys.img.Xattrs(&n.ino)
	if err != nil {
		return 0, n.fsys.errno(n, "listxattr", err)
	}
	priv := privileged(ctx)
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
		return uint32(len(buf)), syscall.ERANGE
	}
	return uint32(copy(dest, buf)), 0
}
