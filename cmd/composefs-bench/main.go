// Command composefs-bench mounts the same composefs images with the kernel
// (EROFS + overlayfs), with composefs-fuse over each FUSE transport and,
// with --c-server, with the C project's FUSE server, and prints how long
// each takes for the same work, as ratios to the kernel in one run.
//
// It generates its own corpora: a tree of small files in many directories
// plus one large file (objects in a flat digest store), a second image with
// a very large number of entries, and a tree shaped like a root
// filesystem's sizes, read by separate processes. It images a debootstrapped
// Debian root (built once, kept in --cache) for dpkg --verify and tar, and a
// copy of GOROOT for a go build. Needs root (kernel mounts, dropping the
// page cache).
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/composefs/composefs-go/internal/cli"
)

type config struct {
	work    string
	bin     string
	files   int
	dirs    int
	bigMiB  int
	entries int
	runs    int
	// groupRuns overrides runs for some groups of rows.
	groupRuns   map[string]int
	keep        bool
	skip500     bool
	verbose     bool
	cServer     string
	passthrough bool
	// transport is how composefs-fuse talks to the kernel: io_uring, dev
	// (/dev/fuse) or both, as two columns.
	transport string
	rows      []string
	cache     string
	goroot    string
	mirror    string
}

// rowGroups name the groups of rows --rows selects: the walk corpus'
// mount time, its stat walk cold and warm, the in-process cold read of its
// small files, the cold and warm read of its large file, the image of
// --entries entries (mount, walk, RSS); then the workloads run as
// separate processes: find | xargs cat of a tree (cold, warm, peak RSS),
// dpkg --verify and tar of a Debian root (cold, warm), go build with
// GOROOT on the mount (cold), and the pull and mount of an OCI image of the
// Debian root with cfsctl against skopeo and umoci (a table of its own),
// and the tree read and the large image mounted with objects and image
// fetched from nginx on 127.0.0.1 against the local disk (another).
var rowGroups = []string{"mount", "stat", "read", "big", "large", "tree", "dpkg", "tar", "gobuild", "oci", "http"}

// defaultRuns is how often each group is measured without --runs: a go
// build from an empty cache compiles a hundred and more packages, half a
// minute of two CPUs a time, so it gets two runs (of four columns), which
// keeps a full run near twelve minutes.
var defaultRuns = map[string]int{
	"mount": 3, "stat": 3, "read": 3, "big": 3,
	"large": 3, "tree": 3, "dpkg": 3, "tar": 3, "gobuild": 2, "oci": 3, "http": 3,
}

// wants reports whether any of the row groups is selected.
func (c *config) wants(groups ...string) bool {
	if len(c.rows) == 0 {
		return true
	}
	for _, g := range groups {
		if slices.Contains(c.rows, g) {
			return true
		}
	}
	return false
}

const about = `Mount the same composefs images with the kernel (EROFS + overlayfs), with
composefs-fuse over each FUSE transport and, with --c-server, with the C
project's FUSE server, and print how long each takes for the same work, as
ratios to the kernel in one run. It makes its own corpora, a Debian root
(kept in --cache) and a copy of GOROOT. Needs root: it mounts with the
kernel and drops the page cache.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var c config
	cmd := command(&c)
	err := parseArgs(cmd, &c, args)
	if err == nil {
		cmd.Log(stderr)
		err = measure(&c)
	}
	return cmd.Exit(err, stdout, stderr)
}

// command is the command line, its options stored in c.
func command(c *config) *cli.Command {
	cmd := cli.New("composefs-bench", about, "[OPTIONS]")
	fl := cmd.Flags
	fl.StringVar(&c.work, "work", "", "work directory `DIR` (default: a new temporary directory, removed at the end)")
	fl.StringVar(&c.bin, "bin", "", "directory `DIR` holding mkcomposefs, composefs-fuse and cfsctl (default: build them)")
	fl.IntVar(&c.files, "files", 20000, "`N` small files in the walk corpus")
	fl.IntVar(&c.dirs, "dirs", 1400, "`N` directories in the walk corpus")
	fl.IntVar(&c.bigMiB, "big-mib", 512, "size of the large file, `N` MiB")
	fl.IntVar(&c.entries, "entries", 500000, "`N` entries in the large image")
	fl.IntVar(&c.runs, "runs", 0, "`N` runs per measurement, the median reported (default: 3, 2 for gobuild)")
	fl.StringToIntVar(&c.groupRuns, "group-runs", nil, "runs for some groups of rows, over --runs: `GROUP=N,...`")
	fl.BoolVar(&c.keep, "keep", false, "keep the work directory")
	fl.BoolVar(&c.skip500, "skip-large-image", false, "skip the large-image rows")
	fl.StringVar(&c.cServer, "c-server", "", "also measure the C project's FUSE server, its composefs-fuse binary `FILE`, side by side")
	fl.BoolVar(&c.passthrough, "passthrough", false, "also measure composefs-fuse --passthrough over /dev/fuse, as a column of its own")
	fl.StringVar(&c.transport, "transport", "both", "composefs-fuse's FUSE transport `MODE`: both (two columns), io_uring (turns on the fuse module's enable_uring for the run if it is off) or dev (/dev/fuse only)")
	fl.StringSliceVar(&c.rows, "rows", nil, "measure only these groups of rows, `GROUP,...` (default all): "+strings.Join(rowGroups, ", "))
	fl.StringVar(&c.cache, "cache", "/var/cache/composefs-bench", "directory `DIR` keeping what is slow to make and the same every run (the debootstrapped root)")
	fl.StringVar(&c.goroot, "goroot", "/usr/local/go", "the Go installation `DIR` imaged as GOROOT for the go build row")
	fl.StringVar(&c.mirror, "mirror", "", "Debian mirror `URL` for debootstrap (default: the first one in /etc/apt/sources.list*)")
	fl.BoolVarP(&c.verbose, "verbose", "v", false, "print every run's figure (seconds) as it is measured")
	return cmd
}

// parseArgs parses args into c, the config cmd's options store into.
func parseArgs(cmd *cli.Command, c *config, args []string) error {
	if err := cmd.Parse(args); err != nil {
		return err
	}
	if cmd.Flags.NArg() != 0 {
		return cli.Usagef("takes no arguments, got %q", cmd.Flags.Args())
	}
	named := slices.Clone(c.rows)
	for g := range c.groupRuns {
		named = append(named, g)
	}
	for _, r := range named {
		if !slices.Contains(rowGroups, r) {
			return cli.Usagef("no group of rows %q; the groups are %s", r, strings.Join(rowGroups, ", "))
		}
	}
	return nil
}

// measure runs the whole benchmark and prints its table.
func measure(c *config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it mounts images with the kernel and drops the page cache")
	}
	// Whatever ends the run, ^C included, takes down the mounts, puts the
	// fuse module's switch back and removes the work directory.
	var cleanups []func()
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		})
	}
	defer cleanup()
	if c.work == "" {
		dir, err := os.MkdirTemp("", "composefs-bench.")
		if err != nil {
			return err
		}
		c.work = dir
		if !c.keep {
			cleanups = append(cleanups, func() { os.RemoveAll(dir) })
		}
	}
	if c.bin == "" {
		c.bin = filepath.Join(c.work, "bin")
		if err := buildTools(c.bin); err != nil {
			return err
		}
	}
	// Trees kept by an earlier run in the same --work would spare the
	// first cold mount of each row its whole-object hashes.
	if err := os.RemoveAll(filepath.Join(c.work, "trees")); err != nil {
		return err
	}
	restore, err := useTransport(c.transport)
	if err != nil {
		return err
	}
	cleanups = append(cleanups, restore)
	b := &bench{cfg: c}
	cleanups = append(cleanups, b.unmountAll)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "composefs-bench: %v: cleaning up\n", s)
		b.detachAll()
		b.report()
		cleanup()
		os.Exit(1)
	}()
	return b.all()
}
