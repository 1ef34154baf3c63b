package composefs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
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

// TestImageObjects: every object the image's files name, once each, from
// the image file; a damaged image is an error, not a shorter list.
func TestImageObjects(t *testing.T) {
	var b strings.Builder
	b.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
	want := map[string]bool{}
	for i := range 4 {
		o := fixture.NewObject([]byte(fmt.Sprint("object ", i)))
		want[o.Payload] = true
		fmt.Fprintf(&b, "/f%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(o.Content), o.Payload, o.Digest)
		fmt.Fprintf(&b, "/g%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(o.Content), o.Payload, o.Digest)
	}
	b.WriteString("/inline 5 100644 1 0 0 0 0.0 - hello -\n")
	img := fixture.Image(t, b.String(), 1)
	path := filepath.Join(t.TempDir(), "image")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ImageObjects(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Errorf("ImageObjects: %q, want %d objects", got, len(want))
	}
	for _, p := range got {
		if !want[strings.TrimPrefix(p, "/")] {
			t.Errorf("ImageObjects names %q, not an object of the image", p)
		}
	}
	if err := os.WriteFile(path, img[:len(img)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if list, err := ImageObjects(g); err == nil {
		t.Errorf("ImageObjects of a truncated image: %q, no error", list)
	}
}

// TestErrnoOfAFetch: a fetch that failed is EIO, whatever errno the
// network gave; a missing object is still ENOENT.
func TestErrnoOfAFetch(t *testing.T) {
	refused := fmt.Errorf("object http://h/ab/cd: %w: %w", objects.ErrFetch, syscall.ECONNREFUSED)
	if got := Errno(refused); got != syscall.EIO {
		t.Errorf("a refused connection: %v, want EIO", got)
	}
	if got := Errno(fmt.Errorf("object: %w", fs.ErrNotExist)); got != syscall.ENOENT {
		t.Errorf("a missing object: %v, want ENOENT", got)
	}
}

// TestObjectRefs: each object once, with the size of its files.
func TestObjectRefs(t *testing.T) {
	var b strings.Builder
	b.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
	want := map[string]int64{}
	for i := range 3 {
		o := fixture.NewObject([]byte(strings.Repeat("x", 100*(i+1))))
		want[o.Payload] = int64(len(o.Content))
		fmt.Fprintf(&b, "/f%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(o.Content), o.Payload, o.Digest)
		fmt.Fprintf(&b, "/g%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(o.Content), o.Payload, o.Digest)
	}
	fsys, err := OpenBytes(fixture.Image(t, b.String(), 1), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer fsys.Close()
	refs, err := fsys.ObjectRefs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != len(want) {
		t.Fatalf("ObjectRefs: %v, want %d objects", refs, len(want))
	}
	for _, r := range refs {
		if size, ok := want[strings.TrimPrefix(r.Payload, "/")]; !ok || size != r.Size {
			t.Errorf("ObjectRefs: %+v, want size %d", r, size)
		}
	}
}

// TestObjectState: an object checked by OpenObject comes with the state
// its check covers, which is the file's as fstat shows it while unchanged
// and no longer once it is rewritten in place (whose next open then fails
// with ErrDigestMismatch); with verity off, nothing was checked and the
// state is zero.
func TestObjectState(t *testing.T) {
	store := t.TempDir()
	o := fixture.NewObject([]byte(strings.Repeat("checked content ", 300)))
	o.Put(t, store, o.Content)
	img := fixture.Image(t, fmt.Sprintf("/ 0 40755 2 0 0 0 0.0 - - -\n/f %d 100644 1 0 0 0 0.0 %s - %s\n", len(o.Content), o.Payload, o.Digest), 1)
	flat, err := objects.OpenFlat(store)
	if err != nil {
		t.Fatal(err)
	}
	fstat := func(f *os.File) verity.State {
		t.Helper()
		st, err := verity.StateOfFd(int(f.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, mode := range []VerityMode{VerityOn, VerityOff} {
		f, err := OpenBytes(img, Config{Store: flat, Verity: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		root, err := f.Image().Inode(f.RootNid())
		if err != nil {
			t.Fatal(err)
		}
		in, err := f.Lookup(&root, "f")
		if err != nil {
			t.Fatal(err)
		}
		obj, err := f.OpenObject(t.Context(), &in)
		if err != nil {
			t.Fatal(err)
		}
		defer obj.File.Close()
		if mode == VerityOff {
			if obj.Checked || obj.State != (verity.State{}) {
				t.Errorf("verity off: checked %v, state %+v; want neither", obj.Checked, obj.State)
			}
			continue
		}
		// Through several stores, the first with a bad copy: the state
		// is that of the copy that passed, the one served.
		bad := t.TempDir()
		o.Put(t, bad, []byte(strings.Repeat("tampered content", 300)))
		badStore, err := objects.OpenFlat(bad)
		if err != nil {
			t.Fatal(err)
		}
		fm, err := OpenBytes(img, Config{Store: objects.Multi(badStore, flat), Verity: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer fm.Close()
		mobj, err := fm.OpenObject(t.Context(), &in)
		if err != nil {
			t.Fatal(err)
		}
		if !mobj.Checked || mobj.State != fstat(mobj.File) || mobj.State.Ino != fstat(obj.File).Ino {
			t.Errorf("several stores: checked %v, state %+v; want the good copy's %+v", mobj.Checked, mobj.State, fstat(obj.File))
		}
		mobj.File.Close()
		// A store that serves a copy without passing it to check:
		// refused, since nothing says what was checked.
		fu, err := OpenBytes(img, Config{Store: uncheckedStore{flat}, Verity: mode})
		if err != nil {
			t.Fatal(err)
		}
		defer fu.Close()
		if uobj, err := fu.OpenObject(t.Context(), &in); err == nil {
			uobj.File.Close()
			t.Error("an object a store did not check was served")
		}
		if !obj.Checked || obj.State != fstat(obj.File) {
			t.Fatalf("checked %v, state %+v; want the file's %+v", obj.Checked, obj.State, fstat(obj.File))
		}
		path := filepath.Join(store, o.Payload)
		w, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteAt([]byte("REWRITTEN"), 100)
		w.Close()
		// An mtime unlike the one it was hashed with, however coarsely
		// the clock ticks.
		if err := os.Chtimes(path, time.Unix(1_000_000, 0), time.Unix(1_000_000, 0)); err != nil {
			t.Fatal(err)
		}
		if obj.State == fstat(obj.File) {
			t.Error("rewritten in place, the file still shows the state checked")
		}
		if again, err := f.OpenObject(t.Context(), &in); !errors.Is(err, ErrDigestMismatch) {
			if err == nil {
				again.File.Close()
			}
			t.Errorf("rewritten in place: %v, want ErrDigestMismatch", err)
		}
		// Put back, for the next mode.
		w, _ = os.OpenFile(path, os.O_WRONLY, 0)
		w.WriteAt(o.Content[100:109], 100)
		w.Close()
	}
}

// uncheckedStore is a CheckedStore that breaks its contract: it serves its
// copy without passing it to check.
type uncheckedStore struct{ objects.Store }

func (s uncheckedStore) OpenChecked(ctx context.Context, payload string, check func(*os.File) error) (*os.File, error) {
	return s.Open(payload)
}
