package main

import (
	"encoding/hex"
	"fmt"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/internal/fusemount"
	"github.com/composefs/composefs-go/oci/store"
)

func init() {
	register(nil, &command{
		name: "mount", args: "IMAGE MOUNTPOINT", minArgs: 2, maxArgs: 2,
		summary: "mount an image of the repository",
		about: `Mount IMAGE, an image id or a name from "cfsctl images", on MOUNTPOINT
through FUSE, read-only, its files' content from the repository's objects
checked against their fs-verity digests, and the image checked against its
id. The options are composefs-fuse's: without -f the command returns once the
mount is live; "fusermount3 -u MOUNTPOINT" or "umount MOUNTPOINT" ends it.
The repository is only read.`,
		setup: setupMount,
	})
}

func setupMount(c *cli.Command) func(*env, []string) error {
	opts := fusemount.DefineOptions(c)
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		// By its id, so that the image is checked against it.
		image := args[0]
		if _, isID := r.ImageID(image); !isID {
			refs, err := r.Refs()
			if err != nil {
				r.Close()
				return err
			}
			id, ok := refs[image]
			if !ok {
				defer r.Close()
				if _, err := store.Resolve(r, image); err == nil {
					return fmt.Errorf("no composefs image named %q; an OCI image of that name is mounted with cfsctl oci mount", image)
				}
				return fmt.Errorf("no image named %q in %s (cfsctl images lists them)", image, r.Path())
			}
			image = hex.EncodeToString(id)
		}
		dir := r.Path()
		r.Close()
		return exitStatus(opts.Mount(image, args[1], dir, e.stdout, e.stderr))
	}
}

// exitStatus is a command's exit status when it has already said what
// went wrong, or when its status says something of its own (a mount ended
// by a signal).
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

func init() {
	register(ociGroup, &command{
		name: "mount", args: "NAME MOUNTPOINT", minArgs: 2, maxArgs: 2,
		summary: "mount a pulled image",
		about: `Mount the image pulled as NAME on MOUNTPOINT through FUSE, read-only, its
files' content from the repository's objects checked against their
fs-verity digests, and the image checked against its id: the image of the
transform --xattrs and --no-transform say, which a pull made. The other
options are composefs-fuse's: without -f the command returns once the
mount is live; "fusermount3 -u MOUNTPOINT" or "umount MOUNTPOINT" ends it.
The repository is only read, so one another user owns works when it is
readable.`,
		setup: setupOCIMount,
	})
}

func setupOCIMount(c *cli.Command) func(*env, []string) error {
	var tf transformFlags
	tf.define(c)
	opts := fusemount.DefineOptions(c)
	return func(e *env, args []string) error {
		t, err := tf.transform()
		if err != nil {
			return err
		}
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		key, err := imageKey(r.ErofsVersion(), t)
		if err != nil {
			r.Close()
			return err
		}
		id, err := imageOf(r, args[0], key)
		dir := r.Path()
		r.Close()
		if err != nil {
			return err
		}
		return exitStatus(opts.Mount(hex.EncodeToString(id), args[1], dir, e.stdout, e.stderr))
	}
}
