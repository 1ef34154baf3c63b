package clitest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/composefs/composefs-go/internal/cli"
)

// Man is a man page as ManPage read it: the words of every .TP tag, by
// the section (.SH) it is in, with roff's escapes taken out ("\-\-basedir"
// is "--basedir", ".BI basedir= DIR" is "basedir=" and "DIR").
type Man struct {
	Path string
	Tags map[string]map[string]bool
}

// Tagged reports whether a .TP tag of section (any section when "") has
// word.
func (m *Man) Tagged(section, word string) bool {
	for s, words := range m.Tags {
		if (section == "" || s == section) && words[word] {
			return true
		}
	}
	return false
}

// ManPath is where the man page of prog is kept: docs/man/PROG.1 under the
// module's root, found from the test's directory.
func ManPath(t *testing.T, prog string) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "docs", "man", prog+".1")
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatalf("no go.mod above the test's directory")
		}
		dir = up
	}
}

// ManPage checks the man page of c's program: plain ASCII roff whose .TH
// names the program in section 1, rendered by groff without a warning
// (that part skips when groff is not installed), and with a .TP entry for
// every option c.Flags defines and c's help lists, "--name" with its
// "-s" when it has one. It returns the page for checks of the command's
// own (subcommands, mount options).
func ManPage(t *testing.T, c *cli.Command) *Man {
	t.Helper()
	prog, _, _ := strings.Cut(c.Name, " ")
	m := &Man{Path: ManPath(t, prog), Tags: map[string]map[string]bool{}}
	src, err := os.ReadFile(m.Path)
	if err != nil {
		t.Fatalf("%s has no man page: %v", prog, err)
	}
	for i, b := range src {
		if b >= 0x80 || b < ' ' && b != '\n' && b != '\t' {
			t.Errorf("%s: byte %#x at offset %d: the page must be ASCII (roff escapes for the rest)", m.Path, b, i)
			break
		}
	}
	lines := strings.Split(string(src), "\n")
	if th := strings.Fields(lines[0]); len(th) < 3 || th[0] != ".TH" || th[1] != strings.ToUpper(prog) || th[2] != "1" {
		t.Errorf("%s: first line %q, want .TH %s 1 ...", m.Path, lines[0], strings.ToUpper(prog))
	}
	section := ""
	for i, l := range lines {
		if strings.HasPrefix(l, ".SH ") {
			section = strings.Trim(strings.TrimSpace(l[4:]), `"`)
		}
		if l != ".TP" || i+1 == len(lines) {
			continue
		}
		if m.Tags[section] == nil {
			m.Tags[section] = map[string]bool{}
		}
		for _, w := range tagWords(lines[i+1]) {
			m.Tags[section][w] = true
		}
	}
	c.Flags.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if !m.Tagged("", "--"+f.Name) {
			t.Errorf("%s: --%s (in %s --help) has no .TP entry in the page", m.Path, f.Name, c.Name)
		} else if f.Shorthand != "" && !m.Tagged("", "-"+f.Shorthand) {
			t.Errorf("%s: the entry of --%s does not give its short form -%s", m.Path, f.Name, f.Shorthand)
		}
	})
	t.Run("render", func(t *testing.T) { renderMan(t, m.Path) })
	return m
}

// roffEscape matches the escapes a tag may hold that are no text: font
// changes, zero-width characters and the end-of-input continuation.
var roffEscape = regexp.MustCompile(`\\f[BIRP]|\\f\([A-Z]{2}|\\&|\\%|\\c`)

// tagWords splits a tag line into words: the macro name is dropped, its
// quoted arguments kept whole, "\-" read as "-", and each word also
// counted without the punctuation around it (",", "(", ")").
func tagWords(line string) []string {
	line = roffEscape.ReplaceAllString(line, "")
	line = strings.ReplaceAll(line, `\-`, "-")
	if strings.HasPrefix(line, ".") {
		_, line, _ = strings.Cut(line, " ")
	}
	var words []string
	for _, w := range strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '"' }) {
		words = append(words, w)
		if t := strings.Trim(w, ",()"); t != w && t != "" {
			words = append(words, t)
		}
		// "-o, --options": the short form and the long one alike.
		for _, part := range strings.Split(w, ",") {
			if part != "" && part != w {
				words = append(words, part)
			}
		}
	}
	return words
}

// renderMan formats the page with groff's man macros and every warning on:
// any output on stderr fails.
func renderMan(t *testing.T, page string) {
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Skipf("groff is not installed (apt-get install groff-base): %s not rendered", page)
	}
	cmd := exec.Command(groff, "-man", "-ww", "-z", "-Tutf8", page)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("groff -man -ww %s: %v\n%s", page, err, stderr.String())
	}
}
