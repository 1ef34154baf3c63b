package dirscan

import (
	"bytes"
	"errors"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
	"golang.org/x/sys/unix"
)

// readXattrs reads the xattrs of path itself (not a symlink's target),
// sorted by name, the order C's writer puts them in. userOnly keeps only
// user.* ones. A filesystem without xattrs gives none (C would fail).
func readXattrs(path string, userOnly bool) ([]dumpfile.Xattr, error) {
	list, err := getSized(func(buf []byte) (int, error) { return unix.Llistxattr(path, buf) })
	if errors.Is(err, unix.ENOTSUP) {
		return nil, nil
	}
	if err != nil {
		return nil, &xattrError{op: "llistxattr", err: err}
	}
	var xattrs []dumpfile.Xattr
	for _, name := range bytes.Split(list, []byte{0}) {
		if len(name) == 0 || (userOnly && !bytes.HasPrefix(name, []byte("user."))) {
			continue
		}
		n := string(name)
		value, err := getSized(func(buf []byte) (int, error) { return unix.Lgetxattr(path, n, buf) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since it was listed
		}
		if err != nil {
			return nil, &xattrError{op: "lgetxattr " + n, err: err}
		}
		xattrs = append(xattrs, dumpfile.Xattr{Name: n, Value: value})
	}
	slices.SortFunc(xattrs, func(a, b dumpfile.Xattr) int { return strings.Compare(a.Name, b.Name) })
	if err := dumpfile.CheckXattrs(xattrs); err != nil {
		return nil, err
	}
	return xattrs, nil
}

// getSized calls a list/get xattr function first for the size, then for
// the data, again if the data grew in between.
func getSized(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, n)
		if n == 0 {
			return buf, nil
		}
		n, err = call(buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}

type xattrError struct {
	op  string
	err error
}

func (e *xattrError) Error() string { return e.op + ": " + e.err.Error() }
func (e *xattrError) Unwrap() error { return e.err }
