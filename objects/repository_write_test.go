package objects

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/composefs/composefs-go/verity"
)

// wantMeta is meta.json as composefs-rs' cfsctl init writes it (serde_json
// pretty printing of RepoMetadata with the default V1 format config).
const wantMetaSHA256 = `{
  "version": 1,
  "algorithm": "fsverity-sha256-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`

func TestCreateRepository(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "repo")
	r, err := CreateRepository(dir, verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("repository mode %o, want 0700", fi.Mode().Perm())
	}
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != wantMetaSHA256 {
		t.Errorf("meta.json:\n%s\nwant:\n%s", data, wantMetaSHA256)
	}
	if r.Algorithm() != verity.SHA256 || r.ErofsVersion() != 1 {
		t.Errorf("algorithm %s, EROFS version %d; want sha256, 1", r.Algorithm(), r.ErofsVersion())
	}

	// Again: the same repository, opened as it is.
	r2, err := CreateRepository(dir, verity.SHA256)
	if err != nil {
		t.Fatalf("second create: %v", err)
	}
	r2.Close()
	if _, err := CreateRepository(dir, verity.SHA512); err == nil || !errors.Is(err, ErrRepositoryMeta) {
		t.Errorf("create as sha512 over a sha256 repository: %v, want ErrRepositoryMeta", err)
	}

	// A directory with other content is not made a repository.
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "file"), nil, 0o644)
	if _, err := CreateRepository(other, verity.SHA512); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("create in a non-empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(other, "meta.json")); err == nil {
		t.Error("meta.json written into a non-empty directory")
	}

	// An empty directory that exists keeps its mode.
	empty := t.TempDir()
	os.Chmod(empty, 0o750)
	r3, err := CreateRepository(empty, verity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	r3.Close()
	if fi, _ := os.Stat(empty); fi.Mode().Perm() != 0o750 {
		t.Errorf("existing directory's mode changed to %o", fi.Mode().Perm())
	}
	m, err := os.ReadFile(filepath.Join(empty, "meta.json"))
	if err != nil {
		t.Fatal(err)
	}
	pm, err := ParseMeta(m)
	if err != nil || pm.Algorithm != verity.SHA512 || pm.ErofsVersion != 1 {
		t.Errorf("sha512 meta.json parses as %+v, %v", pm, err)
	}
}

func TestWriteObject(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		dir := filepath.Join(t.TempDir(), "repo")
		r, err := CreateRepository(dir, alg)
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("object "), 3000)
		d1, err := r.WriteObject(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if want := verity.DigestBytes(alg, data); !bytes.Equal(d1, want) {
			t.Fatalf("%s digest %x, want %x", alg, d1, want)
		}
		// The same content again, through a reader that returns little
		// at a time: the same object, one file.
		d2, err := r.WriteObject(iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)))
		if err != nil || !bytes.Equal(d1, d2) {
			t.Fatalf("second write: %x, %v", d2, err)
		}
		sub := filepath.Join(dir, "objects", hex.EncodeToString(d1[:1]))
		names, _ := os.ReadDir(sub)
		if len(names) != 1 || names[0].Name() != hex.EncodeToString(d1[1:]) {
			t.Errorf("objects/%x holds %v, want the one object", d1[:1], names)
		}
		f, err := r.OpenDigest(d1)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, data) {
			t.Error("object content differs")
		}

		// Short and long content are errors and leave nothing behind.
		if _, err := r.WriteObject(bytes.NewReader(data[:10]), 11); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("short content: %v", err)
		}
		if _, err := r.WriteObject(bytes.NewReader(data[:12]), 11); err == nil {
			t.Error("long content: no error")
		}
		if _, err := r.WriteObject(iotest.ErrReader(errors.New("boom")), 5); err == nil || !strings.Contains(err.Error(), "boom") {
			t.Errorf("failing reader: %v", err)
		}
		if ok, _ := r.Has(PayloadForDigest(verity.DigestBytes(alg, data[:10]))); ok {
			t.Error("a short object was stored")
		}
		noTemporaries(t, dir)
		// The empty object.
		if d, err := r.WriteObject(bytes.NewReader(nil), 0); err != nil || !bytes.Equal(d, verity.DigestBytes(alg, nil)) {
			t.Errorf("empty object: %x, %v", d, err)
		}
		r.Close()
	}
}

func TestWriteImageAndRefs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := CreateRepository(dir, verity.SHA512)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	image := bytes.Repeat([]byte("not really an image "), 500)
	id, err := r.WriteImage(image)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id, verity.DigestBytes(verity.SHA512, image)) {
		t.Fatalf("image id %x is not the image's digest", id)
	}
	h := hex.EncodeToString(id)
	if target, err := os.Readlink(filepath.Join(dir, "images", h)); err != nil || target != "../objects/"+PayloadForDigest(id) {
		t.Errorf("images/%s -> %q, %v", h, target, err)
	}
	if _, err := r.WriteImage(image); err != nil {
		t.Fatalf("writing the image again: %v", err)
	}

	if err := r.Tag("myapp/rootfs", id); err != nil {
		t.Fatal(err)
	}
	if err := r.Tag("plain", id); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "images/refs/myapp/rootfs")); err != nil || target != "../../"+h {
		t.Errorf("images/refs/myapp/rootfs -> %q, %v", target, err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "images/refs/plain")); err != nil || target != "../"+h {
		t.Errorf("images/refs/plain -> %q, %v", target, err)
	}

	// The read side, through a fresh open, by ref and by id.
	ro, err := OpenRepository(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	for _, name := range []string{"myapp/rootfs", "plain", h} {
		f, err := ro.OpenImage(name)
		if err != nil {
			t.Fatalf("OpenImage(%s): %v", name, err)
		}
		got, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Equal(got, image) {
			t.Errorf("OpenImage(%s) content differs", name)
		}
	}
	refs, err := ro.Refs()
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 2 || !bytes.Equal(refs["myapp/rootfs"], id) || !bytes.Equal(refs["plain"], id) {
		t.Errorf("Refs() = %x", refs)
	}

	// A tag moves to another image.
	other := []byte("another image")
	id2, err := r.WriteImage(other)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Tag("plain", id2); err != nil {
		t.Fatal(err)
	}
	if refs, _ := r.Refs(); !bytes.Equal(refs["plain"], id2) {
		t.Errorf("plain names %x after retag, want %x", refs["plain"], id2)
	}

	if err := r.Untag("myapp/rootfs"); err != nil {
		t.Fatal(err)
	}
	if _, err := ro.OpenImage("myapp/rootfs"); err == nil {
		t.Error("untagged ref still opens")
	}
	if refs, _ := r.Refs(); len(refs) != 1 {
		t.Errorf("refs after untag: %x", refs)
	}
	if err := r.Untag("myapp/rootfs"); err == nil {
		t.Error("untag of a missing ref: no error")
	}

	// Refused: an image that was never written, bad names, wrong sizes.
	missing := verity.DigestBytes(verity.SHA512, []byte("nothing"))
	if err := r.Tag("x", missing); err == nil {
		t.Error("tag of an unknown image: no error")
	}
	for _, bad := range []string{"../x", "a/../b", "/abs", "", "a//b"} {
		if err := r.Tag(bad, id); err == nil {
			t.Errorf("Tag(%q): no error", bad)
		}
	}
	if err := r.Tag("short", id[:32]); err == nil {
		t.Error("tag with a sha256-sized id in a sha512 repository: no error")
	}
	// A ref directory that is a symlink is not followed.
	os.Symlink(t.TempDir(), filepath.Join(dir, "images/refs/evil"))
	if err := r.Tag("evil/x", id); err == nil {
		t.Error("tag through a symlinked directory: no error")
	}
	noTemporaries(t, dir)
}

// Two creators of one repository at once both succeed.
func TestCreateRepositoryConcurrent(t *testing.T) {
	for range 20 {
		dir := filepath.Join(t.TempDir(), "repo")
		errs := make(chan error, 2)
		for range 2 {
			go func() {
				r, err := CreateRepository(dir, verity.SHA256)
				if err == nil {
					r.Close()
				}
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		noTemporaries(t, dir)
	}
}

// TestWriteObjectReplacesTruncated: an object of the wrong size under its
// name (a crash before the sync, which leaves a new file short) is
// replaced when the object is written again; one of the right size is
// kept, as another writer's.
func TestWriteObjectReplacesTruncated(t *testing.T) {
	r, err := CreateRepository(filepath.Join(t.TempDir(), "repo"), verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	data := bytes.Repeat([]byte("crash "), 2000)
	d, err := r.WriteObject(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(r.Path(), "objects", PayloadForDigest(d))
	if err := os.Truncate(path, 100); err != nil {
		t.Fatal(err)
	}
	if _, err := r.WriteObject(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got, data) {
		t.Errorf("after writing it again, the object has %d bytes (%v), want %d", len(got), err, len(data))
	}
	st1, _ := os.Stat(path)
	if _, err := r.WriteObject(bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if st2, _ := os.Stat(path); !os.SameFile(st1, st2) {
		t.Error("a whole object was replaced")
	}
}
