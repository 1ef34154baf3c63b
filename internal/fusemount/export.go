package fusemount

import (
	"io"

	"github.com/composefs/composefs-go/internal/cli"
)

// Main is composefs-fuse's main: it runs the command line args (after the
// command's name) and returns the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	return run(args, stdout, stderr)
}

// Options are composefs-fuse's options on another command's line: the
// mount commands of cfsctl, which name the image and the repository
// themselves.
type Options struct{ cl *commandLine }

// DefineOptions defines on c every composefs-fuse option but --repo and
// --digest, which the command sets itself.
func DefineOptions(c *cli.Command) *Options {
	cl := defineOptions(c)
	for _, name := range []string{"repo", "digest"} {
		c.Flags.MarkHidden(name)
	}
	return &Options{cl}
}

// Mount mounts image, an image id or ref name in the repository at repo,
// on mountpoint, with the options c parsed, as composefs-fuse --repo REPO
// IMAGE MOUNTPOINT would: in the background unless --foreground, which
// re-runs the command's own command line (os.Args) as the daemon. It
// returns the exit status, after writing what went wrong to stderr.
func (o *Options) Mount(image, mountpoint, repo string, stdout, stderr io.Writer) int {
	cl := o.cl
	s, err := cl.settle()
	if err == nil {
		for _, name := range []string{"repo", "digest"} {
			if cl.Flags.Changed(name) {
				err = cli.Usagef("--%s: the image and its repository are named by the command", name)
			}
		}
	}
	if err == nil {
		s.image, s.mountpoint, s.repo, s.inRepo = image, mountpoint, repo, true
	}
	return cl.mount(s, err, stdout, stderr)
}
