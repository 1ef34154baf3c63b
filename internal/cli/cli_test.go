package cli

import (
	"bytes"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	rev := "930a697c0ffe1234567890abcdef1234567890ab"
	for _, tc := range []struct {
		version  string
		settings []debug.BuildSetting
		want     string
	}{
		{"", nil, "(devel) revision unknown"},
		{"v1.2.3", nil, "v1.2.3 revision unknown"},
		{"(devel)", []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.time", Value: "2025-12-06T21:14:03Z"},
			{Key: "vcs.modified", Value: "true"},
		}, "(devel) revision 930a697c0ffe+dirty 2025-12-06T21:14:03Z"},
		{"v0.1.0", []debug.BuildSetting{
			{Key: "vcs.revision", Value: rev},
			{Key: "vcs.modified", Value: "false"},
		}, "v0.1.0 revision 930a697c0ffe"},
	} {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/composefs/composefs-go", Version: tc.version}, Settings: tc.settings}
		if got := describe(bi); got != tc.want {
			t.Errorf("describe(%q, %v) = %q, want %q", tc.version, tc.settings, got, tc.want)
		}
	}
	if v := Version("mkcomposefs"); !strings.HasPrefix(v, "mkcomposefs ") || strings.Contains(v, "\n") {
		t.Errorf("Version = %q", v)
	}
}

func testCommand() (*Command, *int) {
	c := New("tool sub", "Do the thing.", "[OPTIONS] FILE", "--other FILE")
	c.More = "Commands:\n  a   the first"
	n := c.Flags.Int("count", 3, "do it `N` times")
	c.Flags.String("dir", "", "work in `DIR`")
	return c, n
}

func TestParseAndExit(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		run            error // what the command makes of a good line
		code           int
		stdout, stderr string
	}{
		{args: []string{"f"}, code: 0},
		{args: []string{"f"}, run: errors.New("f: no such file"), code: 1, stderr: "tool: f: no such file\n"},
		{args: []string{"f"}, run: fmt.Errorf("wrapped: %w", Usagef("want one FILE")), code: 2, stderr: "tool: want one FILE (see tool sub --help)\n"},
		{args: []string{"--count=x"}, code: 2, stderr: "tool: invalid argument \"x\" for \"--count\" flag: must be an integer (see tool sub --help)\n"},
		{args: []string{"--nope", "--help"}, code: 2, stderr: "tool: unknown flag: --nope (see tool sub --help)\n"},
		{args: []string{"--dir"}, code: 2, stderr: "tool: flag needs an argument: --dir (see tool sub --help)\n"},
		{args: []string{"--version", "x", "y"}, code: 0, stdout: Version("tool") + "\n"},
	} {
		c, _ := testCommand()
		err := c.Parse(tc.args)
		if err == nil {
			err = tc.run
		}
		var o, e bytes.Buffer
		code := c.Exit(err, &o, &e)
		if code != tc.code || o.String() != tc.stdout || e.String() != tc.stderr {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, o.String(), e.String(), tc.code, tc.stdout, tc.stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	c, n := testCommand()
	err := c.Parse([]string{"--count", "5", "-h"})
	if !errors.Is(err, ErrHelp) || *n != 5 {
		t.Fatalf("Parse: %v, count %d", err, *n)
	}
	var o, e bytes.Buffer
	if code := c.Exit(err, &o, &e); code != 0 || e.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, e.String())
	}
	want := `Usage: tool sub [OPTIONS] FILE
       tool sub --other FILE

Do the thing.

Commands:
  a   the first

Options:
  -h, --help      print this help and exit
      --version   print the version and exit
      --debug     log debug messages too
      --count N   do it N times (default 3)
      --dir DIR   work in DIR
`
	if o.String() != want {
		t.Errorf("help:\n%s\nwant:\n%s", o.String(), want)
	}
}
