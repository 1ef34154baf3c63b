package source

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleRegistriesConf = `# A registries.conf as distributions ship it, trimmed.
unqualified-search-registries = [
  "registry.fedoraproject.org",  # comment in an array
  'quay.io',
  "docker.io",
]
short-name-mode = "enforcing"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"

[[registry]]
prefix = "example.com/foo"
location = "internal.example.com:5000/foo"
insecure = true
blocked = false

[[registry.mirror]]
location = "mirror.example.com"
insecure = false

[[registry]]
location = "localhost:5000" # trailing comment
insecure = true

[[registry]]
location = "*.lan"
insecure = true

[[registry]]
location = "secure.lan"
insecure = false

[registries.insecure]
registries = ["old.example.org"]
`

func TestParseRegistriesConf(t *testing.T) {
	entries, err := parseRegistriesConf([]byte(sampleRegistriesConf))
	if err != nil {
		t.Fatal(err)
	}
	rc := &registriesConf{entries: entries}
	for repo, want := range map[string]bool{
		// A prefix served by another location is a rewrite, which a
		// pull does not follow; insecure is the location's, so
		// neither is insecure here.
		"example.com/foo":                 false,
		"example.com/foo/bar":             false,
		"example.com/foobar":              false,
		"internal.example.com:5000/foo/x": false,
		"mirror.example.com/x":            false,
		"localhost:5000/a/b":              true,
		"localhost:5001/a":                false,
		"box.lan/x":                       true,
		"box.lan:8080/x":                  true,
		"secure.lan/x":                    false, // the longer prefix wins
		"old.example.org/x":               true,
		"index.docker.io/library/alpine":  false,
	} {
		if got := rc.insecure(repo); got != want {
			t.Errorf("insecure(%q) = %v, want %v", repo, got, want)
		}
	}
}

// TestRegistriesConfDropIns: drop-ins are read after the file, in name
// order, and replace its tables of the same prefix; a missing file or
// directory is none.
func TestRegistriesConfDropIns(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	rc, err := loadRegistriesConf(conf)
	if err != nil || rc.insecure("a.io/x") {
		t.Fatalf("missing file: %v, %v", rc, err)
	}
	write := func(name, text string) {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(conf, "[[registry]]\nlocation = \"a.io\"\ninsecure = true\n")
	write(filepath.Join(conf+".d", "10-b.conf"), "[[registry]]\nlocation = \"b.io\"\ninsecure = true\n")
	write(filepath.Join(conf+".d", "20-a.conf"), "[[registry]]\nlocation = \"a.io\"\ninsecure = false\n")
	write(filepath.Join(conf+".d", "30-ignored.txt"), "not toml [[[")
	if rc, err = loadRegistriesConf(conf); err != nil {
		t.Fatal(err)
	}
	if rc.insecure("a.io/x") || !rc.insecure("b.io/x") {
		t.Errorf("a.io insecure %v (want false, a drop-in says so), b.io %v", rc.insecure("a.io/x"), rc.insecure("b.io/x"))
	}
	write(filepath.Join(conf+".d", "40-bad.conf"), "[[registry]]\ninsecure = yes\n")
	if _, err := loadRegistriesConf(conf); err == nil || !strings.Contains(err.Error(), "40-bad.conf: line 2") {
		t.Errorf("bad drop-in: %v", err)
	}
}

func TestParseRegistriesConfErrors(t *testing.T) {
	for _, c := range []struct{ text, says string }{
		{"[[registry]]\nlocation = 5\n", "line 2: location is not a string"},
		{"[[registry]]\ninsecure = \"yes\"\n", "line 2: insecure is not true or false"},
		{"[[registry]\n", "line 1"},
		{"a = [1,\n2\n", "line 1: a: value not closed at the end of the file"},
		{"a = \"x\n", "line 1: a: string not closed"},
		{"a = \"\"\"x\"\"\"\n", "multi-line strings"},
		{"just words\n", "line 1: want key = value"},
		{"a = 1 2\n", "after the value"},
		{"a = " + strings.Repeat("[", 40) + "\n", "nested"},
	} {
		_, err := parseRegistriesConf([]byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%q: error %v, want %q", c.text, err, c.says)
		}
	}
}

// FuzzRegistriesConf: the reader never panics, and what it accepts it
// accepts again with comments and blank lines between the lines.
func FuzzRegistriesConf(f *testing.F) {
	f.Add(sampleRegistriesConf)
	f.Add("[[registry]]\nlocation='x'\ninsecure=true\n")
	f.Add("a = {b = [1, {c = 'd'}], e = \"\\u00e9\"}\n")
	f.Fuzz(func(t *testing.T, text string) {
		entries, err := parseRegistriesConf([]byte(text))
		if err != nil {
			return
		}
		rc := &registriesConf{entries: entries}
		rc.insecure("a.io/b")
		spaced := strings.ReplaceAll(text, "\n", "\n\n# c\n")
		if again, err := parseRegistriesConf([]byte(spaced)); err == nil && len(again) != len(entries) {
			t.Fatalf("%d entries, %d with comments between lines", len(entries), len(again))
		}
	})
}
