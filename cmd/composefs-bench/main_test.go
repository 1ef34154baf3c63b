package main

import (
	"bytes"
	"testing"

	"github.com/composefs/composefs-go/internal/cli/clitest"
)

// benchRun runs the command in process, for command lines that end
// before it measures anything.
func benchRun(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	code := run(args, &o, &e)
	return code, o.String(), e.String()
}

// TestCommandLine: --help lists every option, --version names the
// command, a command line it cannot run is one line and exit 2.
func TestCommandLine(t *testing.T) {
	clitest.Check(t, command(&config{}), benchRun)
	for _, args := range [][]string{
		{"--rows=mount,nope"},
		{"--group-runs=nope=2"},
		{"--runs=x"},
		{"extra"},
	} {
		clitest.Usage(t, "composefs-bench", benchRun, args...)
	}
}

// TestManPage: docs/man/composefs-bench.1 renders without warnings and has
// an entry for every option --help lists.
func TestManPage(t *testing.T) {
	clitest.ManPage(t, command(&config{}))
}
