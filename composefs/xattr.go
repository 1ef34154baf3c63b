package composefs

import (
	"strings"
	"syscall"

	"github.com/composefs/composefs-go/erofs"
)

// overlayfs reserves trusted.overlay.* for itself and hides it; composefs
// stores a file's own trusted.overlay.X as trusted.overlay.overlay.X, which
// overlayfs shows unescaped.

// XattrShownName is the name under which an xattr stored as stored shows
// on the mount; ok is false for overlayfs' private xattrs, never shown.
func XattrShownName(stored string) (shown string, ok bool) {
	if rest, found := strings.CutPrefix(stored, erofs.OverlayEscapedPrefix); found {
		return erofs.OverlayXattrPrefix + rest, true
	}
	if strings.HasPrefix(stored, erofs.OverlayXattrPrefix) {
		return "", false
	}
	return stored, true
}

// xattrStoredName is the name under which the xattr shown as name is
// stored.
func xattrStoredName(name string) string {
	if rest, found := strings.CutPrefix(name, erofs.OverlayXattrPrefix); found {
		return erofs.OverlayEscapedPrefix + rest
	}
	return name
}

// CheckXattrName answers, as the kernel does for EROFS under overlayfs, a
// name that cannot name an xattr: an empty name in a namespace is EINVAL, a
// namespace the kernel has no handler for is EOPNOTSUPP; 0 for a name it
// would look up.
func CheckXattrName(name string) syscall.Errno {
	switch name {
	case "user.", "trusted.", "security.", erofs.OverlayXattrPrefix:
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

// XattrNames lists in's xattrs as the kernel lists them to a caller who may
// see trusted.*: in EROFS' order (inline ones, then shared ones), only the
// names the kernel has a handler for, overlay names unescaped and
// overlayfs' private ones left out.
func (f *FS) XattrNames(in *erofs.Inode) ([]string, error) {
	if in.XattrCount == 0 {
		return nil, nil
	}
	xs, err := f.img.Xattrs(in)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, shared := range []bool{false, true} {
		for _, x := range xs {
			if x.Shared != shared || CheckXattrName(x.Name) != 0 {
				continue
			}
			if name, ok := XattrShownName(x.Name); ok {
				names = append(names, name)
			}
		}
	}
	return names, nil
}

// XattrValue is the value of the xattr the kernel shows as name on in.
// Errors are the kernel's: syscall.ENODATA when there is none (or, as the
// VFS has it, for user.* on what is neither a file nor a directory), EINVAL or
// EOPNOTSUPP for a name that cannot name one (CheckXattrName), or the
// image's damage. The value aliases the image.
func (f *FS) XattrValue(in *erofs.Inode, name string) ([]byte, error) {
	if errno := CheckXattrName(name); errno != 0 {
		return nil, errno
	}
	if strings.HasPrefix(name, "user.") && !in.IsRegular() && !in.IsDir() {
		// The VFS keeps user.* to regular files and directories: on
		// anything else a get finds nothing, though a listing shows it.
		return nil, syscall.ENODATA
	}
	v, found, err := f.img.GetXattr(in, xattrStoredName(name))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, syscall.ENODATA
	}
	return v, nil
}
