package erofs

import (
	"bytes"
	"github.com/composefs/composefs-go/internal/golden"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// walkEntries reads an image back into entries with the reader.
func walkEntries(t testing.TB, img []byte) ([]dumpfile.Entry, Header) {
	t.Helper()
	im, err := NewImage(img)
	if err != nil {
		t.Fatalf("NewImage: %v", err)
	}
	defer im.Close()
	var entries []dumpfile.Entry
	if err := im.Walk(func(e *dumpfile.Entry) error {
		entries = append(entries, *e)
		return nil
	}); err != nil {
		t.Fatalf("Walk: %v", err)
	}
	return entries, im.Header()
}

// TestWriteRoundTripGoldenImages: image → reader → writer gives the image
// back, byte for byte, for every golden C image and composefs-rs V2 image.
func TestWriteRoundTripGoldenImages(t *testing.T) {
	d := golden.Dir(t)
	paths, _ := filepath.Glob(filepath.Join(d, "c", "images", "*.cfs"))
	v2, _ := filepath.Glob(filepath.Join(d, "rs", "*.v2.cfs"))
	paths = append(paths, v2...)
	if len(paths) == 0 {
		t.Skip("no golden images")
	}
	ok := 0
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			entries, h := walkEntries(t, want)
			v := int(h.ComposefsVersion)
			got := writeImage(t, entries, WriteOptions{MinVersion: v, MaxVersion: v})
			if !bytes.Equal(got, want) {
				t.Errorf("rewritten image differs (%d bytes, want %d), first difference at %d", len(got), len(want), firstDiff(got, want))
				return
			}
			ok++
		})
	}
	t.Logf("%d of %d golden images round-trip", ok, len(paths))
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestWriteRoundTripOwnImages: the same for our images of ownDump, which
// need no golden data.
func TestWriteRoundTripOwnImages(t *testing.T) {
	for v := range 3 {
		want, _ := ownImage(t, v)
		entries, _ := walkEntries(t, want)
		got := writeImage(t, entries, WriteOptions{MinVersion: v, MaxVersion: v})
		if !bytes.Equal(got, want) {
			t.Errorf("v%d: rewritten image differs (%d bytes, want %d), first difference at %d", v, len(got), len(want), firstDiff(got, want))
		}
	}
}
