package erofs

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// goldenDir is ../shared/golden seen from the repository root.
func goldenDir(t testing.TB) string {
	t.Helper()
	d := filepath.Join("..", "..", "shared", "golden")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("golden data not found at %s: %v", d, err)
	}
	return d
}

// goldenImages lists the C images (NAME.VARIANT.cfs) and the V2 images.
func goldenImages(t testing.TB) (c, v2 []string) {
	d := goldenDir(t)
	c, _ = filepath.Glob(filepath.Join(d, "c", "images", "*.cfs"))
	v2, _ = filepath.Glob(filepath.Join(d, "rs", "*.v2.cfs"))
	if len(c) == 0 {
		t.Skipf("no golden images under %s", d)
	}
	sort.Strings(c)
	sort.Strings(v2)
	return c, v2
}

func readGz(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openGolden(t testing.TB, path string) *Image {
	t.Helper()
	im, err := Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

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
