// Command mkcomposefs builds a composefs image from a directory or from a
// dumpfile, with the C tool's options and meaning:
//
//	mkcomposefs [OPTIONS] SOURCE IMAGE
//	mkcomposefs --print-digest-only [OPTIONS] SOURCE
//
// With --from-file SOURCE is a composefs-dump(5) file ("-" for stdin);
// IMAGE "-" is stdout. On any error the command exits 1 with one message
// and IMAGE is left as it was.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"

	"github.com/spf13/pflag"
)

const usageText = `Usage: mkcomposefs [OPTIONS] SOURCE IMAGE
Options:
`

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
	strict          bool // CFS_PARSE_STRICT is set
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	s, err := parseArgs(args, stderr)
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err == nil {
		err = build(s, stdin, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mkcomposefs: %v\n", err)
		return 1
	}
	return 0
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

func parseArgs(args []string, stderr io.Writer) (*settings, error) {
	fl := pflag.NewFlagSet("mkcomposefs", pflag.ContinueOnError)
	fl.SortFlags = false
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fl.PrintDefaults()
	}
	s := &settings{threads: defaultThreads()}
	var versionSet bool
	fl.StringVar(&s.digestStore, "digest-store", "", "store content files in this directory (`PATH`)")
	fl.BoolVar(&s.useEpoch, "use-epoch", false, "make all mtimes zero")
	fl.BoolVar(&s.skipDevices, "skip-devices", false, "don't store device nodes")
	fl.BoolVar(&s.skipXattrs, "skip-xattrs", false, "don't store file xattrs")
	fl.BoolVar(&s.userXattrs, "user-xattrs", false, "only store user.* xattrs")
	fl.BoolVar(&s.printDigest, "print-digest", false, "print the digest of the image")
	fl.BoolVar(&s.printDigestOnly, "print-digest-only", false, "print the digest of the image, don't write image")
	fl.BoolVar(&s.fromFile, "from-file", false, "the source is a dump file, not a directory")
	fl.Var(versionFlag{&s.minVersion, &versionSet}, "min-version", "use this minimal format version (default 0)")
	fl.Var(versionFlag{&s.maxVersion, &versionSet}, "max-version", "use this maximum format version (default 1)")
	fl.IntVar(&s.threads, "threads", s.threads, "number of threads computing digests and copying files")
	fl.BoolVar(&s.hardlinks, "hardlinks", false, "store files of the same inode as hardlinks (directory source)")
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if !versionSet {
		s.minVersion, s.maxVersion = 0, 1
	}
	if s.threads <= 0 {
		return nil, fmt.Errorf("invalid threads count %d", s.threads)
	}
	if s.skipXattrs && s.userXattrs {
		return nil, errors.New("--skip-xattrs and --user-xattrs conflict")
	}
	rest := fl.Args()
	switch {
	case len(rest) < 1:
		fl.Usage()
		return nil, errors.New("no source path specified")
	case len(rest) > 2:
		fl.Usage()
		return nil, errors.New("too many arguments")
	case rest[0] == "":
		return nil, errors.New("empty source path specified")
	case len(rest) == 1 && !s.printDigestOnly:
		fl.Usage()
		return nil, errors.New("no destination path specified")
	case len(rest) == 2 && s.printDigestOnly:
		fl.Usage()
		return nil, errors.New("cannot specify destination path with --print-digest-only")
	}
	s.source = rest[0]
	if len(rest) == 2 {
		s.image = rest[1]
	}
	if s.printDigestOnly {
		s.printDigest = true
	}
	_, s.strict = os.LookupEnv("CFS_PARSE_STRICT")
	return s, nil
}
