package erofs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/golden"
)

// TestGoldenV2: composefs-rs' V2 images read back as the dumps they were
// made from. Directory sizes are the only difference: a dump may give any,
// the image holds the EROFS directory size.
func TestGoldenV2(t *testing.T) {
	_, v2 := goldenImages(t)
	if len(v2) == 0 {
		golden.Skip(t, "no V2 golden images")
	}
	d := goldenDir(t)
	for _, path := range v2 {
		name := strings.TrimSuffix(imageName(path), ".v2")
		t.Run(name, func(t *testing.T) {
			im := openGolden(t, path)
			if v := im.Header().ComposefsVersion; v != ComposefsVersion2 {
				t.Fatalf("composefs_version %d", v)
			}
			f, err := os.Open(filepath.Join(d, "c", "dumps", name+".dump"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			want, err := dumpfile.ParseAll(f, dumpfile.ParseOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []dumpfile.Entry
			if err := im.Walk(func(e *dumpfile.Entry) error { got = append(got, *e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d entries, dump has %d", len(got), len(want))
			}
			for i := range got {
				g, w := got[i], want[i]
				if g.IsDir() {
					g.Size, w.Size = 0, 0
				}
				if len(w.Xattrs) == 0 {
					w.Xattrs = nil
				}
				if len(w.Content) == 0 {
					w.Content = nil
				}
				if !reflect.DeepEqual(g, w) {
					t.Errorf("entry %d:\n got %+v\nwant %+v", i, g, w)
				}
			}
		})
	}
}
