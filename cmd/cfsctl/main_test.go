package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/internal/cli/clitest"
)

// cfsctl runs the command in process.
func cfsctl(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// leaves is every runnable command, with the words that name it.
func leaves() map[string]*command {
	all := map[string]*command{}
	var walk func(list []*command)
	walk = func(list []*command) {
		for _, c := range list {
			if c.isGroup() {
				walk(c.sub)
				continue
			}
			all[c.fullName()] = c
		}
	}
	walk(commands)
	return all
}

// leafHelp is the command line of leaf with its options defined, as run
// sets it up.
func leafHelp(l *command) *cli.Command {
	c := leafCommand(l)
	l.setup(c)
	return c
}

// TestCommandLine: --help and --version of cfsctl and every command; a
// bad option is one line pointing at the command's own help.
func TestCommandLine(t *testing.T) {
	var g globals
	clitest.Check(t, topCommand(&g), cfsctl)
	for name, l := range leaves() {
		words := strings.Fields(name)
		c := leafHelp(l)
		clitest.Help(t, c, cfsctl, words...)
		msg := clitest.Usage(t, c.Name, cfsctl, append(words, "--frob")...)
		if !strings.Contains(msg, c.Name+" --help") {
			t.Errorf("%s: usage error %q does not point at its help", name, msg)
		}
		if _, out, _ := cfsctl("--help"); !strings.Contains(out, " "+l.name+" ") {
			t.Errorf("cfsctl --help does not list %q", name)
		}
	}
	if code, out, _ := cfsctl("oci", "--help"); code != 0 || !strings.Contains(out, "Usage: cfsctl oci COMMAND") {
		t.Errorf("oci --help: exit %d:\n%s", code, out)
	}
	for _, bad := range [][]string{
		{}, {"frob"}, {"oci"}, {"oci", "frob"},
		{"--repo", "a", "--user", "images"},
		{"init", "a", "b"},
		{"--hash", "md5", "init", t.TempDir()},
		{"init", "--algorithm", "fsverity-md5-12", t.TempDir()},
		{"mount", "only-one"},
	} {
		clitest.Usage(t, "cfsctl", cfsctl, bad...)
	}
}

// TestManPage: the man page has every option of every command.
func TestManPage(t *testing.T) {
	var g globals
	m := clitest.ManPage(t, topCommand(&g))
	for name, l := range leaves() {
		c := leafHelp(l)
		c.Flags.VisitAll(func(f *pflag.Flag) {
			if !f.Hidden && !m.Tagged("", "--"+f.Name) {
				t.Errorf("%s: the man page has no entry for --%s", name, f.Name)
			}
		})
		if !strings.Contains(strings.ReplaceAll(readFile(t, m.Path), `\-`, "-"), name) {
			t.Errorf("the man page does not name the command %q", name)
		}
	}
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestInitAndImages: init makes a private repository with composefs-rs's
// meta.json, once; images lists what it has.
func TestInitAndImages(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "repo")
	if code, _, errOut := cfsctl("--hash", "sha256", "init", dir); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errOut)
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o700 {
		t.Errorf("repository mode %v, want 0700", st.Mode().Perm())
	}
	if meta := readFile(t, filepath.Join(dir, "meta.json")); !strings.Contains(meta, `"fsverity-sha256-12"`) {
		t.Errorf("meta.json does not say sha256:\n%s", meta)
	}
	// Again with the same algorithm: nothing to do; with another: refused.
	if code, _, errOut := cfsctl("--repo", dir, "init", "--algorithm", "fsverity-sha256-12"); code != 0 {
		t.Errorf("init again: exit %d: %s", code, errOut)
	}
	if code, _, errOut := cfsctl("--repo", dir, "init", "--algorithm", "sha512"); code != 1 || !strings.Contains(errOut, "sha256") {
		t.Errorf("init with another algorithm: exit %d, stderr %q", code, errOut)
	}
	code, out, errOut := cfsctl("--repo", dir, "images", "--json")
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("images --json of an empty repository: exit %d, %q, %q", code, out, errOut)
	}
	missing := filepath.Join(t.TempDir(), "none")
	if code, _, errOut := cfsctl("--repo", missing, "images"); code != 1 || !strings.Contains(errOut, "cfsctl init") {
		t.Errorf("images of no repository: exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(missing); err == nil {
		t.Errorf("images made the repository it was asked to read")
	}
}
