// Package fusemount is composefs-fuse's command line and its serving: it
// mounts a composefs image through FUSE, showing what the kernel shows for
// the same image mounted with EROFS and overlayfs, in the foreground or
// as a daemon that returns once the mount is live. cmd/composefs-fuse is
// this whole; cfsctl's mount commands take its options and its serving.
//
//	composefs-fuse [OPTIONS] IMAGE MOUNTPOINT
//
// It works as mount.fuse3's helper too, so that
// `mount -t fuse.composefs-fuse IMAGE MNT -o basedir=DIR` and fstab lines
// do what they say.
package fusemount

import (
	"io"
	"syscall"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/internal/cli"
)

const about = `Mount the composefs IMAGE on MOUNTPOINT, read-only. External files read
their content from the object stores given by --basedir or --repo, checked
against their fs-verity digest. Without -f the command returns once the
mount is live and the server goes on in the background.`

// run is composefs-fuse's main without the process: it returns the exit
// status.
func run(args []string, stdout, stderr io.Writer) int {
	cl := newCommandLine()
	s, err := cl.parse(args)
	return cl.mount(s, err, stdout, stderr)
}

// mount mounts as settings s say, unless the command line failed with err
// already, and returns the exit status.
func (cl *commandLine) mount(s *settings, err error, stdout, stderr io.Writer) int {
	if err == nil && !s.foreground && !isDaemonChild() {
		return startDaemon()
	}
	var ended syscall.Signal
	if err == nil {
		ended, err = serve(s, cl.Log(stderr))
	}
	if err == nil && ended != 0 {
		// As a shell reports a command a signal ended, though this one
		// unmounted first: with -f to the caller, in the background to
		// a supervisor that watches the daemon's pid.
		return 128 + int(ended)
	}
	return cl.Exit(err, stdout, stderr)
}

// commandLine is the command line: the settings its options store into,
// and the options that parse makes settings of.
type commandLine struct {
	*cli.Command
	s         settings
	verity    string
	cacheSize string
	// fetchTimeout is --fetch-timeout as given, in seconds.
	fetchTimeout string
	mountOpt     []string
}

func newCommandLine() *commandLine {
	return defineOptions(cli.New("composefs-fuse", about, "[OPTIONS] IMAGE MOUNTPOINT"))
}

// defineOptions defines composefs-fuse's options on c.
func defineOptions(c *cli.Command) *commandLine {
	cl := &commandLine{Command: c}
	fl, s := cl.Flags, &cl.s
	fl.Lookup("debug").Usage = "log debug messages too, every FUSE request among them (-o debug)"
	fl.StringArrayVar(&s.basedirs, "basedir", nil, "flat object store `DIR` or http(s):// URL (repeatable, or A:B for directories; searched in order)")
	fl.StringVar(&s.cacheDir, "cache", "", "where objects fetched from a URL --basedir are kept, a flat store shared by mounts: `DIR` (default $XDG_CACHE_HOME/composefs-fuse/objects, /var/cache/composefs-fuse/objects for root) (-o cache=DIR)")
	fl.StringVar(&s.treeCache, "tree-cache", "", "where the fs-verity block hashes of objects of 256 KiB to 1 GiB are kept once hashed, so that later mounts check such a file block by block as it is read instead of hashing all of it before its first byte: `DIR`, private to the user, or none (default $COMPOSEFS_FUSE_TREE_CACHE, else $XDG_CACHE_HOME/composefs-fuse/trees, /var/cache/composefs-fuse/trees for root; not with --passthrough, --verity=off, or several or URL stores) (-o tree_cache=DIR)")
	fl.StringVar(&cl.cacheSize, "cache-size", "", "bound the cache to `SIZE` bytes (K, M, G, T suffixes), removing the objects used least recently that no one has open (-o cache_size=SIZE)")
	fl.StringVar(&s.caFile, "ca-file", "", "trust the certificate authorities in the PEM `FILE` too, for https stores (-o ca_file=FILE)")
	fl.StringVar(&cl.fetchTimeout, "fetch-timeout", "", "give up on a request to a URL store after `SECONDS` without a byte from it (default 20, from 0.01 to 3600); a request is tried 4 times in all before the file's open fails with EIO (-o fetch_timeout=SECONDS)")
	fl.StringVar(&s.tokenFile, "token-file", "", "send the bearer token in `FILE` to URL stores (-o token_file=FILE)")
	fl.StringVar(&s.headerFile, "header-file", "", "send the headers in `FILE` (\"Name: value\" lines) to URL stores (-o header_file=FILE)")
	fl.StringVar(&s.repo, "repo", "", "composefs-rs repository `DIR` or http(s):// URL: objects from its store; IMAGE may be an image id or ref name in it")
	fl.StringVar(&s.digest, "digest", "", "the image's expected fs-verity digest `HEX`; refuse to mount on mismatch")
	fl.StringVar(&cl.verity, "verity", "on", "check external files against their fs-verity digest: `MODE` on, require or off")
	fl.BoolVarP(&s.foreground, "foreground", "f", false, "serve in the foreground until unmounted")
	fl.StringArrayVarP(&cl.mountOpt, "options", "o", nil, "comma-separated mount `OPTIONS` (basedir=, digest=, verity=, repo=, log=, allow_other, ro, nosuid, ...)")
	fl.StringVar(&s.logFile, "log", "", "append log lines from the mount on to `FILE` (else, in the background, to syslog) (-o log=FILE)")
	fl.BoolVar(&s.allowOther, "allow-other", false, "let other users see the mount")
	fl.BoolVar(&s.noReadAhead, "no-read-ahead", false, "open and check objects only when their file is first read (opened, with --passthrough), never ahead of a directory being read through (-o noreadahead)")
	fl.BoolVar(&s.passthrough, "passthrough", false, "answer every open of a file, handing its object to the kernel (FUSE passthrough; root only), which reads it without the server and shares its page cache with other mounts of the object; a missing or tampered object then fails the open, not the first read, but each open and close costs two round trips to the server, so cached small files open several times slower (-o passthrough)")
	// The default since passthrough became an option; kept so that
	// command lines and fstab entries that asked for it still work.
	fl.BoolVar(&s.noOpen, "no-open", false, "no passthrough, whatever else asks for it (the default; -o noopen)")
	fl.MarkHidden("no-open")
	fl.BoolVar(&s.checkObjects, "check-objects", false, "before mounting, look for every external file's object in the store, not only the first 16 when there are more, and say how many are missing (-o check_objects)")
	fl.BoolVar(&s.prefetch, "prefetch", false, "once mounted, fetch every object of the image in the background, in image order, logging the progress every 10 s, on SIGUSR1 and at the end (-o prefetch)")
	fl.BoolVar(&s.noIOUring, "no-io-uring", false, "keep all requests on /dev/fuse even where the kernel offers FUSE over io_uring (-o noiouring)")
	return cl
}

// parseArgs parses a command line on its own.
func parseArgs(args []string) (*settings, error) {
	return newCommandLine().parse(args)
}

// parse parses args, the command line after the command's name.
func (cl *commandLine) parse(args []string) (*settings, error) {
	if err := cl.Parse(args); err != nil {
		return nil, err
	}
	s, err := cl.settle()
	if err != nil {
		return nil, err
	}
	if n := cl.Flags.NArg(); n != 2 {
		return nil, cli.Usagef("want IMAGE and MOUNTPOINT, got %d arguments", n)
	}
	s.image, s.mountpoint = cl.Flags.Arg(0), cl.Flags.Arg(1)
	return s, nil
}

// settle makes settings of the options once they are parsed: what pflag
// cannot check, and the -o options.
func (cl *commandLine) settle() (*settings, error) {
	s := &cl.s
	m, err := composefs.ParseVerityMode(cl.verity)
	if err != nil {
		return nil, cli.Usagef("--verity: %v", err)
	}
	s.verity = m
	if cl.cacheSize != "" {
		n, err := parseSize(cl.cacheSize)
		if err != nil {
			return nil, cli.Usagef("--cache-size: %v", err)
		}
		s.cacheSize = n
	}
	if cl.fetchTimeout != "" {
		d, err := parseSeconds(cl.fetchTimeout)
		if err != nil {
			return nil, cli.Usagef("--fetch-timeout: %v", err)
		}
		s.fetchTimeout = d
	}
	for _, o := range cl.mountOpt {
		if err := s.addOptions(o); err != nil {
			return nil, cli.Usagef("-o: %v", err)
		}
	}
	if s.debug {
		// -o debug is --debug: the log level follows it too.
		cl.Flags.Set("debug", "true")
	}
	s.debug = cl.Debug()
	return s, nil
}
