package erofs

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// FuzzWrite feeds dumpfiles, with only the per-line rules applied, to the
// writer in every version: it must never panic, refuse bad trees with
// ErrInvalidTree, and whatever it writes must read back and write again.
// When the seed corpus runs as a test, fsck.erofs checks every image too
// (not while fuzzing: a process per input would be most of the time).
func FuzzWrite(f *testing.F) {
	fsck := ""
	if fl := flag.Lookup("test.fuzz"); fl == nil || fl.Value.String() == "" {
		fsck = fsckPath(f)
	}
	d := filepath.Join("..", "..", "shared", "golden")
	for _, pattern := range []string{"c/dumps/*.dump", "c/should-fail/*.dump", "fuzz-seeds/*"} {
		paths, _ := filepath.Glob(filepath.Join(d, pattern))
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(b) < 64<<10 {
				f.Add(b)
			}
		}
	}
	f.Add([]byte("/ 0 40755 2 0 0 0 0.0 - - -\n/a 0 @100644 - - - - 0.0 /b - -\n/b 0 @100644 - - - - 0.0 /a - -\n"))
	f.Add([]byte("/ 0 40755 2 0 0 0 0.0 - - -\n/w 0 20000 1 0 0 0 0.0 - - -\n/x 5 100644 1 70000 0 0 5.5 - hello -\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []dumpfile.Entry
		err := dumpfile.Parse(bytes.NewReader(data), dumpfile.ParseOptions{}, func(e *dumpfile.Entry) error {
			entries = append(entries, *e)
			return nil
		})
		if err != nil || len(entries) > 2000 {
			return
		}
		for _, opts := range []WriteOptions{{0, 1}, {2, 2}} {
			var buf bytes.Buffer
			if err := Write(&buf, entries, opts); err != nil {
				if !errors.Is(err, ErrInvalidTree) {
					t.Fatalf("%+v: error not wrapping ErrInvalidTree: %v", opts, err)
				}
				continue
			}
			img := buf.Bytes()
			fsckImage(t, fsck, img)
			im, err := NewImage(img)
			if err != nil {
				t.Fatalf("%+v: written image does not open: %v", opts, err)
			}
			var back []dumpfile.Entry
			if err := im.Walk(func(e *dumpfile.Entry) error {
				back = append(back, *e)
				return nil
			}); err != nil {
				t.Fatalf("%+v: written image does not walk: %v", opts, err)
			}
			v := int(im.Header().ComposefsVersion)
			var again bytes.Buffer
			if err := Write(&again, back, WriteOptions{MinVersion: v, MaxVersion: v}); err != nil {
				t.Fatalf("%+v: read-back tree does not write: %v", opts, err)
			}
		}
	})
}
