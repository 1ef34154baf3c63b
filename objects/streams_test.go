package objects

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

func TestStreams(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := CreateRepository(dir, verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const cid = "oci-layer-sha256:0123"
	if _, ok, err := r.HasStream(cid); ok || err != nil {
		t.Fatalf("HasStream before any stream: %v %v", ok, err)
	}
	data := []byte("not really a split stream, but an object all the same")
	id, err := r.WriteStream(cid, data, "")
	if err != nil {
		t.Fatal(err)
	}
	want, _ := verity.DigestReader(verity.SHA256, bytes.NewReader(data))
	if !bytes.Equal(id, want) {
		t.Fatalf("stream id %x, want %x", id, want)
	}
	target, err := os.Readlink(filepath.Join(dir, "streams", cid))
	if err != nil {
		t.Fatal(err)
	}
	if target != "../objects/"+PayloadForDigest(id) {
		t.Errorf("streams/%s -> %s", cid, target)
	}
	got, ok, err := r.HasStream(cid)
	if !ok || err != nil || !bytes.Equal(got, id) {
		t.Fatalf("HasStream: %x %v %v", got, ok, err)
	}
	f, gotID, err := r.OpenStream(cid)
	if err != nil {
		t.Fatal(err)
	}
	content, _ := io.ReadAll(f)
	f.Close()
	if !bytes.Equal(content, data) || !bytes.Equal(gotID, id) {
		t.Errorf("OpenStream read %q", content)
	}

	// Names, nested as composefs-rs nests them.
	if err := r.NameStream(cid, "oci/app%2Fx:1"); err != nil {
		t.Fatal(err)
	}
	if err := r.NameStream(cid, "top"); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"oci/app%2Fx:1": "../../" + cid, "top": "../" + cid} {
		target, err := os.Readlink(filepath.Join(dir, "streams/refs", name))
		if err != nil || target != want {
			t.Errorf("streams/refs/%s -> %q (%v), want %q", name, target, err, want)
		}
		// And the link resolves to the stream's object.
		if b, err := os.ReadFile(filepath.Join(dir, "streams/refs", name)); err != nil || !bytes.Equal(b, data) {
			t.Errorf("streams/refs/%s does not lead to the stream: %v", name, err)
		}
	}
	refs, err := r.StreamRefs("oci")
	if err != nil || len(refs) != 1 || refs["app%2Fx:1"] != cid {
		t.Errorf("StreamRefs(oci) = %v, %v", refs, err)
	}
	if refs, _ := r.StreamRefs(""); len(refs) != 2 {
		t.Errorf("StreamRefs() = %v", refs)
	}
	if c, err := r.StreamRef("oci/app%2Fx:1"); err != nil || c != cid {
		t.Errorf("StreamRef = %q, %v", c, err)
	}
	if err := r.UnnameStream("oci/app%2Fx:1"); err != nil {
		t.Fatal(err)
	}
	if refs, _ := r.StreamRefs("oci"); len(refs) != 0 {
		t.Errorf("after UnnameStream: %v", refs)
	}
	if err := r.UnnameStream("oci/app%2Fx:1"); err == nil {
		t.Error("removed a missing name")
	}

	// Refused names and targets.
	for _, bad := range []string{"", "a/b", "refs", "..", "x\x00y"} {
		if _, err := r.WriteStream(bad, data, ""); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("content id %q: %v", bad, err)
		}
	}
	if err := r.NameStream("oci-missing", "n"); !errors.Is(err, ErrNoStream) {
		t.Errorf("naming a missing stream: %v", err)
	}
	if err := r.NameStream(cid, "../escape"); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("ref ../escape: %v", err)
	}
	if err := r.RegisterStream("other", bytes.Repeat([]byte{7}, 32), ""); err == nil {
		t.Error("registered a missing object")
	}
	os.Symlink("/etc/passwd", filepath.Join(dir, "streams", "evil"))
	if _, _, err := r.HasStream("evil"); err == nil {
		t.Error("a stream link outside objects/ was taken")
	}

	// A changed object is found out.
	obj := filepath.Join(dir, "objects", PayloadForDigest(id))
	if _, err := verity.MeasureVerity(mustOpenFile(t, obj), verity.SHA256); err == nil {
		t.Skip("fs-verity on the object: its content cannot change")
	}
	os.Chmod(obj, 0o644)
	if err := os.WriteFile(obj, []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.OpenStream(cid); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("changed stream object: %v", err)
	}
}

func mustOpenFile(t *testing.T, path string) *os.File {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
