package composefs

import (
	"fmt"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/objects"
)

// TestCheckObjects: of the image's objects, the ones the store lacks, all
// counted or a sample; without a store, all of them.
func TestCheckObjects(t *testing.T) {
	store := t.TempDir()
	var b strings.Builder
	b.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n")
	b.WriteString("/d 0 40755 2 0 0 0 0.0 - - -\n")
	for i := range 10 {
		o := fixture.NewObject([]byte(fmt.Sprint("object ", i)))
		if i%5 != 0 { // 0 and 5 missing
			o.Put(t, store, o.Content)
		}
		fmt.Fprintf(&b, "/d/f%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(o.Content), o.Payload, o.Digest)
	}
	// A second file of one object, and a file in the image.
	o := fixture.NewObject([]byte("object 0"))
	fmt.Fprintf(&b, "/again %d 100644 1 0 0 0 0.0 %s - %s\n", len(o.Content), o.Payload, o.Digest)
	b.WriteString("/inline 5 100644 1 0 0 0 0.0 - hello -\n")
	img := fixture.Image(t, b.String(), 1)

	flat, err := objects.OpenFlat(store)
	if err != nil {
		t.Fatal(err)
	}
	f, err := OpenBytes(img, Config{Store: flat})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, c := range []struct {
		limit int
		want  ObjectCount
	}{
		{0, ObjectCount{Checked: 10, Missing: 2, All: true}},
		{11, ObjectCount{Checked: 10, Missing: 2, All: true}},
		// The walk meets /again (object 0, missing) first, then f1-f4
		// in /d.
		{5, ObjectCount{Checked: 5, Missing: 1}},
	} {
		got, err := f.CheckObjects(c.limit)
		if err != nil || got != c.want || got.Sampled() != !c.want.All {
			t.Errorf("limit %d: %+v %v, want %+v", c.limit, got, err, c.want)
		}
	}
	none, err := OpenBytes(img, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer none.Close()
	if got, err := none.CheckObjects(0); err != nil || got != (ObjectCount{Checked: 10, Missing: 10, All: true}) {
		t.Errorf("no store: %+v %v", got, err)
	}
}
