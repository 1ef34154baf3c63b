package erofs

import (
	"fmt"

	"github.com/composefs/composefs-go/verity"
)

// What composefs stores in EROFS beyond plain files: external files carry
// trusted.overlay.redirect (the object path) and trusted.overlay.metacopy
// (its fs-verity digest); the user's own trusted.overlay.X xattrs are
// escaped as trusted.overlay.overlay.X; V0/V1 roots hold 256 whiteout stubs
// "00".."ff" (chardev 0/0) so that overlayfs treats the image as opaque.

// Redirect returns the trusted.overlay.redirect payload without its leading
// "/" ("ab/cdef..."); ok is false when the inode has none.
func (im *Image) Redirect(in *Inode) (payload string, ok bool, err error) {
	v, found, err := im.GetXattr(in, OverlayRedirect)
	if err != nil || !found {
		return "", false, err
	}
	return redirectPayload(v), true, nil
}

// redirectPayload strips the leading "/" that makes a redirect absolute;
// a lone "/" is kept, as C keeps it.
func redirectPayload(v []byte) string {
	if len(v) > 1 && v[0] == '/' {
		v = v[1:]
	}
	return string(v)
}

// Metacopy decodes trusted.overlay.metacopy. present is false when the
// inode has none; present with a nil digest means "metacopy without digest".
func (im *Image) Metacopy(in *Inode) (alg verity.Algorithm, digest []byte, present bool, err error) {
	v, found, err := im.GetXattr(in, overlayMetacopy)
	if err != nil || !found {
		return 0, nil, false, err
	}
	alg, digest, err = verity.DecodeMetacopy(v)
	if err != nil {
		return 0, nil, true, fmt.Errorf("inode %d: %w: %w", in.Nid, ErrCorrupt, err)
	}
	return alg, digest, true, nil
}

// IsWhiteoutStub tells whether a directory entry is one of the whiteout
// stubs of a V0/V1 root: named by two lowercase hex digits, a character
// device 0/0. The caller checks that the parent is the root of an image with
// composefs_version < 2.
func IsWhiteoutStub(name string, in *Inode) bool {
	return len(name) == 2 && isLowerHex(name[0]) && isLowerHex(name[1]) && isWhiteout(in)
}

// isWhiteout: overlayfs' whiteout, a character device 0/0.
func isWhiteout(in *Inode) bool {
	return in.Mode&ModeFmt == ModeChr && in.Rdev == 0
}

func isLowerHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

// hasStubs tells whether the image's root holds whiteout stubs.
func (im *Image) hasStubs() bool { return im.hdr.ComposefsVersion < ComposefsVersion2 }
