// Command mkcomposefs builds a composefs image from a directory or from a
// dumpfile, with the C tool's options and meaning:
//
//	mkcomposefs [OPTIONS] SOURCE IMAGE
//	mkcomposefs --print-digest-only [OPTIONS] SOURCE
//
// With --from-file SOURCE is a dumpfile ("-" for stdin), in the format of
// the C project's composefs-dump(5); IMAGE "-" is stdout. On any error the
// command exits 1 with one message (2 for a command line it cannot run) and
// IMAGE is left as it was.
package main

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/composefs/composefs-go/internal/cli"
)

const about = `Build a composefs image from SOURCE, a directory or, with --from-file, a
dumpfile ("-" for stdin; the format of C composefs' composefs-dump(5)), and
write it to IMAGE ("-" for stdout), with C mkcomposefs' options and output.
On any error IMAGE is left as it was.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// settings is the parsed command line.
type settings struct {
	source, image   string
	fromFile        bool
	digestStore     string
	useEpoch        bool
	skipDevices     bool
	skipXattrs      bool
	userXattrs      bool
	printDigest     bool
	printDigestOnly bool
	minVersion      int
	maxVersion      int
	threads         int
	hardlinks       bool
	quiet           bool
	strict          bool // CFS_PARSE_STRICT is set
	versionSet      bool // --min-version or --max-version given
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s := &settings{threads: defaultThreads()}
	c := command(s)
	err := parseArgs(c, s, args)
	if err == nil {
		c.Log(stderr)
		err = build(s, stdin, stdout, stderr)
	}
	return c.Exit(err, stdout, stderr)
}

// versionFlag is an integer flag that records whether it was given: C
// mkcomposefs uses 0..1 when neither version flag is, and 0 for the one
// left out when only one is.
type versionFlag struct {
	v   *int
	set *bool
}

func (f versionFlag) String() string { return strconv.Itoa(*f.v) }
func (f versionFlag) Type() string   { return "N" }
func (f versionFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return fmt.Errorf("invalid version %q", s)
	}
	*f.v, *f.set = n, true
	return nil
}

// defaultThreads is one worker per CPU, as C has it, but at least 8: with
// --digest-store each copy ends waiting for its fsync, and more copies in
// flight hide that wait (a 20,000-file tree on 2 CPUs: 3.7–5.8 s instead
// of 6.5–8 s). Go runs no more of them at once than there are CPUs, so
// digests alone lose nothing.
func defaultThreads() int {
	return max(runtime.NumCPU(), 8)
}

// command is the command line, its options stored in s.
func command(s *settings) *cli.Command {
	c := cli.New("mkcomposefs", about, "[OPTIONS] SOURCE IMAGE", "--print-digest-only [OPTIONS] SOURCE")
	fl := c.Flags
	fl.StringVar(&s.digestStore, "digest-store", "", "store content files in the object store `DIR`")
	fl.BoolVar(&s.useEpoch, "use-epoch", false, "make all mtimes zero")
	fl.BoolVar(&s.skipDevices, "skip-devices", false, "don't store device nodes")
	fl.BoolVar(&s.skipXattrs, "skip-xattrs", false, "don't store file xattrs")
	fl.BoolVar(&s.userXattrs, "user-xattrs", false, "only store user.* xattrs")
	fl.BoolVar(&s.printDigest, "print-digest", false, "print the digest of the image")
	fl.BoolVar(&s.printDigestOnly, "print-digest-only", false, "print the digest of the image, don't write image")
	fl.BoolVar(&s.fromFile, "from-file", false, "the source is a dump file, not a directory")
	fl.Var(versionFlag{&s.minVersion, &s.versionSet}, "min-version", "use this minimal format version `N` (default 0)")
	fl.Var(versionFlag{&s.maxVersion, &s.versionSet}, "max-version", "use this maximum format version `N` (default 1)")
	fl.IntVar(&s.threads, "threads", s.threads, "run `N` threads computing digests and copying files")
	fl.BoolVar(&s.hardlinks, "hardlinks", false, "store files of the same inode as hardlinks (directory source)")
	fl.BoolVarP(&s.quiet, "quiet", "q", false, "show no progress line while scanning a directory (shown only when stderr is a terminal)")
	return c
}

// parseArgs parses args into s, the settings c's options store into.
func parseArgs(c *cli.Command, s *settings, args []string) error {
	if err := c.Parse(args); err != nil {
		return err
	}
	if !s.versionSet {
		s.minVersion, s.maxVersion = 0, 1
	}
	if s.threads <= 0 {
		return cli.Usagef("invalid threads count %d", s.threads)
	}
	if s.skipXattrs && s.userXattrs {
		return cli.Usagef("--skip-xattrs and --user-xattrs conflict")
	}
	rest := c.Flags.Args()
	switch {
	case len(rest) < 1:
		return cli.Usagef("no source path specified")
	case len(rest) > 2:
		return cli.Usagef("too many arguments")
	case rest[0] == "":
		return cli.Usagef("empty source path specified")
	case len(rest) == 1 && !s.printDigestOnly:
		return cli.Usagef("no destination path specified")
	case len(rest) == 2 && s.printDigestOnly:
		return cli.Usagef("cannot specify destination path with --print-digest-only")
	}
	s.source = rest[0]
	if len(rest) == 2 {
		s.image = rest[1]
	}
	if s.printDigestOnly {
		s.printDigest = true
	}
	_, s.strict = os.LookupEnv("CFS_PARSE_STRICT")
	return nil
}
