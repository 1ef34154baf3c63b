package erofs

import (
	"strings"
	"testing"
	"testing/fstest"

	"github.com/composefs/composefs-go/dumpfile"
)

// TestGoldenFS runs testing/fstest over the FS view of every golden image,
// expecting every path the dump view shows.
func TestGoldenFS(t *testing.T) {
	c, v2 := goldenImages(t)
	for _, path := range append(c, v2...) {
		t.Run(imageName(path), func(t *testing.T) {
			im := openGolden(t, path)
			var expect []string
			err := im.Walk(func(e *dumpfile.Entry) error {
				if e.Path != "/" {
					expect = append(expect, strings.TrimPrefix(e.Path, "/"))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if testing.Short() && len(expect) > 1000 {
				t.Skipf("short: %d files", len(expect))
			}
			if err := fstest.TestFS(im.FS(), expect...); err != nil {
				t.Fatal(err)
			}
		})
	}
}
