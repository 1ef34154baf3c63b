package store

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// entry is what a merge sees of a file: its header and the digest of its
// content as the ObjectWriter answered it.
type entry struct {
	name, link string
	size       int64
	digest     string
}

// walkMerged reads a layer's tar through r as a Builder does: every
// regular file's content, when larger than InlineMax, handed to w
// unread; archive/tar skips what is left.
func walkMerged(t *testing.T, r io.Reader, w interface {
	WriteObject(io.Reader, int64) ([]byte, error)
}) []entry {
	t.Helper()
	tr := tar.NewReader(r)
	var out []entry
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		e := entry{name: h.Name, link: h.Linkname, size: h.Size}
		if h.Typeflag == tar.TypeReg && h.Size > InlineMax {
			d, err := w.WriteObject(tr, h.Size)
			if err != nil {
				t.Fatal(err)
			}
			e.digest = objects.PayloadForDigest(d)
		}
		out = append(out, e)
	}
}

// hashing is the ObjectWriter that reads and hashes.
type hashing struct{ alg verity.Algorithm }

func (h hashing) WriteObject(r io.Reader, size int64) ([]byte, error) {
	return verity.DigestReader(h.alg, io.LimitReader(r, size))
}

// TestMerger: a layer read through a Merger has the entries and digests of
// the layer read whole, and the Merger reads no object it only names: an
// object whose bytes were replaced (same size) still gives the digest its
// stream names, where LayerTar, which reads it, fails.
func TestMerger(t *testing.T) {
	repo := newRepo(t)
	layer := makeTar(t, tar.FormatPAX, sampleFiles(), 1024)
	diffID := sha(layer)
	if _, _, err := ImportLayer(repo, diffID, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	want := walkMerged(t, bytes.NewReader(layer), hashing{repo.Algorithm()})
	m, err := MergeLayer(repo, diffID)
	if err != nil {
		t.Fatal(err)
	}
	got := walkMerged(t, m, m)
	m.Close()
	if len(got) != len(want) {
		t.Fatalf("merged %d entries, the tar has %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: merged %+v, the tar %+v", i, got[i], want[i])
		}
	}

	// The 70000-byte file's object, replaced by other bytes.
	var big string
	for _, e := range want {
		if e.size == 70000 {
			big = e.digest
		}
	}
	path := filepath.Join(repo.Path(), "objects", big)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content(70000, 99), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err = MergeLayer(repo, diffID)
	if err != nil {
		t.Fatal(err)
	}
	again := walkMerged(t, m, m)
	m.Close()
	for i := range want {
		if again[i] != want[i] {
			t.Errorf("after the object changed, entry %d: merged %+v, want %+v", i, again[i], want[i])
		}
	}
	if err := readLayer(repo, diffID); err == nil {
		t.Error("LayerTar read a changed object without an error")
	}
}

// TestStoreImageWithID: the config stream names the composefs image from
// the start, the same stream SetImageID would write, so storing twice
// writes nothing new.
func TestStoreImageWithID(t *testing.T) {
	// A repository with the image recorded the other way: stored, then
	// SetImageID.
	other := newRepo(t)
	manifest, config, _ := storeTestImage(t, other, "")
	oid, err := other.WriteImage([]byte("not really an image, but an object"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SetImageID(other, sha(manifest), ImageRefKeyV1, oid, "x"); err != nil {
		t.Fatal(err)
	}
	// Layers first, as a pull stores them, then the image with its id.
	fresh := newRepo(t)
	storeLayers(t, fresh)
	fid, err := fresh.WriteImage([]byte("not really an image, but an object"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := StoreImageWithID(fresh, manifest, config, "x", ImageRefKeyV1, fid)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.ImageRefs[1], fid) {
		t.Errorf("ImageRefs %x, want %x", img.ImageRefs[1], fid)
	}
	before := countFiles(t, filepath.Join(fresh.Path(), "objects"))
	if _, err := StoreImageWithID(fresh, manifest, config, "x", ImageRefKeyV1, fid); err != nil {
		t.Fatal(err)
	}
	if after := countFiles(t, filepath.Join(fresh.Path(), "objects")); after != before {
		t.Errorf("storing again: %d objects, then %d", before, after)
	}
	// The same config stream as SetImageID writes.
	a, _, err := fresh.HasStream(ConfigID(sha(config)))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := other.HasStream(ConfigID(sha(config)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("config stream %x, SetImageID's %x", a, b)
	}
	if _, err := StoreImageWithID(fresh, manifest, config, "x", "image", fid); err == nil {
		t.Error("a key that is no image's: no error")
	}
	if _, err := ImageKey(0, ""); err == nil {
		t.Error("ImageKey of format 0: no error")
	}
	// Another transform's image beside it, under its own key.
	key, err := ImageKey(1, "xattrs=keep-user-xattrs")
	if err != nil || key != "composefs.image.v1.xattrs=keep-user-xattrs" {
		t.Fatalf("ImageKey: %q, %v", key, err)
	}
	other2, err := fresh.WriteImage([]byte("another transform's image"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SetImageID(fresh, sha(manifest), key, other2, ""); err != nil {
		t.Fatal(err)
	}
	both, err := Resolve(fresh, "x")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(both.ImageRefs[1], fid) || !bytes.Equal(both.Images[key], other2) || !bytes.Equal(both.Images[ImageRefKeyV1], fid) {
		t.Errorf("after a second transform's image: ImageRefs %x, Images %x", both.ImageRefs, both.Images)
	}
}

// storeLayers imports storeTestImage's layers.
func storeLayers(t *testing.T, repo *objects.Repository) {
	t.Helper()
	for i := range 2 {
		layer := makeTar(t, tar.FormatPAX, sampleFiles()[i*3:i*3+6], 0)
		if _, _, err := ImportLayer(repo, sha(layer), bytes.NewReader(layer)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestHeaderOnlySize: a symlink whose size field says 512, followed by a
// regular file's header, is read as archive/tar reads it (no data for a
// symlink) by the import and by the merge, so the regular file behind it
// is stored as an object and the merge names only objects that exist.
func TestHeaderOnlySize(t *testing.T) {
	repo := newRepo(t)
	body := content(100, 9)
	var layer []byte
	layer = append(layer, rawHeader("link", '2', 512)...)
	layer = append(layer, rawHeader("inner", '0', int64(len(body)))...)
	layer = append(layer, body...)
	layer = append(layer, make([]byte, block-len(body)+2*block)...)
	diffID := sha(layer)
	if _, _, err := ImportLayer(repo, diffID, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	want := walkMerged(t, bytes.NewReader(layer), hashing{repo.Algorithm()})
	m, err := MergeLayer(repo, diffID)
	if err != nil {
		t.Fatal(err)
	}
	got := walkMerged(t, m, m)
	m.Close()
	if len(got) != 2 || len(want) != 2 || got[1] != want[1] || got[1].name != "inner" {
		t.Fatalf("merged %+v, archive/tar reads %+v", got, want)
	}
	if ok, err := repo.Has(got[1].digest); err != nil || !ok {
		t.Errorf("the merge names object %s, which the repository lacks (%v)", got[1].digest, err)
	}
}

// TestCheckImage: what StoreImage refuses, CheckImage refuses first.
func TestCheckImage(t *testing.T) {
	repo := newRepo(t)
	manifest, config, _ := storeTestImage(t, repo, "")
	if err := CheckImage(manifest, config); err != nil {
		t.Errorf("a stored image: %v", err)
	}
	noType := bytes.Replace(manifest, []byte(mediaTypeOCIConfig), nil, 1)
	if err := CheckImage(noType, config); err == nil {
		t.Error("a config without a media type: no error")
	}
	if err := CheckImage(manifest, append(bytes.Clone(config), ' ')); err == nil {
		t.Error("a config of another digest: no error")
	}
}
