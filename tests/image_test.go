package tests

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/internal/fixture"
)

// writeImage writes the image of a dumpfile text with the project's writer
// and returns its path.
func writeImage(t testing.TB, dump string, version int) string {
	t.Helper()
	p := filepath.Join(tempDir(t, "image"), "image.cfs")
	if err := os.WriteFile(p, fixture.Image(t, dump, version), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// object is the content of an external file and its place in a flat store.
type object = fixture.Object

var newObject = fixture.NewObject
