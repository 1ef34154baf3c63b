package dumpfile

import (
	"bytes"
	"github.com/composefs/composefs-go/internal/golden"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fuzzSeedMax keeps seeds small enough for the fuzzer to mutate quickly;
// bigger golden files contribute their beginning.
const fuzzSeedMax = 16 << 10

// FuzzParse: the parser never panics, and whatever ParseAll accepts prints
// (Write) to text that parses back to the same entries and prints the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(rootLine), false)
	f.Add([]byte(rootLine+"/a 3 @100644 1 0 0 0 0.0 /b - -\n/b 3 100644 1 0 0 0 0.0 - abc -"), true)
	// Seeds are optional: without the golden data the fuzzer still runs.
	dir := filepath.Join("..", "..", "shared", "golden")
	var files []string
	for _, pattern := range []string{"c/dumps/*", "c/should-fail/*", "c/info/*.v1.dump.gz", "fuzz-seeds/*"} {
		m, _ := filepath.Glob(filepath.Join(dir, pattern))
		files = append(files, m...)
	}
	for _, file := range files {
		if st, err := os.Stat(file); err != nil || !st.Mode().IsRegular() {
			continue
		}
		data := golden.Read(f, file)
		if len(data) > fuzzSeedMax {
			data = data[:fuzzSeedMax]
		}
		f.Add(data, false)
		f.Add(data, true)
	}
	f.Fuzz(func(t *testing.T, data []byte, strict bool) {
		opts := ParseOptions{Strict: strict}
		// The streaming parser alone, which has fewer rules.
		p := NewParser(bytes.NewReader(data), opts)
		for {
			if _, err := p.Next(); err != nil {
				break
			}
		}
		entries, err := ParseAll(bytes.NewReader(data), opts)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteAll(&out, entries); err != nil {
			t.Fatalf("Write of accepted entries: %v", err)
		}
		again, err := ParseAll(bytes.NewReader(out.Bytes()), ParseOptions{Strict: true})
		if err != nil {
			t.Fatalf("reparse: %v\ninput: %q\nwritten: %q", err, data, out.Bytes())
		}
		if !reflect.DeepEqual(entries, again) {
			t.Fatalf("round trip changed entries\ninput: %q\nwritten: %q", data, out.Bytes())
		}
		var out2 bytes.Buffer
		if err := WriteAll(&out2, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("second write differs")
		}
		// The streaming parser yields exactly what ParseAll returned.
		var streamed []Entry
		if err := Parse(bytes.NewReader(out.Bytes()), opts, func(e *Entry) error {
			streamed = append(streamed, *e)
			return nil
		}); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(streamed, again) {
			t.Fatal("Parse and ParseAll disagree")
		}
	})
}
