package oci

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
)

// Transform selects what is done to the merged tree before it becomes an
// image.
type Transform int

const (
	// TransformDefault is composefs-rs' transform_for_oci with its default
	// xattr filtering (allowlist-only):
	//   - the root directory takes /usr's mode, owner, mtime and xattrs
	//     (layers rarely say what "/" is, and runtimes ignore it);
	//   - /run, if present, is emptied and takes /usr's mtime;
	//   - every inode keeps only the xattrs in the allowlist,
	//     security.capability.
	// A tree without a /usr directory, or whose /run is not a directory,
	// is an error (ErrTransform), as in composefs-rs.
	TransformDefault Transform = iota
	// TransformKeepUserXattrs is TransformDefault in composefs-rs'
	// keep-user-xattrs mode: user.* xattrs are kept as well.
	TransformKeepUserXattrs
	// TransformNone leaves the tree as the layers give it, as umoci
	// unpack does: every xattr kept, the root's metadata from the layers'
	// entry for "/" (0755, owner 0, mtime 0 when there is none).
	TransformNone
)

// String gives the mode's name, as ParseTransform reads it.
func (t Transform) String() string {
	switch t {
	case TransformDefault:
		return "allowlist-only"
	case TransformKeepUserXattrs:
		return "keep-user-xattrs"
	case TransformNone:
		return "none"
	}
	return fmt.Sprintf("Transform(%d)", int(t))
}

// ParseTransform reads "allowlist-only" (also "default" or ""),
// "keep-user-xattrs" (composefs-rs' names) and "none".
func ParseTransform(s string) (Transform, error) {
	switch s {
	case "", "default", "allowlist-only":
		return TransformDefault, nil
	case "keep-user-xattrs":
		return TransformKeepUserXattrs, nil
	case "none":
		return TransformNone, nil
	}
	return 0, fmt.Errorf("unknown transform %q (allowlist-only, keep-user-xattrs, none)", s)
}

// ErrTransform is wrapped when composefs-rs' OCI transform cannot be
// applied to a tree.
var ErrTransform = errors.New("cannot apply the OCI transform")

// containerXattrAllowlist is composefs-rs' CONTAINER_XATTR_ALLOWLIST.
var containerXattrAllowlist = []string{"security.capability"}

// keepXattr tells whether the transform keeps an xattr.
func (t Transform) keepXattr(name string) bool {
	if slices.Contains(containerXattrAllowlist, name) {
		return true
	}
	return t == TransformKeepUserXattrs && strings.HasPrefix(name, "user.")
}

// transformed is the tree a transform gives: the root's metadata and, per
// directory, the children to show. The Builder's own tree is left alone,
// so that more layers may follow and other transforms be asked for.
type transformed struct {
	t    Transform
	root meta
	// run is the emptied /run, when there is one.
	run *dirNode
}

func (b *Builder) transform(t Transform) (*transformed, error) {
	switch t {
	case TransformDefault, TransformKeepUserXattrs, TransformNone:
	default:
		return nil, fmt.Errorf("unknown transform %d", int(t))
	}
	x := &transformed{t: t, root: b.root.meta}
	if t == TransformNone {
		return x, nil
	}
	usr, ok := b.root.children["usr"]
	if !ok || usr.dir == nil {
		return nil, fmt.Errorf("%w: the image has no /usr directory to take the root's metadata from", ErrTransform)
	}
	x.root = usr.dir.meta
	if run, ok := b.root.children["run"]; ok {
		if run.dir == nil {
			return nil, fmt.Errorf("%w: /run is not a directory", ErrTransform)
		}
		m := run.dir.meta
		m.mtime = usr.dir.mtime
		x.run = newDir(m)
	}
	return x, nil
}

// xattrs filters an inode's xattrs by the transform.
func (x *transformed) xattrs(xs []dumpfile.Xattr) []dumpfile.Xattr {
	if x.t == TransformNone {
		return slices.Clone(xs)
	}
	var out []dumpfile.Xattr
	for _, a := range xs {
		if x.t.keepXattr(a.Name) {
			out = append(out, a)
		}
	}
	return out
}
