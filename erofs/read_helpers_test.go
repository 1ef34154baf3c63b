package erofs

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/golden"
)

func openGolden(t testing.TB, path string) *Image {
	t.Helper()
	im, err := Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

// goldenDir, goldenImages and readGz are this package's names for the
// shared golden-data helpers.
func goldenDir(t testing.TB) string { return golden.Dir(t) }

func goldenImages(t testing.TB) (c, v2 []string) { return golden.CImages(t), golden.V2Images(t) }

func readGz(t testing.TB, path string) []byte { return golden.Read(t, path) }

// dumpImage renders the image as composefs-info dump does.
func dumpImage(t testing.TB, im *Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := dumpfile.NewWriter(&buf)
	if err := im.Walk(w.Write); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func imageName(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".cfs")
}
