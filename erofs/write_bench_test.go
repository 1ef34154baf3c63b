package erofs

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/golden"
)

// largestGoldenDump parses the largest golden input dump (by its file
// size, gzipped or not).
func largestGoldenDump(b *testing.B) (string, []dumpfile.Entry) {
	b.Helper()
	dir := filepath.Join(golden.Dir(b), "c", "dumps")
	paths, _ := filepath.Glob(filepath.Join(dir, "*.dump*"))
	var best string
	var size int64
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			best, size = p, st.Size()
		}
	}
	if best == "" {
		b.Skip("no golden dumps")
	}
	name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(best), ".gz"), ".dump")
	entries, err := dumpfile.ParseAll(bytes.NewReader(golden.Dump(b, name)), dumpfile.ParseOptions{})
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	return name, entries
}

// BenchmarkWrite writes the image of the largest golden dump (parsed once)
// in C's layout (versions 0..1, mkcomposefs' default) and in version 2.
// Bytes per second are image bytes.
func BenchmarkWrite(b *testing.B) {
	name, entries := largestGoldenDump(b)
	for _, c := range []struct {
		label string
		opts  WriteOptions
	}{{"c-default", WriteOptions{MinVersion: 0, MaxVersion: 1}}, {"v2", WriteOptions{MinVersion: 2, MaxVersion: 2}}} {
		b.Run(c.label, func(b *testing.B) {
			var n countingWriter
			if err := Write(&n, entries, c.opts); err != nil {
				b.Fatal(err)
			}
			b.Logf("%s: %d entries, %d-byte image", name, len(entries), n)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if err := Write(io.Discard, entries, c.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseAndWrite is mkcomposefs --from-file without the file
// system: dumpfile text to image bytes.
func BenchmarkParseAndWrite(b *testing.B) {
	name, _ := largestGoldenDump(b)
	text := golden.Dump(b, name)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		entries, err := dumpfile.ParseAll(bytes.NewReader(text), dumpfile.ParseOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := Write(io.Discard, entries, WriteOptions{MinVersion: 0, MaxVersion: 1}); err != nil {
			b.Fatal(err)
		}
	}
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}
