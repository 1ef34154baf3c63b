package composefs

import (
	"errors"
	"io/fs"
	"syscall"

	"github.com/composefs/composefs-go/objects"
)

// Errno is the error number the kernel's mount answers where the view
// gives err: ENOENT for a missing name or object (a whiteout included),
// EINVAL for a redirect overlayfs refuses, the errno itself where err
// carries one (an xattr name's), and EIO for the rest: damage, a digest
// mismatch, a refused object. 0 for nil.
func Errno(err error) syscall.Errno {
	var errno syscall.Errno
	switch {
	case err == nil:
		return 0
	case errors.Is(err, fs.ErrNotExist):
		return syscall.ENOENT
	case errors.Is(err, ErrInvalidRedirect):
		return syscall.EINVAL
	case errors.Is(err, objects.ErrFetch):
		// A server that is down, slow or lying: the file cannot be
		// read, whatever the network said (ECONNREFUSED, ...).
		return syscall.EIO
	case errors.As(err, &errno):
		return errno
	}
	return syscall.EIO
}
