// Command composefs-info prints what a composefs image holds, with the
// command line and output of C composefs-info:
//
//	composefs-info [--basedir=DIR] [--filter=NAME]... ls|dump|objects|missing-objects IMAGE...
//	composefs-info [--hash=sha256|sha512] measure-file FILE...
//	composefs-info inspect IMAGE [PATH]
//
// inspect is ours: the image's layout, inode by inode, for debugging. A
// command line it cannot run exits 2, where C's exits 1.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/composefs/composefs-go/internal/cli"
)

const about = `Print what composefs images hold, with the command line and output of C
composefs-info, and the fs-verity digest of files. COMMAND says what to
print; "composefs-info COMMAND --help" says more of each.`

// subcommand is one of the things the command prints.
type subcommand struct {
	name    string
	args    string // its arguments, for the synopsis
	summary string // a line for the list of commands
	about   string // a paragraph for its help
	// flags are the options it reads, listed in its help.
	flags []string
}

var subcommands = []subcommand{
	{"ls", "IMAGE...", "list the paths in the images",
		`List every path in each image below its root, one a line: directories
end in "/", symlinks show "-> TARGET", external files "@ PAYLOAD", and a
hardlink is its bare path.`, []string{"filter"}},
	{"dump", "IMAGE...", "print the images as dumpfiles",
		`Print each image as a dumpfile (the format of C composefs' composefs-dump(5)),
one line an entry, as C composefs-info dump does; mkcomposefs --from-file
makes the image again.`, []string{"filter"}},
	{"objects", "IMAGE...", "list the objects the images' external files need",
		`List the objects the external files of all images need, as paths in an
object store, sorted and once each.`, []string{"filter"}},
	{"missing-objects", "IMAGE...", "list the objects they need that --basedir lacks",
		`List the objects the external files of all images need that the flat
object store at --basedir lacks or could not serve, sorted and once each;
without --basedir, all of them.`, []string{"basedir", "filter"}},
	{"measure-file", "FILE...", "print the fs-verity digest of files",
		`Print the fs-verity digest of each FILE in lowercase hex, one a line,
computed here whether or not the file has fs-verity enabled.`, []string{"hash"}},
	{"inspect", "IMAGE [PATH]", "print the image's layout, for debugging",
		`Print the image's layout for debugging: its header, its superblock, then
every inode from PATH (default /) down, as stored, stubs and escapes
included and each marked. Damage is reported where it is found and the walk
goes on; any damage makes the command fail at the end.`, nil},
}

// lookup returns the subcommand called name, or nil.
func lookup(name string) *subcommand {
	for i := range subcommands {
		if subcommands[i].name == name {
			return &subcommands[i]
		}
	}
	return nil
}

// exitError carries a message for stderr and exit status 1.
type exitError struct{ msg string }

func (e *exitError) Error() string { return e.msg }

func fail(format string, args ...any) error { return &exitError{fmt.Sprintf(format, args...)} }

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// command is the command line, its options stored in opts.
func command(opts *options) *cli.Command {
	c := cli.New("composefs-info", about, "[OPTIONS] COMMAND ARGS...", "COMMAND --help")
	var more strings.Builder
	more.WriteString("Commands:\n")
	for _, sc := range subcommands {
		fmt.Fprintf(&more, "  %-26s %s\n", sc.name+" "+sc.args, sc.summary)
	}
	c.More = more.String()
	c.Flags.StringVar(&opts.basedir, "basedir", "", "flat object store `DIR` holding the objects (missing-objects)")
	c.Flags.StringArrayVar(&opts.filters, "filter", nil, "only the top-level entry `NAME` and what is below it (repeatable)")
	c.Flags.StringVar(&opts.hash, "hash", "sha256", "fs-verity hash `ALG` for measure-file: sha256 or sha512")
	return c
}

// command is the subcommand's command line, for its help and messages: the
// options of top it reads, and --help and --version.
func (sc *subcommand) command(top *cli.Command) *cli.Command {
	c := cli.New(top.Name+" "+sc.name, sc.about, "[OPTIONS] "+sc.args)
	for _, name := range sc.flags {
		c.Flags.AddFlag(top.Flags.Lookup(name))
	}
	return c
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var opts options
	c := command(&opts)
	err := c.Parse(args[1:])
	if err == nil {
		c.Log(stderr)
	}
	rest := c.Flags.Args()
	// With a subcommand named, its help is the help, and a command line
	// it cannot run points at it.
	if len(rest) > 0 {
		if sc := lookup(rest[0]); sc != nil {
			c = sc.command(c)
		}
	}
	if err == nil {
		err = checkArgs(rest, opts)
	}
	if err == nil {
		out := bufio.NewWriterSize(stdout, 64<<10)
		err = dispatch(rest[0], rest[1:], opts, out)
		if ferr := out.Flush(); err == nil && ferr != nil {
			err = fail("writing output: %v", ferr)
		}
	}
	return c.Exit(err, stdout, stderr)
}

// checkArgs checks what Parse cannot: a known command and good filters.
func checkArgs(rest []string, opts options) error {
	if len(rest) == 0 {
		return cli.Usagef("No command specified")
	}
	if lookup(rest[0]) == nil {
		return cli.Usagef("Unknown command '%s'", rest[0])
	}
	for _, f := range opts.filters {
		if strings.Contains(f, "/") {
			return cli.Usagef("Filter must be a single name: %s", f)
		}
	}
	return nil
}

type options struct {
	basedir string
	filters []string
	hash    string
}

// dispatch runs cmd, one of the subcommands, on its arguments.
func dispatch(cmd string, args []string, opts options, out *bufio.Writer) error {
	if cmd == "measure-file" {
		if len(args) == 0 {
			return cli.Usagef("No files specified")
		}
		return measureFiles(args, opts.hash, out)
	}
	if len(args) == 0 {
		return cli.Usagef("No image path specified")
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
			return cli.Usagef("inspect takes an image and an optional path")
		}
		path := "/"
		if len(args) == 2 {
			path = args[1]
		}
		return inspect(args[0], path, out)
	}
	return nil
}
