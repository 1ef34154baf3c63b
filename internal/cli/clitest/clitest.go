// Package clitest checks, the same way for every command in cmd/, what
// package cli promises: --help, --version, and one line for a command line
// that cannot be run.
package clitest

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/composefs/composefs-go/internal/cli"
)

// Run runs the command in process with args (after its name) and returns
// its exit status and output.
type Run func(args ...string) (code int, stdout, stderr string)

// Check runs Help, Version and, with an option no command has, Usage.
func Check(t *testing.T, c *cli.Command, run Run) {
	t.Helper()
	Help(t, c, run)
	Version(t, c.Name, run)
	if msg := Usage(t, c.Name, run, "--no-such-option"); !strings.Contains(msg, "--no-such-option") {
		t.Errorf("unknown option: stderr %q does not name it", msg)
	}
}

// Help runs the command with prefix (a subcommand, say) then --help: it
// must exit 0 with nothing on stderr and print c's synopsis, paragraph
// and every option c.Flags defines, each with a description and, when it
// takes a value, an upper-case placeholder.
func Help(t *testing.T, c *cli.Command, run Run, prefix ...string) {
	t.Helper()
	args := append(append([]string(nil), prefix...), "--help")
	code, out, errOut := run(args...)
	if code != 0 || errOut != "" {
		t.Errorf("%q: exit %d, stderr %q", args, code, errOut)
	}
	if len(c.Synopsis) == 0 || !strings.HasPrefix(out, "Usage: "+c.Name+" "+c.Synopsis[0]+"\n") {
		t.Errorf("%q: no synopsis for %q:\n%s", args, c.Name, out)
	}
	if about := strings.TrimSpace(c.About); about == "" || !strings.Contains(out, "\n\n"+about+"\n") {
		t.Errorf("%q: no paragraph on what %q does:\n%s", args, c.Name, out)
	}
	lines := strings.Split(out, "\n")
	c.Flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		placeholder, usage := pflag.UnquoteUsage(f)
		if strings.TrimSpace(usage) == "" {
			t.Errorf("%s: --%s has no description", c.Name, f.Name)
		}
		if f.Value.Type() != "bool" && (placeholder == "" || placeholder != strings.ToUpper(placeholder) || strings.ContainsAny(placeholder, " \t")) {
			t.Errorf("%s: --%s has placeholder %q, want a back-quoted upper-case word in its usage", c.Name, f.Name, placeholder)
		}
		want := "--" + f.Name
		if placeholder != "" {
			want += " " + placeholder
		}
		if f.Shorthand != "" {
			want = "-" + f.Shorthand + ", " + want
		}
		if !listed(lines, want) {
			t.Errorf("%q: option %q not listed:\n%s", args, want, out)
		}
	})
}

// listed reports whether one of lines lists the option as want.
func listed(lines []string, want string) bool {
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == want || strings.HasPrefix(l, want+" ") {
			return true
		}
	}
	return false
}

// Version runs the command with --version: it must exit 0 and print one
// line starting with the command's name.
func Version(t *testing.T, name string, run Run) {
	t.Helper()
	prog, _, _ := strings.Cut(name, " ")
	code, out, errOut := run("--version")
	if code != 0 || errOut != "" {
		t.Errorf("--version: exit %d, stderr %q", code, errOut)
	}
	if !strings.HasPrefix(out, prog+" ") || strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("--version printed %q, want one line naming %s", out, prog)
	}
}

// Usage runs the command with args, a command line that cannot be run:
// it must exit 2 with nothing on stdout and one line on stderr, naming
// the command and pointing at its --help, which Usage returns.
func Usage(t *testing.T, name string, run Run, args ...string) string {
	t.Helper()
	prog, _, _ := strings.Cut(name, " ")
	code, out, errOut := run(args...)
	if code != cli.ExitUsage {
		t.Errorf("%q: exit %d, want %d (stderr %q)", args, code, cli.ExitUsage, errOut)
	}
	if out != "" {
		t.Errorf("%q: stdout %q", args, out)
	}
	if strings.Count(errOut, "\n") != 1 || !strings.HasSuffix(errOut, "\n") ||
		!strings.HasPrefix(errOut, prog+": ") || !strings.Contains(errOut, " --help") {
		t.Errorf("%q: stderr %q, want one line naming %s and pointing at --help", args, errOut, prog)
	}
	return errOut
}
