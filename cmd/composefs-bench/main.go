// Command composefs-bench mounts the same composefs images twice, with the
// kernel (EROFS + overlayfs) and with composefs-fuse, and prints how long
// each takes for the same work, as ratios ours/kernel in one run.
//
// It generates its own corpus: a tree of small files in many directories
// plus one large file (objects in a flat digest store), and a second image
// with a very large number of entries. Needs root (kernel mounts, dropping
// the page cache).
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
)

type config struct {
	work    string
	bin     string
	files   int
	dirs    int
	bigMiB  int
	entries int
	runs    int
	keep    bool
	skip500 bool
	verbose bool
	cServer string
	// transport is how composefs-fuse talks to the kernel: io_uring or
	// dev (/dev/fuse).
	transport string
}

func main() {
	var c config
	pflag.StringVar(&c.work, "work", "", "work directory (default: a new temporary directory, removed at the end)")
	pflag.StringVar(&c.bin, "bin", "", "directory holding mkcomposefs and composefs-fuse (default: build them)")
	pflag.IntVar(&c.files, "files", 20000, "small files in the walk corpus")
	pflag.IntVar(&c.dirs, "dirs", 1400, "directories in the walk corpus")
	pflag.IntVar(&c.bigMiB, "big-mib", 512, "size of the large file, MiB")
	pflag.IntVar(&c.entries, "entries", 500000, "entries in the large image")
	pflag.IntVar(&c.runs, "runs", 5, "runs per measurement (the median is reported)")
	pflag.BoolVar(&c.keep, "keep", false, "keep the work directory")
	pflag.BoolVar(&c.skip500, "skip-large-image", false, "skip the large-image rows")
	pflag.StringVar(&c.cServer, "c-server", "", "also measure the C project's FUSE server (its composefs-fuse binary), side by side")
	pflag.StringVar(&c.transport, "transport", "io_uring", "composefs-fuse's FUSE transport: io_uring (turns on the fuse module's enable_uring for the run) or dev (/dev/fuse only)")
	pflag.BoolVarP(&c.verbose, "verbose", "v", false, "print every run's figure (seconds) as it is measured")
	pflag.Parse()
	if err := run(&c); err != nil {
		fmt.Fprintf(os.Stderr, "composefs-bench: %v\n", err)
		os.Exit(1)
	}
}

func run(c *config) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("needs root: it mounts images with the kernel and drops the page cache")
	}
	if c.work == "" {
		dir, err := os.MkdirTemp("", "composefs-bench.")
		if err != nil {
			return err
		}
		c.work = dir
		if !c.keep {
			defer os.RemoveAll(dir)
		}
	}
	if c.bin == "" {
		c.bin = filepath.Join(c.work, "bin")
		if err := buildTools(c.bin); err != nil {
			return err
		}
	}
	restore, err := useTransport(c.transport)
	if err != nil {
		return err
	}
	defer restore()
	b := &bench{cfg: c}
	defer b.unmountAll()
	return b.all()
}
