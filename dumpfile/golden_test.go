package dumpfile

import (
	"bufio"
	"bytes"
	"github.com/composefs/composefs-go/internal/golden"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// strictInputs reads manifest.tsv: for each input dump name, whether C
// built it with CFS_PARSE_STRICT=1.
func strictInputs(t testing.TB, gdir string) map[string]bool {
	t.Helper()
	f, err := os.Open(filepath.Join(gdir, "c", "manifest.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	strict := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 4 || strings.HasPrefix(cols[0], "#") {
			continue
		}
		strict[cols[0]] = cols[3] == "1"
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return strict
}

func dumpName(file string) string {
	name := filepath.Base(file)
	name = strings.TrimSuffix(name, ".gz")
	return strings.TrimSuffix(name, ".dump")
}

// TestGoldenDumpsParse: every input dump C accepted parses, in strict mode
// where C was run strict, and prints back to entries that parse equal.
func TestGoldenDumpsParse(t *testing.T) {
	gdir := golden.Dir(t)
	strict := strictInputs(t, gdir)
	files, _ := filepath.Glob(filepath.Join(gdir, "c", "dumps", "*"))
	if len(files) == 0 {
		t.Fatal("no golden dumps")
	}
	for _, file := range files {
		name := dumpName(file)
		t.Run(name, func(t *testing.T) {
			s, ok := strict[name]
			if !ok {
				t.Fatalf("%s not in manifest.tsv", name)
			}
			data := golden.Read(t, file)
			entries, err := ParseAll(bytes.NewReader(data), ParseOptions{Strict: s})
			if err != nil {
				t.Fatalf("strict=%v: %v", s, err)
			}
			if !s {
				if _, err := ParseAll(bytes.NewReader(data), ParseOptions{Strict: true}); err == nil {
					t.Errorf("C needed non-strict mode, but strict parsing accepted it")
				}
			}
			var buf bytes.Buffer
			if err := WriteAll(&buf, entries); err != nil {
				t.Fatal(err)
			}
			again, err := ParseAll(bytes.NewReader(buf.Bytes()), ParseOptions{Strict: true})
			if err != nil {
				t.Fatalf("reparse: %v", err)
			}
			if !reflect.DeepEqual(entries, again) {
				t.Fatalf("round trip changed entries")
			}
		})
	}
}

// TestGoldenInfoRoundTrip: composefs-info dump output parses and prints back
// byte for byte.
func TestGoldenInfoRoundTrip(t *testing.T) {
	gdir := golden.Dir(t)
	files, _ := filepath.Glob(filepath.Join(gdir, "c", "info", "*.dump.gz"))
	if len(files) == 0 {
		t.Fatal("no golden info dumps")
	}
	for _, file := range files {
		t.Run(dumpName(file), func(t *testing.T) {
			data := golden.Read(t, file)
			entries, err := ParseAll(bytes.NewReader(data), ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteAll(&buf, entries); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), data) {
				got, want := strings.Split(buf.String(), "\n"), strings.Split(string(data), "\n")
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("line %d differs:\n got %.300q\nwant %.300q", i+1, got[i], want[i])
					}
				}
				t.Fatalf("output has %d lines, want %d", len(got), len(want))
			}
		})
	}
}

// TestGoldenShouldFail: every dump C refuses, we refuse, naming the line.
func TestGoldenShouldFail(t *testing.T) {
	gdir := golden.Dir(t)
	files, _ := filepath.Glob(filepath.Join(gdir, "c", "should-fail", "*"))
	if len(files) == 0 {
		t.Fatal("no should-fail dumps")
	}
	// The line each case fails on and a word of the reason.
	want := map[string]struct {
		line         int
		reason       string
		strictReason string // when strict mode fails first for another reason
	}{
		"should-fail-big-inline":           {2, "inline content size 5004 exceeds maximum 5000", ""},
		"should-fail-dir-hardlink":         {2, "directories can't be hardlinked", ""},
		"should-fail-dot-name":             {2, "invalid . or ..", ""},
		"should-fail-dotdot-name":          {2, "invalid . or ..", ""},
		"should-fail-empty-link-name":      {2, "invalid symlink: empty target", ""},
		"should-fail-empty-name":           {2, "invalid empty file name", ""},
		"should-fail-empty-xattr-key":      {2, "empty xattr name", ""},
		"should-fail-honggfuzz-long-xattr": {1, "more than the maximum 32767", ""},
		"should-fail-long-link":            {2, "symlink target: length", ""},
		"should-fail-long-xattr-key":       {2, "too many xattrs", ""},
		"should-fail-long-xattr-value":     {2, "invalid mode 644", ""},
		"should-fail-no-ftype":             {2, "invalid mode 0", ""},
		"should-fail-self-hardlink":        {2, "self-referential hardlink", "missing trailing newline"},
		"should-fail-too-big":              {2, "exceeds the maximum 9007199254740992", ""},
	}
	for _, file := range files {
		name := dumpName(file)
		t.Run(name, func(t *testing.T) {
			w, ok := want[name]
			if !ok {
				t.Fatalf("new should-fail case %s: add its expected line and reason", name)
			}
			for _, strict := range []bool{false, true} {
				_, err := ParseAll(bytes.NewReader(golden.Read(t, file)), ParseOptions{Strict: strict})
				if err == nil {
					t.Fatalf("strict=%v: accepted", strict)
				}
				var perr *ParseError
				if !asParseError(err, &perr) || perr.Line != w.line {
					t.Fatalf("strict=%v: error %q: want line %d", strict, err, w.line)
				}
				reason := w.reason
				if strict && w.strictReason != "" {
					reason = w.strictReason
				}
				if !strings.Contains(err.Error(), reason) {
					t.Fatalf("strict=%v: error %q: want it to say %q", strict, err, reason)
				}
			}
		})
	}
}
