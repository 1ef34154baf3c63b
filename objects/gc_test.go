package objects

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/splitstream"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// listImage is the ImageObjectsFunc of the tests' images, which are text
// files naming one payload a line.
func listImage(f *os.File) ([]string, error) {
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return nil, err
	}
	if !strings.HasPrefix(string(data), "image\n") {
		return nil, errors.New("not a test image")
	}
	return strings.Fields(string(data[len("image\n"):])), nil
}

type gcFixture struct {
	dir string
	r   *Repository
	// live and dead are the payloads gc must keep and remove.
	live, dead map[string]string
	id1        []byte
}

func (fx *gcFixture) object(t *testing.T, content string) string {
	t.Helper()
	id, err := fx.r.WriteObject(strings.NewReader(content), int64(len(content)))
	if err != nil {
		t.Fatal(err)
	}
	return PayloadForDigest(id)
}

func (fx *gcFixture) stream(t *testing.T, cid, ref string, objs []string, named map[string][]byte) []byte {
	t.Helper()
	w, err := splitstream.NewWriter(fx.r, fx.r.alg, splitstream.ContentTypeLayer)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("inline " + cid))
	for _, p := range objs {
		id, _ := fx.r.parseID(strings.Replace(p, "/", "", 1))
		if err := w.AddExternal(id, 1); err != nil {
			t.Fatal(err)
		}
	}
	for n, id := range named {
		if err := w.AddStreamRef(n, id); err != nil {
			t.Fatal(err)
		}
	}
	data, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	id, err := fx.r.WriteStream(cid, data, ref)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// newGCFixture builds a repository with two images (one untagged), a
// named config stream naming a layer stream, an unnamed stream, a loose
// object, a dangling stream ref and two temporary files.
func newGCFixture(t *testing.T) *gcFixture {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := CreateRepository(dir, verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	fx := &gcFixture{dir: dir, r: r, live: map[string]string{}, dead: map[string]string{}}
	a, b, c := fx.object(t, "a"), fx.object(t, "b"), fx.object(t, "c")
	d, e, f, g := fx.object(t, "d"), fx.object(t, "e"), fx.object(t, "f"), fx.object(t, "g")
	fx.live["a"], fx.live["b"], fx.dead["c"] = a, b, c
	fx.live["d"], fx.live["e"], fx.dead["f"], fx.dead["g"] = d, e, f, g

	fx.id1, err = r.WriteImage([]byte("image\n/" + a + "\n" + b + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	id2, err := r.WriteImage([]byte("image\n" + c + "\n" + a + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tag("app/one", fx.id1); err != nil {
		t.Fatal(err)
	}
	if err := r.Tag("two", id2); err != nil {
		t.Fatal(err)
	}
	if err := r.Untag("two"); err != nil {
		t.Fatal(err)
	}
	fx.live["image1"], fx.dead["image2"] = PayloadForDigest(fx.id1), PayloadForDigest(id2)

	layer := fx.stream(t, "oci-layer-x", "", []string{d}, nil)
	config := fx.stream(t, "oci-config-y", "oci/app", []string{e}, map[string][]byte{"sha256:x": layer})
	orphan := fx.stream(t, "orphan", "", []string{f}, nil)
	fx.live["layer"], fx.live["config"], fx.dead["orphan"] = PayloadForDigest(layer), PayloadForDigest(config), PayloadForDigest(orphan)

	if err := os.Symlink("../gone", filepath.Join(dir, "streams/refs/dangling")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"objects/.tmp-0123456789abcdef", "objects/" + a[:2] + "/.tmp-x", "objects/.tmp-fresh"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte("being written"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A dead writer's, untouched for two hours; .tmp-fresh may be a
	// live one's.
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(filepath.Join(dir, "objects/.tmp-0123456789abcdef"), old, old); err != nil {
		t.Fatal(err)
	}
	return fx
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func (fx *gcFixture) links() []string {
	var out []string
	filepath.Walk(fx.dir, func(path string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			rel, _ := filepath.Rel(fx.dir, path)
			out = append(out, rel)
		}
		return nil
	})
	slices.Sort(out)
	return out
}

func TestGC(t *testing.T) {
	fx := newGCFixture(t)
	ctx := context.Background()
	var deadBytes int64
	for _, p := range fx.dead {
		fi, err := os.Stat(filepath.Join(fx.dir, "objects", p))
		if err != nil {
			t.Fatal(err)
		}
		deadBytes += fi.Size()
	}
	want := GCResult{ObjectsRemoved: int64(len(fx.dead)), ObjectsBytes: deadBytes, ImagesPruned: 1, StreamsPruned: 2, TempsRemoved: 1}
	linksBefore := fx.links()

	dry, err := fx.r.GC(ctx, true, listImage)
	if err != nil {
		t.Fatal(err)
	}
	if dry != want {
		t.Errorf("dry run: %+v, want %+v", dry, want)
	}
	for name, p := range fx.dead {
		if !exists(filepath.Join(fx.dir, "objects", p)) {
			t.Errorf("dry run removed %s (%s)", name, p)
		}
	}
	if got := fx.links(); !slices.Equal(got, linksBefore) {
		t.Errorf("dry run changed the links: %v, was %v", got, linksBefore)
	}

	res, err := fx.r.GC(ctx, false, listImage)
	if err != nil {
		t.Fatal(err)
	}
	if res != want {
		t.Errorf("gc: %+v, want %+v", res, want)
	}
	for name, p := range fx.dead {
		if exists(filepath.Join(fx.dir, "objects", p)) {
			t.Errorf("gc kept %s (%s)", name, p)
		}
	}
	for name, p := range fx.live {
		if !exists(filepath.Join(fx.dir, "objects", p)) {
			t.Errorf("gc removed %s (%s)", name, p)
		}
	}
	// No writer runs under gc's lock: a temporary file of storeObject's
	// is left over and goes; another name in a fan-out directory is
	// not gc's to judge.
	if p := "objects/.tmp-0123456789abcdef"; exists(filepath.Join(fx.dir, p)) {
		t.Errorf("gc kept the temporary file %s", p)
	}
	for _, p := range []string{"objects/" + fx.live["a"][:2] + "/.tmp-x", "objects/.tmp-fresh"} {
		if !exists(filepath.Join(fx.dir, p)) {
			t.Errorf("gc removed %s", p)
		}
	}
	wantLinks := []string{
		"images/" + strings.Replace(fx.live["image1"], "/", "", 1),
		"images/refs/app/one",
		"streams/oci-config-y",
		"streams/oci-layer-x",
		"streams/refs/oci/app",
	}
	if got := fx.links(); !slices.Equal(got, wantLinks) {
		t.Errorf("links after gc:\n%v\nwant\n%v", got, wantLinks)
	}
	if again, err := fx.r.GC(ctx, false, listImage); err != nil || again != (GCResult{}) {
		t.Errorf("second gc: %+v, %v", again, err)
	}
	// What is left reads as it did.
	if f, err := fx.r.OpenImage("app/one"); err != nil {
		t.Error(err)
	} else {
		f.Close()
	}
	if _, _, err := fx.r.OpenStream("oci-layer-x"); err != nil {
		t.Error(err)
	}
}

// An image gc cannot list stops it before anything is removed.
func TestGCUnreadableImage(t *testing.T) {
	fx := newGCFixture(t)
	bad := func(*os.File) ([]string, error) { return nil, errors.New("unreadable") }
	if _, err := fx.r.GC(context.Background(), false, bad); err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Fatalf("gc with an unreadable image: %v", err)
	}
	for name, p := range fx.dead {
		if !exists(filepath.Join(fx.dir, "objects", p)) {
			t.Errorf("failed gc removed %s", name)
		}
	}
}

func TestGCLock(t *testing.T) {
	fx := newGCFixture(t)
	other, err := OpenRepository(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = fx.r.GC(ctx, false, listImage)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("gc while another open holds the repository: %v", err)
	}
	if !exists(filepath.Join(fx.dir, "objects", fx.dead["g"])) {
		t.Error("gc that could not lock removed objects")
	}
	// A dry run needs no exclusive lock.
	if _, err := fx.r.GC(context.Background(), true, listImage); err != nil {
		t.Errorf("dry run beside another open: %v", err)
	}
	// The failed gc still holds its shared lock: other cannot gc either.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel2()
	if _, err := other.GC(ctx2, false, listImage); !errors.Is(err, ErrLocked) {
		t.Errorf("gc beside a repository that failed to gc: %v", err)
	}
	// A mount gives its lock up.
	if err := other.Unlock(); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.r.GC(context.Background(), false, listImage); err != nil {
		t.Fatalf("gc once the other open unlocked: %v", err)
	}
	// Opening waits for a gc's exclusive lock, here taken by hand.
	other.Close()
	fx.r.Close()
	lk, err := os.Open(fx.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer lk.Close()
	if err := unix.Flock(int(lk.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		r2, err := OpenRepository(fx.dir)
		if err == nil {
			r2.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("open did not wait for the exclusive lock: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	unix.Flock(int(lk.Fd()), unix.LOCK_UN)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("open still waiting once the lock was released")
	}
}

func TestFsck(t *testing.T) {
	fx := newGCFixture(t)
	if _, err := fx.r.GC(context.Background(), false, listImage); err != nil {
		t.Fatal(err)
	}
	// A name in objects/XX/ that is no object's is a problem for fsck
	// (gc leaves it).
	stray := "objects/" + fx.live["a"][:2] + "/.tmp-x"
	if res, err := fx.r.Fsck(false, listImage); err != nil || !res.OK() {
		t.Fatalf("metadata-only fsck of a sound repository: %+v %v", res, err)
	}
	res, err := fx.r.Fsck(true, listImage)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Problems) != 1 || res.Problems[0].Path != stray || res.Problems[0].Kind != "object-invalid-name" {
		t.Fatalf("fsck with a stray file: %+v", res)
	}
	if err := os.Remove(filepath.Join(fx.dir, stray)); err != nil {
		t.Fatal(err)
	}
	res, err = fx.r.Fsck(true, listImage)
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.ObjectsChecked != int64(len(fx.live)) || res.StreamsChecked != 2 || res.ImagesChecked != 1 || !res.HasMetadata {
		t.Fatalf("fsck of a sound repository: %+v", res)
	}

	// Damage it: object a's content replaced, object e (of the config
	// stream) and the image's object removed.
	a := filepath.Join(fx.dir, "objects", fx.live["a"])
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a, []byte("A"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"e", "image1"} {
		if err := os.Remove(filepath.Join(fx.dir, "objects", fx.live[n])); err != nil {
			t.Fatal(err)
		}
	}
	res, err = fx.r.Fsck(true, listImage)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range res.Problems {
		got = append(got, p.Kind+" "+p.Path)
	}
	slices.Sort(got)
	want := []string{
		"broken-symlink images/" + strings.Replace(fx.live["image1"], "/", "", 1),
		"broken-symlink images/refs/app/one",
		"missing-object-ref streams/oci-config-y",
		"object-digest-mismatch objects/" + fx.live["a"],
	}
	if !slices.Equal(got, want) {
		t.Errorf("problems:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if res.ObjectsCorrupted != 1 || res.BrokenLinks != 2 || res.MissingObjects != 1 || res.ImagesCorrupted != 1 {
		t.Errorf("counts: %+v", res)
	}
	// Without the objects' digests, the mismatch goes unseen.
	res, err = fx.r.Fsck(false, listImage)
	if err != nil {
		t.Fatal(err)
	}
	if res.ObjectsChecked != 0 || len(res.Problems) != 3 {
		t.Errorf("metadata-only fsck: %+v", res)
	}
}

// FuzzGCStream: whatever a named stream holds, gc and fsck neither panic
// nor fail to walk the repository, and gc, when it runs, keeps the
// stream (the repository's one object).
func FuzzGCStream(f *testing.F) {
	r0, err := CreateRepository(filepath.Join(f.TempDir(), "seed"), verity.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	w, err := splitstream.NewWriter(r0, verity.SHA256, splitstream.ContentTypeConfig)
	if err != nil {
		f.Fatal(err)
	}
	w.Write([]byte("inline"))
	w.AddExternal(make([]byte, 32), 3)
	w.AddStreamRef("layer", make([]byte, 32))
	seed, err := w.Finish()
	r0.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("SplitStream"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := CreateRepository(filepath.Join(t.TempDir(), "repo"), verity.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if _, err := r.WriteStream("s", data, "named"); err != nil {
			t.Fatal(err)
		}
		res, gcErr := r.GC(context.Background(), true, listImage)
		if gcErr == nil && res.ObjectsRemoved != 0 {
			t.Errorf("gc would remove the named stream: %+v", res)
		}
		if s, err := splitstream.OpenBytes(data, verity.SHA256); err == nil {
			s.Close()
			if gcErr != nil || res.StreamsPruned != 0 {
				t.Errorf("gc of a valid named stream: %+v, %v", res, gcErr)
			}
		}
		fres, err := r.Fsck(true, listImage)
		if err != nil {
			t.Fatal(err)
		}
		if fres.StreamsChecked != 1 || fres.ObjectsCorrupted != 0 {
			t.Errorf("fsck: %+v", fres)
		}
	})
}

// A ref leading somewhere gc does not know (here straight to an object)
// stops it: the objects behind it may be needed.
func TestGCForeignRef(t *testing.T) {
	fx := newGCFixture(t)
	if err := os.Symlink("../../objects/"+fx.dead["g"], filepath.Join(fx.dir, "images/refs/direct")); err != nil {
		t.Fatal(err)
	}
	if _, err := fx.r.GC(context.Background(), false, listImage); err == nil || !strings.Contains(err.Error(), "images/refs/direct") {
		t.Fatalf("gc with a ref to an object: %v", err)
	}
	if !exists(filepath.Join(fx.dir, "objects", fx.dead["g"])) {
		t.Error("gc removed an object a ref leads to")
	}
}
