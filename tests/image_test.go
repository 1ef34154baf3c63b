package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/testobj"
)

// writeImage writes the image of a dumpfile text with the project's writer
// and returns its path.
func writeImage(t testing.TB, dump string, version int) string {
	t.Helper()
	entries, err := dumpfile.ParseAll(strings.NewReader(dump), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatalf("dumpfile: %v", err)
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, entries, erofs.WriteOptions{MinVersion: version, MaxVersion: version}); err != nil {
		t.Fatalf("erofs.Write: %v", err)
	}
	p := filepath.Join(tempDir(t, "image"), "image.cfs")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// object is the content of an external file and its place in a flat store.
type object = testobj.Object

var newObject = testobj.New
