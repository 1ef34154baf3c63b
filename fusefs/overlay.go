package fusefs

import (
	"bytes"
	"fmt"
	"io/fs"
	"syscall"

	"github.com/composefs/composefs-go/erofs"
)

// What overlayfs' lookup makes of the image's inodes, measured on the
// kernel (see tests/overlay_test.go): whiteouts cannot be looked up,
// malformed redirects are refused, and a metacopy file must name its data.

// errWhiteout: a whiteout, which a lookup does not find (ENOENT, no log).
var errWhiteout = fmt.Errorf("whiteout: %w", fs.ErrNotExist)

// overlayLookup returns nil for an inode overlayfs lets a lookup find, or
// why not: errWhiteout, errInvalidRedirect (EINVAL), or another error
// (EIO).
func (f *FS) overlayLookup(in *erofs.Inode) error {
	switch in.Mode & syscall.S_IFMT {
	case syscall.S_IFCHR:
		if isWhiteout(in) {
			return errWhiteout
		}
	case syscall.S_IFDIR:
		return f.checkDirRedirect(in)
	case syscall.S_IFREG:
		if err := f.checkMetacopy(in); err != nil {
			return err
		}
		if xw, err := f.isXattrWhiteout(in); err != nil || xw {
			if err == nil {
				err = errWhiteout
			}
			return err
		}
	}
	return nil
}

// isWhiteout tells whether the inode is an overlay whiteout: a character
// device 0/0.
func isWhiteout(in *erofs.Inode) bool {
	return in.Mode&syscall.S_IFMT == syscall.S_IFCHR && in.Rdev == 0
}

// isXattrWhiteout tells whether a regular file is overlayfs' other kind of
// whiteout: empty, with a (not escaped) trusted.overlay.whiteout xattr.
// Like a chardev 0/0, it cannot be looked up, though listings show it.
func (f *FS) isXattrWhiteout(in *erofs.Inode) (bool, error) {
	if in.Size != 0 || in.XattrCount == 0 {
		return false, nil
	}
	_, found, err := f.img.GetXattr(in, "trusted.overlay.whiteout")
	return found, err
}

// checkMetacopy refuses a regular file marked as metacopy whose data cannot
// be found: one whose metacopy xattr does not decode (EIO), whose redirect
// is malformed (EINVAL), or that has no absolute redirect to an object
// (EIO).
func (f *FS) checkMetacopy(in *erofs.Inode) error {
	_, _, present, err := f.img.Metacopy(in)
	if err != nil || !present {
		return err
	}
	v, found, err := f.img.GetXattr(in, "trusted.overlay.redirect")
	if err != nil {
		return err
	}
	if found && !validRedirect(v) {
		return errInvalidRedirect{nid: in.Nid, redirect: string(v)}
	}
	if !found || v[0] != '/' {
		return fmt.Errorf("inode %d: metacopy without an absolute redirect: no lower data", in.Nid)
	}
	return nil
}

// checkDirRedirect refuses a directory whose redirect is malformed.
// (overlayfs follows valid ones into the lower layers below, and composefs
// has none below the image.)
func (f *FS) checkDirRedirect(in *erofs.Inode) error {
	if in.XattrCount == 0 {
		return nil
	}
	v, found, err := f.img.GetXattr(in, "trusted.overlay.redirect")
	if err != nil || !found {
		return err
	}
	if !validRedirect(v) {
		return errInvalidRedirect{nid: in.Nid, redirect: string(v)}
	}
	return nil
}

// validRedirect is overlayfs' rule: an absolute redirect has no empty
// component ("/", "//a", "/a/" are invalid); a relative one is a single
// name. (Checked on every lookup of an external file: no allocation.)
func validRedirect(v []byte) bool {
	if len(v) == 0 {
		return false
	}
	if v[0] != '/' {
		return bytes.IndexByte(v, '/') < 0
	}
	// Every "/" must be followed by a non-empty component.
	for i, c := range v {
		if c == '/' && (i+1 == len(v) || v[i+1] == '/') {
			return false
		}
	}
	return true
}
