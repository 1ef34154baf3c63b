package objects

import (
	"bytes"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// readSplitstream rebuilds the file a splitstream stores.
func readSplitstream(t *testing.T, r *Repository, data []byte) (content []byte, ctype uint64, named map[string][]byte) {
	t.Helper()
	if string(data[:11]) != "SplitStream" || data[11] != 0 || data[14] != kernelAlgorithm(r.alg) || data[15] != 12 {
		t.Fatalf("bad header % x", data[:16])
	}
	s, err := ParseSplitstream(data)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Rebuild(&buf, r); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), s.ContentType, s.NamedRefs
}

func TestSplitstream(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		dir := filepath.Join(t.TempDir(), "repo")
		r, err := CreateRepository(dir, alg)
		if err != nil {
			t.Fatal(err)
		}
		big := bytes.Repeat([]byte("external "), 1000)
		d, err := r.WriteObject(bytes.NewReader(big), int64(len(big)))
		if err != nil {
			t.Fatal(err)
		}
		w := r.NewSplitstream(ContentTypeOCILayer)
		io.WriteString(w, "header ")
		io.WriteString(w, "more ")
		w.AddExternal(d, uint64(len(big)))
		io.WriteString(w, "middle")
		w.AddExternal(d, uint64(len(big)))
		other := verity.DigestBytes(alg, []byte("other stream"))
		if err := w.AddNamedRef("sha256:abc", other); err != nil {
			t.Fatal(err)
		}
		id, err := w.Commit("oci-layer-sha256:abc")
		if err != nil {
			t.Fatal(err)
		}
		target, err := os.Readlink(filepath.Join(dir, "streams", "oci-layer-sha256:abc"))
		if err != nil || target != "../objects/"+PayloadForDigest(id) {
			t.Errorf("streams link -> %q, %v", target, err)
		}
		f, err := r.OpenDigest(id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(f)
		f.Close()
		content, ctype, named := readSplitstream(t, r, data)
		want := "header more " + string(big) + "middle" + string(big)
		if string(content) != want {
			t.Errorf("rebuilt %d bytes, want %d", len(content), len(want))
		}
		if ctype != ContentTypeOCILayer || string(named["sha256:abc"]) != string(other) || len(named) != 1 {
			t.Errorf("content type %x, named refs %x", ctype, named)
		}
		// One object ref for the two uses.
		if n := binary.LittleEndian.Uint64(data[56:]) - binary.LittleEndian.Uint64(data[48:]); n != uint64(alg.Size()) {
			t.Errorf("object refs of %d bytes, want one digest", n)
		}
		for _, bad := range []string{"", "a/b", "..", "refs"} {
			if _, err := r.NewSplitstream(ContentTypeOCIBlob).Commit(bad); err == nil {
				t.Errorf("Commit(%q): no error", bad)
			}
		}
		if err := r.NameStream("oci-layer-sha256:abc", "oci/my%2Fimage:latest"); err != nil {
			t.Fatal(err)
		}
		if target, err := os.Readlink(filepath.Join(dir, "streams/refs/oci/my%2Fimage:latest")); err != nil || target != "../../oci-layer-sha256:abc" {
			t.Errorf("stream ref -> %q, %v", target, err)
		}
		if err := r.NameStream("no-such-stream", "x"); err == nil {
			t.Error("naming a missing stream: no error")
		}
		if err := r.NameStream("oci-layer-sha256:abc", "../x"); err == nil {
			t.Error("a ref name with ..: no error")
		}
		if err := w.AddExternal(d[:10], 1); err == nil {
			t.Error("a short digest: no error")
		}
		r.Close()
	}
}

func FuzzParseSplitstream(f *testing.F) {
	dir := filepath.Join(f.TempDir(), "repo")
	r, err := CreateRepository(dir, verity.SHA256)
	if err != nil {
		f.Fatal(err)
	}
	obj := bytes.Repeat([]byte("o"), 100)
	d, _ := r.WriteObject(bytes.NewReader(obj), int64(len(obj)))
	w := r.NewSplitstream(ContentTypeOCIConfig)
	io.WriteString(w, "inline")
	w.AddExternal(d, uint64(len(obj)))
	w.AddNamedRef("name", d)
	seed, _ := w.Bytes()
	f.Add(seed)
	f.Add(seed[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseSplitstream(data)
		if err != nil {
			return
		}
		s.Rebuild(io.Discard, r)
	})
}
