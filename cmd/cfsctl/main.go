// Command cfsctl keeps composefs images in a composefs-rs repository: it
// pulls OCI container images into one, lists and names what it holds, and
// mounts its images through FUSE. Its command line follows composefs-rs's
// cfsctl for the part it does:
//
//	cfsctl [--repo DIR | --user | --system] COMMAND [OPTIONS] ARGS...
//	cfsctl oci pull docker://registry.example/image:tag NAME
//	cfsctl oci mount NAME MOUNTPOINT
package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/internal/cli"
)

const about = `Keep composefs images in a composefs-rs repository: pull OCI container
images into it, list and name what it holds, and mount its images through
FUSE, unprivileged. The repository is --repo DIR, or --user's
~/.var/lib/composefs, or --system's /sysroot/composefs; without any of the
three, --system for root and --user for everyone else.
"cfsctl COMMAND --help" says more of each command.`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var g globals
	top := topCommand(&g)
	// The global options come before the command's name, as in
	// composefs-rs; the command parses what follows its name.
	top.Flags.SetInterspersed(false)
	err := top.Parse(args)
	if err != nil {
		return top.Exit(err, stdout, stderr)
	}
	g.log = top.Log(stderr)
	rest := top.Flags.Args()
	leaf, path, rest, err := find(commands, rest)
	if err != nil {
		if path != nil {
			// "cfsctl oci" with no or an unknown subcommand: its own
			// help lists what it has.
			return groupCommand(path).Exit(err, stdout, stderr)
		}
		return top.Exit(err, stdout, stderr)
	}
	c := leafCommand(leaf)
	do := leaf.setup(c)
	if err := c.Parse(rest); err != nil {
		return c.Exit(err, stdout, stderr)
	}
	if c.Debug() {
		g.log = c.Log(stderr)
	}
	n := c.Flags.NArg()
	if n < leaf.minArgs || (leaf.maxArgs >= 0 && n > leaf.maxArgs) {
		return c.Exit(cli.Usagef("want %s, got %d arguments", leaf.args, n), stdout, stderr)
	}
	env := &env{globals: g, stdout: stdout, stderr: stderr, name: c.Name}
	err = do(env, c.Flags.Args())
	if status, ok := err.(exitStatus); ok {
		return int(status)
	}
	return c.Exit(err, stdout, stderr)
}

// command is one of cfsctl's commands: a leaf that runs, or a group of
// commands (oci).
type command struct {
	name    string
	args    string // its arguments, for the synopsis
	summary string // a line for the list of commands
	about   string // a paragraph for its help
	// minArgs and maxArgs bound the arguments after the options; maxArgs
	// -1 is no bound.
	minArgs, maxArgs int
	// setup defines the command's options on c and returns what runs it
	// on its arguments, with the options parsed.
	setup func(c *cli.Command) func(e *env, args []string) error
	// sub are the commands of a group, which has no setup.
	sub []*command
	// parent is the group the command is in, nil at the top.
	parent *command
}

// isGroup tells a group of commands from a command that runs.
func (c *command) isGroup() bool { return c.setup == nil }

// fullName is the command as typed after cfsctl: "oci pull".
func (c *command) fullName() string {
	if c.parent == nil {
		return c.name
	}
	return c.parent.fullName() + " " + c.name
}

// commands is the tree of commands, filled in by the files that hold
// them (init functions), so that each file owns its commands.
var commands []*command

// register adds c to group, or to the top when group is nil.
func register(group *command, c *command) {
	c.parent = group
	if group == nil {
		commands = append(commands, c)
		return
	}
	group.sub = append(group.sub, c)
}

// find walks args down the tree to a leaf command. On a group named with
// nothing or something unknown after it, it returns the group as path,
// for its help.
func find(list []*command, args []string) (leaf, path *command, rest []string, err error) {
	for {
		if len(args) == 0 {
			if path != nil {
				return nil, path, nil, cli.Usagef("%s: no command given", path.fullName())
			}
			return nil, nil, nil, cli.Usagef("no command given")
		}
		if path != nil && (args[0] == "--help" || args[0] == "-h") {
			return nil, path, nil, cli.ErrHelp
		}
		var next *command
		for _, c := range list {
			if c.name == args[0] {
				next = c
			}
		}
		if next == nil {
			if path != nil {
				return nil, path, nil, cli.Usagef("%s: unknown command %q", path.fullName(), args[0])
			}
			return nil, nil, nil, cli.Usagef("unknown command %q", args[0])
		}
		args = args[1:]
		if !next.isGroup() {
			return next, path, args, nil
		}
		path, list = next, next.sub
	}
}

// topCommand is cfsctl's own command line: the global options.
func topCommand(g *globals) *cli.Command {
	c := cli.New("cfsctl", about, "[OPTIONS] COMMAND [ARGS...]", "COMMAND --help")
	c.More = commandList("Commands:", commands)
	g.define(c)
	return c
}

// groupCommand is the help of a group of commands: "cfsctl oci".
func groupCommand(g *command) *cli.Command {
	c := cli.New("cfsctl "+g.fullName(), g.about, "COMMAND [OPTIONS] [ARGS...]", "COMMAND --help")
	c.More = commandList("Commands:", g.sub)
	return c
}

// leafCommand is the command line of a leaf, for its parsing and help.
func leafCommand(l *command) *cli.Command {
	synopsis := "[OPTIONS]"
	if l.args != "" {
		synopsis += " " + l.args
	}
	return cli.New("cfsctl "+l.fullName(), l.about, synopsis)
}

// listOrder is the order commands are listed in help, most used first
// within the repository's and the images' commands; the files that
// register them do it in no particular order.
var listOrder = map[string][]string{
	"":    {"init", "images", "mount", "gc", "fsck", "oci"},
	"oci": {"pull", "images", "inspect", "tag", "untag", "dump", "compute-id", "mount"},
}

func listRank(c *command) int {
	group := ""
	if c.parent != nil {
		group = c.parent.fullName()
	}
	if i := slices.Index(listOrder[group], c.name); i >= 0 {
		return i
	}
	return len(listOrder[group])
}

// commandList is the list of commands in a help: a line each, with the
// commands of a group after the group's own line.
func commandList(title string, list []*command) string {
	var b strings.Builder
	b.WriteString(title + "\n")
	var add func(list []*command, indent string)
	add = func(list []*command, indent string) {
		list = slices.Clone(list)
		slices.SortStableFunc(list, func(a, b *command) int { return listRank(a) - listRank(b) })
		for _, c := range list {
			head := c.name
			if c.args != "" {
				head += " " + c.args
			}
			fmt.Fprintf(&b, "  %s%-*s %s\n", indent, 30-len(indent), head, c.summary)
			add(c.sub, indent+"  ")
		}
	}
	add(list, "")
	return b.String()
}
