// Command composefs-info prints what a composefs image holds, with the
// command line and output of C composefs-info:
//
//	composefs-info [--basedir=DIR] [--filter=NAME]... ls|dump|objects|missing-objects IMAGE...
//	composefs-info [--hash=sha256|sha512] measure-file FILE...
//	composefs-info inspect IMAGE [PATH]
//
// inspect is ours: the image's layout, inode by inode, for debugging.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

const usageLine = "usage: %s [--basedir=path] [--filter=name]... [ls|objects|dump|missing-objects|measure-file|inspect] IMAGES...\n"

// exitError carries a message for stderr and exit status 1.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

func fail(format string, args ...any) error { return &exitError{fmt.Sprintf(format, args...)} }

// usageError: print the message, then the usage line.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	prog := "composefs-info"
	flags := pflag.NewFlagSet(prog, pflag.ContinueOnError)
	flags.SetOutput(io.Discard)
	basedir := flags.String("basedir", "", "directory holding the objects (missing-objects)")
	filters := flags.StringArray("filter", nil, "only this top-level entry (repeatable)")
	hash := flags.String("hash", "sha256", "fs-verity hash for measure-file: sha256 or sha512")
	if err := flags.Parse(args[1:]); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		fmt.Fprintf(stderr, usageLine, prog)
		return 1
	}
	for _, f := range *filters {
		if strings.Contains(f, "/") {
			fmt.Fprintf(stderr, "%s: Filter must be a single name: %s\n", prog, f)
			return 1
		}
	}
	rest := flags.Args()
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "No command specified\n")
		fmt.Fprintf(stderr, usageLine, prog)
		return 1
	}
	out := bufio.NewWriterSize(stdout, 64<<10)
	err := dispatch(rest[0], rest[1:], options{basedir: *basedir, filters: *filters, hash: *hash}, out)
	if ferr := out.Flush(); err == nil && ferr != nil {
		err = fail("writing output: %v", ferr)
	}
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "%s\n", ue.msg)
			fmt.Fprintf(stderr, usageLine, prog)
			return 1
		}
		fmt.Fprintf(stderr, "%s: %v\n", prog, err)
		return 1
	}
	return 0
}

type options struct {
	basedir string
	filters []string
	hash    string
}

func dispatch(cmd string, args []string, opts options, out *bufio.Writer) error {
	switch cmd {
	case "measure-file":
		if len(args) == 0 {
			return &usageError{"No files specified"}
		}
		return measureFiles(args, opts.hash, out)
	case "ls", "dump", "objects", "missing-objects", "inspect":
	default:
		return fail("Unknown command '%s'", cmd)
	}
	if len(args) == 0 {
		return &usageError{"No image path specified"}
	}
	switch cmd {
	case "ls":
		return eachImage(args, opts.filters, func(t *tree) error { return printLs(t, out) })
	case "dump":
		return eachImage(args, opts.filters, func(t *tree) error { return printDump(t, out) })
	case "objects", "missing-objects":
		return printObjects(args, opts, cmd == "missing-objects", out)
	case "inspect":
		if len(args) > 2 {
			return &usageError{"inspect takes an image and an optional path"}
		}
		path := "/"
		if len(args) == 2 {
			path = args[1]
		}
		return inspect(args[0], path, out)
	}
	return nil
}
