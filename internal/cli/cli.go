// Package cli is what the commands in cmd/ share on their command line:
// --help, --version and --debug, the layout of the help text, the exit
// status and message of a command line that cannot be run, and the format
// of their log (log.go).
//
// A command makes its Command with New, defines its options on Flags with
// a back-quoted placeholder in each value's usage (`DIR`, `N`), calls
// Parse, checks what pflag cannot (argument count, values that depend on
// each other) with Usagef, and ends with Exit:
//
//	c := cli.New("mkcomposefs", about, "[OPTIONS] SOURCE IMAGE")
//	c.Flags.IntVar(&threads, "threads", 8, "run `N` workers")
//	err := c.Parse(args)
//	if err == nil && c.Flags.NArg() != 2 {
//		err = cli.Usagef("want SOURCE and IMAGE")
//	}
//	...
//	return c.Exit(err, stdout, stderr)
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// The exit statuses of every command.
const (
	// ExitFailure: the command line was fine, the work failed.
	ExitFailure = 1
	// ExitUsage: the command line cannot be run.
	ExitUsage = 2
)

// helpWidth is where the option descriptions wrap.
const helpWidth = 80

var (
	// ErrHelp is Parse's answer to --help: Exit prints the help.
	ErrHelp = errors.New("help requested")
	// ErrVersion is Parse's answer to --version: Exit prints the version.
	ErrVersion = errors.New("version requested")
)

// UsageError is a command line that cannot be run: an unknown option, a
// bad value, a wrong number of arguments.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

// Usagef makes a UsageError.
func Usagef(format string, args ...any) error {
	return &UsageError{fmt.Sprintf(format, args...)}
}

// Command is a command line: the options and the help text around them.
type Command struct {
	// Name is the command as typed: "mkcomposefs", or "composefs-info ls"
	// for a subcommand. Its first word prefixes every message.
	Name string
	// Synopsis holds the forms of the command line, without the name.
	Synopsis []string
	// About is one paragraph saying what the command does.
	About string
	// More is printed after About, before the options, when not empty:
	// a list of subcommands, say.
	More string
	// Flags are the options. New defines --help, --version and --debug
	// on it; it stops at the first error and prints nothing itself.
	Flags *pflag.FlagSet

	help, version, debug bool
}

// New makes the Command with its --help, --version and --debug options;
// the options the command defines next are listed after them in its help.
// A command whose debug messages say something particular can reword
// --debug's description (Flags.Lookup("debug").Usage).
func New(name, about string, synopsis ...string) *Command {
	c := &Command{Name: name, Synopsis: synopsis, About: about}
	c.Flags = pflag.NewFlagSet(name, pflag.ContinueOnError)
	c.Flags.SortFlags = false
	c.Flags.SetOutput(io.Discard)
	c.Flags.Usage = func() {}
	c.Flags.BoolVarP(&c.help, "help", "h", false, "print this help and exit")
	c.Flags.BoolVar(&c.version, "version", false, "print the version and exit")
	c.Flags.BoolVar(&c.debug, "debug", false, "log debug messages too")
	return c
}

// Debug reports whether --debug was given (or set on Flags since).
func (c *Command) Debug() bool { return c.debug }

// Log sets up the command's log on w, stderr: a LogHandler at info level,
// debug with --debug, made slog's default logger, which the packages that
// take no logger of their own log through, and which those that take one
// use when given none. It returns the handler, for a command whose log
// moves elsewhere later.
func (c *Command) Log(w io.Writer) *LogHandler {
	level := slog.LevelInfo
	if c.debug {
		level = slog.LevelDebug
	}
	h := NewLogHandler(c.prog(), w, level)
	slog.SetDefault(slog.New(h))
	return h
}

// Parse parses args, the command line after the command's name. It
// returns ErrHelp or ErrVersion when those were asked for and the line
// parsed, and a *UsageError when it did not.
func (c *Command) Parse(args []string) error {
	if err := c.Flags.Parse(args); err != nil {
		return &UsageError{err.Error()}
	}
	switch {
	case c.help:
		return ErrHelp
	case c.version:
		return ErrVersion
	}
	return nil
}

// prog is the program's name, the first word of Name.
func (c *Command) prog() string {
	p, _, _ := strings.Cut(c.Name, " ")
	return p
}

// WriteHelp writes the help text: the synopsis, the paragraph and the
// options, each value option with its placeholder.
func (c *Command) WriteHelp(w io.Writer) error {
	var b strings.Builder
	for i, s := range c.Synopsis {
		lead := "Usage: "
		if i > 0 {
			lead = "       "
		}
		fmt.Fprintf(&b, "%s%s %s\n", lead, c.Name, s)
	}
	b.WriteString("\n" + strings.TrimSpace(c.About) + "\n")
	if more := strings.TrimSpace(c.More); more != "" {
		b.WriteString("\n" + more + "\n")
	}
	b.WriteString("\nOptions:\n")
	writeOptions(&b, c.Flags)
	_, err := io.WriteString(w, b.String())
	return err
}

// writeOptions lists the options, one or more lines each: "-s, --name
// PLACEHOLDER", then the description (and the default, if not the zero
// value) in a column of its own, wrapped at helpWidth. pflag's own list
// says "[=true|false]" after every switch; this one does not.
func writeOptions(b *strings.Builder, fl *pflag.FlagSet) {
	type option struct{ left, text string }
	var opts []option
	width := 0
	fl.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		left := "    "
		if f.Shorthand != "" {
			left = "-" + f.Shorthand + ", "
		}
		left += "--" + f.Name
		placeholder, text := pflag.UnquoteUsage(f)
		if f.Value.Type() == "bool" {
			placeholder = ""
		}
		if placeholder != "" {
			left += " " + placeholder
		}
		if d := f.DefValue; f.Value.Type() != "bool" && d != "" && d != "0" && d != "[]" {
			text += " (default " + d + ")"
		}
		opts = append(opts, option{left, text})
		width = max(width, len(left))
	})
	// Descriptions start three columns after the longest option, unless
	// that leaves them too little room: then a long option has its
	// description start on the next line.
	col := min(2+width+3, helpWidth/2)
	for _, o := range opts {
		b.WriteString("  " + o.left)
		at := 2 + len(o.left)
		if at+2 > col {
			b.WriteString("\n")
			at = 0
		}
		b.WriteString(strings.Repeat(" ", col-at))
		at = col
		for i, word := range strings.Fields(o.text) {
			if i > 0 && at+1+len(word) > helpWidth {
				b.WriteString("\n" + strings.Repeat(" ", col))
				at = col
			} else if i > 0 {
				b.WriteString(" ")
				at++
			}
			b.WriteString(word)
			at += len(word)
		}
		b.WriteString("\n")
	}
}

// Exit reports how the command ended and returns its exit status: after
// ErrHelp the help on stdout, after ErrVersion the version line, both 0;
// after a *UsageError one line on stderr pointing at --help, 2; after any
// other error "PROG: ERROR" on stderr, 1; after nil nothing, 0.
func (c *Command) Exit(err error, stdout, stderr io.Writer) int {
	var ue *UsageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrHelp):
		if werr := c.WriteHelp(stdout); werr != nil {
			fmt.Fprintf(stderr, "%s: writing help: %v\n", c.prog(), werr)
			return ExitFailure
		}
		return 0
	case errors.Is(err, ErrVersion):
		if _, werr := fmt.Fprintln(stdout, Version(c.prog())); werr != nil {
			fmt.Fprintf(stderr, "%s: writing version: %v\n", c.prog(), werr)
			return ExitFailure
		}
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "%s: %s (see %s --help)\n", c.prog(), ue.Msg, c.Name)
		return ExitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", c.prog(), err)
	return ExitFailure
}
