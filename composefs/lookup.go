package composefs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"

	"github.com/composefs/composefs-go/erofs"
)

// What overlayfs' lookup makes of the image's inodes, measured on the
// kernel (see tests/overlay_test.go): whiteouts cannot be looked up,
// malformed redirects are refused, and a metacopy file must name its data.

var (
	// ErrWhiteout wraps fs.ErrNotExist: the name is an overlay whiteout,
	// which a listing may show but a lookup does not find.
	ErrWhiteout = fmt.Errorf("whiteout: %w", fs.ErrNotExist)
	// ErrInvalidRedirect is wrapped when trusted.overlay.redirect is one
	// overlayfs refuses to follow; the kernel's lookup answers EINVAL.
	ErrInvalidRedirect = errors.New("invalid overlay redirect")
	// ErrNoData is wrapped when a file is marked as metacopy but does not
	// name its data with an absolute redirect; the kernel answers EIO.
	ErrNoData = errors.New("metacopy without an absolute redirect: no lower data")
)

var errNid0 = fmt.Errorf("directory entry names nid 0, inside the image header: %w", erofs.ErrCorrupt)

// Lookup finds name in directory dir as the kernel's lookup does: a
// missing name or a whiteout is an error wrapping fs.ErrNotExist, an entry
// overlayfs refuses (ErrInvalidRedirect, ErrNoData, damage) another error.
func (f *FS) Lookup(dir *erofs.Inode, name string) (erofs.Inode, error) {
	nid, _, err := f.img.Lookup(dir, name)
	if err != nil {
		return erofs.Inode{}, err
	}
	return f.Found(nid)
}

// Found decodes the inode a directory entry names at nid and applies the
// rules of Lookup to it: for a server that already has the entry.
func (f *FS) Found(nid uint64) (erofs.Inode, error) {
	if nid == 0 {
		return erofs.Inode{}, errNid0
	}
	in, err := f.img.Inode(nid)
	if err != nil {
		return erofs.Inode{}, err
	}
	if err := f.visible(&in); err != nil {
		return erofs.Inode{}, err
	}
	return in, nil
}

// visible returns nil for an inode overlayfs lets a lookup find, or why
// not.
func (f *FS) visible(in *erofs.Inode) error {
	switch in.Mode & erofs.ModeFmt {
	case erofs.ModeChr:
		if isWhiteout(in) {
			return ErrWhiteout
		}
	case erofs.ModeDir:
		return f.checkDirRedirect(in)
	case erofs.ModeReg:
		if err := f.checkMetacopy(in); err != nil {
			return err
		}
		if xw, err := f.isXattrWhiteout(in); err != nil || xw {
			if err == nil {
				err = ErrWhiteout
			}
			return err
		}
	}
	return nil
}

// isWhiteout tells whether the inode is an overlay whiteout: a character
// device 0/0.
func isWhiteout(in *erofs.Inode) bool {
	return in.Mode&erofs.ModeFmt == erofs.ModeChr && in.Rdev == 0
}

// isXattrWhiteout tells whether a regular file is overlayfs' other kind of
// whiteout: empty, with a (not escaped) trusted.overlay.whiteout xattr.
// Like a chardev 0/0, it cannot be looked up, though listings show it.
func (f *FS) isXattrWhiteout(in *erofs.Inode) (bool, error) {
	if in.Size != 0 || in.XattrCount == 0 {
		return false, nil
	}
	_, found, err := f.img.GetXattr(in, erofs.OverlayXattrPrefix+"whiteout")
	return found, err
}

// checkMetacopy refuses a regular file marked as metacopy whose data cannot
// be found: one whose metacopy xattr does not decode, whose redirect is
// malformed (ErrInvalidRedirect), or that has no absolute redirect to an
// object (ErrNoData).
func (f *FS) checkMetacopy(in *erofs.Inode) error {
	if in.XattrCount == 0 {
		return nil
	}
	_, _, present, err := f.img.Metacopy(in)
	if err != nil || !present {
		return err
	}
	v, found, err := f.img.GetXattr(in, erofs.OverlayRedirect)
	if err != nil {
		return err
	}
	if found && !validRedirect(v) {
		return fmt.Errorf("inode %d: redirect %q: %w", in.Nid, v, ErrInvalidRedirect)
	}
	if !found || v[0] != '/' {
		return fmt.Errorf("inode %d: %w", in.Nid, ErrNoData)
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
	v, found, err := f.img.GetXattr(in, erofs.OverlayRedirect)
	if err != nil || !found {
		return err
	}
	if !validRedirect(v) {
		return fmt.Errorf("inode %d: redirect %q: %w", in.Nid, v, ErrInvalidRedirect)
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
