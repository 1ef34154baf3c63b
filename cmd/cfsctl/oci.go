package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/oci"
	"github.com/composefs/composefs-go/oci/store"
)

// ociGroup holds the commands on OCI container images.
var ociGroup = &command{
	name:    "oci",
	args:    "COMMAND",
	summary: "OCI container images, with these commands:",
	about: `Pull OCI container images into the repository, name them, look into them
and mount them. An image is stored as composefs-rs stores it: its manifest,
config and layers as split streams, its files' content as objects shared
with every other image, and the composefs image of its merged layers.`,
}

func init() { register(nil, ociGroup) }

// transformFlags are the options that say how an image's layers become
// the composefs image: composefs-rs's --xattrs, and ours, --no-transform.
type transformFlags struct {
	xattrs      string
	noTransform bool
}

func (f *transformFlags) define(c *cli.Command) {
	c.Flags.StringVar(&f.xattrs, "xattrs", "allowlist-only", "which extended attributes the image keeps, as composefs-rs: `MODE` allowlist-only (security.capability) or keep-user-xattrs (user.* too)")
	c.Flags.BoolVar(&f.noTransform, "no-transform", false, "the layers' tree exactly, as umoci unpack gives it: every xattr, the root directory and /run as the layers have them (not composefs-rs's image id)")
}

// transform is the oci.Transform the options say.
func (f *transformFlags) transform() (oci.Transform, error) {
	if f.noTransform {
		return oci.TransformNone, nil
	}
	switch f.xattrs {
	case "allowlist-only":
		return oci.TransformDefault, nil
	case "keep-user-xattrs":
		return oci.TransformKeepUserXattrs, nil
	}
	return 0, cli.Usagef("--xattrs %q: want allowlist-only or keep-user-xattrs", f.xattrs)
}

// transformHint adds to err, when the image could not take composefs-rs's
// transform, what would do.
func transformHint(err error) error {
	if errors.Is(err, oci.ErrTransform) {
		return fmt.Errorf("%w (--no-transform takes the layers' tree as it is)", err)
	}
	return err
}

// imageKey is the named ref of a config stream that records the image of
// transform t in a repository of image format version: composefs-rs's key
// for its own transform, one of ours for the others.
func imageKey(version int, t oci.Transform) (string, error) {
	variant := ""
	switch t {
	case oci.TransformKeepUserXattrs:
		variant = "xattrs=keep-user-xattrs"
	case oci.TransformNone:
		variant = "transform=none"
	}
	return store.ImageKey(version, variant)
}

// interruptible is a context that SIGINT and SIGTERM cancel, so that a
// long command stops where the repository stays consistent rather than
// anywhere.
func interruptible() (context.Context, func()) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
