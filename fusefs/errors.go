package fusefs

import (
	"errors"
	"fmt"

	"github.com/composefs/composefs-go/erofs"
)

var errNid0 = fmt.Errorf("directory entry names nid 0, inside the image header: %w", erofs.ErrCorrupt)

// errNoRedirect is an external file (metacopy) whose object is not named.
var errNoRedirect = errors.New("metacopy without trusted.overlay.redirect: no object to read")

// errInvalidRedirect is a trusted.overlay.redirect overlayfs refuses to
// follow; the lookup fails with EINVAL, as overlayfs' does.
type errInvalidRedirect struct {
	nid      uint64
	redirect string
}

func (e errInvalidRedirect) Error() string {
	return fmt.Sprintf("inode %d: invalid redirect %q", e.nid, e.redirect)
}
