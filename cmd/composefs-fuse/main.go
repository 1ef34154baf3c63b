// Command composefs-fuse mounts a composefs image through FUSE, showing what
// the kernel shows for the same image mounted with EROFS and overlayfs.
//
//	composefs-fuse [OPTIONS] IMAGE MOUNTPOINT
//
// It works as mount.fuse3's helper too, so that
// `mount -t fuse.composefs-fuse IMAGE MNT -o basedir=DIR` and fstab lines
// do what they say.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/composefs/composefs-go/composefs"
)

const usage = `Usage: composefs-fuse [OPTIONS] IMAGE MOUNTPOINT

Mount the composefs IMAGE on MOUNTPOINT, read-only. External files read
their content from the object stores given by --basedir or --repo.

Options:
`

func main() {
	os.Exit(run(os.Args[1:]))
}

// errUsage marks a command line that cannot be run; it exits with 2.
var errUsage = errors.New("usage")

func run(args []string) int {
	s, err := parseArgs(args)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	if !s.foreground && !isDaemonChild() {
		return startDaemon()
	}
	if err := serve(s); err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		return 1
	}
	return 0
}

func parseArgs(args []string) (*settings, error) {
	fl := pflag.NewFlagSet("composefs-fuse", pflag.ContinueOnError)
	fl.SortFlags = false
	fl.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		fl.PrintDefaults()
	}
	var (
		basedirs []string
		mountOpt []string
		verity   string
		s        settings
	)
	fl.StringArrayVar(&basedirs, "basedir", nil, "flat object store `DIR` (repeatable, or A:B; searched in order)")
	fl.StringVar(&s.repo, "repo", "", "composefs-rs repository `DIR`: objects from its store; IMAGE may be an image id or ref name in it")
	fl.StringVar(&s.digest, "digest", "", "the image's expected fs-verity digest `HEX`; refuse to mount on mismatch")
	fl.StringVar(&verity, "verity", "on", "check external files against their fs-verity digest: `MODE` on, require or off")
	fl.BoolVarP(&s.foreground, "foreground", "f", false, "serve in the foreground until unmounted")
	fl.StringArrayVarP(&mountOpt, "options", "o", nil, "comma-separated mount `OPTIONS` (basedir=, digest=, verity=, repo=, allow_other, ro, nosuid, ...)")
	fl.BoolVar(&s.allowOther, "allow-other", false, "let other users see the mount")
	fl.BoolVar(&s.debug, "debug", false, "log every FUSE request")
	fl.BoolVar(&s.noReadAhead, "no-read-ahead", false, "open and check objects only when their file is opened, never ahead of a directory being read through (-o noreadahead)")
	fl.BoolVar(&s.noOpen, "no-open", false, "let the kernel open files without asking: much faster opens of cached files, but no passthrough, so large files read slower, and a missing or tampered object fails its first read rather than its open; chosen by itself when passthrough is not possible (-o noopen)")
	fl.BoolVar(&s.noIOUring, "no-io-uring", false, "keep all requests on /dev/fuse even where the kernel offers FUSE over io_uring (-o noiouring)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errUsage, err)
	}
	m, err := composefs.ParseVerityMode(verity)
	if err != nil {
		return nil, fmt.Errorf("%w: --verity: %w", errUsage, err)
	}
	s.verity = m
	s.basedirs = basedirs
	for _, o := range mountOpt {
		if err := s.addOptions(o); err != nil {
			return nil, fmt.Errorf("%w: %w", errUsage, err)
		}
	}
	if fl.NArg() != 2 {
		fl.Usage()
		return nil, fmt.Errorf("%w: want IMAGE and MOUNTPOINT, got %d arguments", errUsage, fl.NArg())
	}
	s.image, s.mountpoint = fl.Arg(0), fl.Arg(1)
	return &s, nil
}
