package store

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/splitstream"
	"github.com/composefs/composefs-go/verity"
)

func newRepo(t testing.TB) *objects.Repository {
	t.Helper()
	r, err := objects.CreateRepository(filepath.Join(t.TempDir(), "repo"), verity.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func sha(data []byte) string { return fmt.Sprintf("sha256:%x", sha256.Sum256(data)) }

func content(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7) + seed
	}
	return b
}

type file struct {
	hdr  tar.Header
	data []byte
}

// makeTar writes files in format, then extra zero bytes (a tar program's
// record padding).
func makeTar(t testing.TB, format tar.Format, files []file, extra int) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := f.hdr
		h.Format = format
		h.Size = int64(len(f.data))
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write(f.data)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	buf.Write(make([]byte, extra))
	return buf.Bytes()
}

func sampleFiles() []file {
	long := strings.Repeat("long-directory-name/", 8) + "and-a-file-name-that-goes-on.txt"
	return []file{
		{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{hdr: tar.Header{Name: "etc/small"}, data: content(10, 1)},
		{hdr: tar.Header{Name: "etc/exactly64"}, data: content(64, 2)},
		{hdr: tar.Header{Name: "etc/just65"}, data: content(65, 3)},
		{hdr: tar.Header{Name: "etc/empty"}},
		{hdr: tar.Header{Name: "usr/bin/big", Mode: 0o755}, data: content(70000, 4)},
		{hdr: tar.Header{Name: "usr/bin/block", Mode: 0o755}, data: content(512, 5)},
		{hdr: tar.Header{Name: "usr/bin/hard", Typeflag: tar.TypeLink, Linkname: "usr/bin/big"}},
		{hdr: tar.Header{Name: "usr/bin/sym", Typeflag: tar.TypeSymlink, Linkname: "big"}},
		{hdr: tar.Header{Name: long}, data: content(3000, 6)},
		{hdr: tar.Header{Name: "usr/bin/ping", PAXRecords: map[string]string{"SCHILY.xattr.security.capability": "\x01\x00\x00\x02 \x00", "SCHILY.xattr.user.x": "y"}}, data: content(200, 7)},
		{hdr: tar.Header{Name: "usr/bin/again"}, data: content(70000, 4)}, // same content as big
	}
}

func TestLayerRoundTrip(t *testing.T) {
	for _, c := range []struct {
		name   string
		format tar.Format
		extra  int
	}{{"pax", tar.FormatPAX, 0}, {"gnu", tar.FormatGNU, 8192}, {"ustar-ish", tar.FormatPAX, 512}} {
		t.Run(c.name, func(t *testing.T) {
			repo := newRepo(t)
			files := sampleFiles()
			if c.format == tar.FormatGNU {
				files[10].hdr.PAXRecords = nil // GNU has no PAX records
			}
			layer := makeTar(t, c.format, files, c.extra)
			diffID := sha(layer)
			id, stored, err := ImportLayer(repo, diffID, bytes.NewReader(layer))
			if err != nil || !stored {
				t.Fatalf("ImportLayer: %v, stored %v", err, stored)
			}
			rc, err := LayerTar(repo, diffID)
			if err != nil {
				t.Fatal(err)
			}
			back, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, layer) {
				t.Fatalf("LayerTar gave %d bytes, not the %d imported", len(back), len(layer))
			}
			// The split: exactly the regular files over 64 bytes are
			// objects, once each, in first-use order.
			var want [][]byte
			seen := map[string]bool{}
			var external, wantChunks int
			for _, f := range files {
				if f.hdr.Typeflag == 0 && len(f.data) > InlineMax {
					wantChunks++
					d, _ := verity.DigestReader(verity.SHA256, bytes.NewReader(f.data))
					external += len(f.data)
					if !seen[string(d)] {
						seen[string(d)] = true
						want = append(want, d)
					}
				}
			}
			f, gotID, err := repo.OpenStream(LayerID(diffID))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			sr, err := splitstream.Open(f, st.Size(), verity.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(gotID, id) || sr.ContentType != splitstream.ContentTypeLayer || sr.StreamSize != uint64(len(layer)) {
				t.Errorf("stream id %x (ImportLayer said %x), type %#x, size %d", gotID, id, sr.ContentType, sr.StreamSize)
			}
			if fmt.Sprintf("%x", sr.ObjectRefs) != fmt.Sprintf("%x", want) {
				t.Errorf("objects %x\nwant    %x", sr.ObjectRefs, want)
			}
			secs, err := splitstream.ReadAll(sr, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			var inline, chunks int
			for _, s := range secs {
				inline += len(s.Inline)
				if s.Object != nil {
					chunks++
				}
			}
			if inline != len(layer)-external || chunks != wantChunks || wantChunks != 6 {
				t.Errorf("%d inline bytes, %d external chunks; want %d and %d", inline, chunks, len(layer)-external, wantChunks)
			}
			t.Logf("%s: %d-byte tar, stream of %d bytes, %d objects", c.name, len(layer), st.Size(), len(sr.ObjectRefs))
		})
	}
}

// countFiles counts the regular files and symlinks under dir.
func countFiles(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("read although stored") }

func TestImportTwice(t *testing.T) {
	repo := newRepo(t)
	layer := makeTar(t, tar.FormatPAX, sampleFiles(), 0)
	diffID := sha(layer)
	if _, ok, _ := HasLayer(repo, diffID); ok {
		t.Fatal("HasLayer before import")
	}
	id1, _, err := ImportLayer(repo, diffID, bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	before := countFiles(t, repo.Path())
	id2, stored, err := ImportLayer(repo, diffID, failReader{})
	if err != nil || stored || !bytes.Equal(id1, id2) {
		t.Fatalf("second import: %v, stored %v, id %x vs %x", err, stored, id2, id1)
	}
	if after := countFiles(t, repo.Path()); after != before {
		t.Errorf("%d files after the second import, %d before", after, before)
	}
	streams, _ := os.ReadDir(filepath.Join(repo.Path(), "streams"))
	if len(streams) != 1 {
		t.Errorf("streams/ holds %d entries", len(streams))
	}
	if _, ok, _ := HasLayer(repo, diffID); !ok {
		t.Error("HasLayer after import")
	}
}

func TestImportBad(t *testing.T) {
	repo := newRepo(t)
	layer := makeTar(t, tar.FormatPAX, sampleFiles(), 0)
	wrong := sha([]byte("other"))
	if _, _, err := ImportLayer(repo, wrong, bytes.NewReader(layer)); err == nil || !strings.Contains(err.Error(), "digest") {
		t.Errorf("wrong diff_id: %v", err)
	}
	if _, ok, _ := HasLayer(repo, wrong); ok {
		t.Error("a layer with a wrong diff_id was registered")
	}
	cut := layer[:len(layer)-2000]
	if _, _, err := ImportLayer(repo, sha(cut), bytes.NewReader(cut)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated tar: %v", err)
	}
	bad := bytes.Clone(layer)
	bad[0] ^= 1 // the first header's checksum no longer holds
	if _, _, err := ImportLayer(repo, sha(bad), bytes.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("bad checksum: %v", err)
	}
	if _, _, err := ImportLayer(repo, "sha256:xyz", bytes.NewReader(layer)); err == nil {
		t.Error("accepted a malformed diff_id")
	}
	if _, err := LayerTar(repo, sha(layer)); !errors.Is(err, ErrNotFound) {
		t.Errorf("LayerTar of a missing layer: %v", err)
	}
}

// replace puts new content at path as a new file (fs-verity or not).
func replace(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readLayer(repo *objects.Repository, diffID string) error {
	rc, err := LayerTar(repo, diffID)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func TestDamagedLayer(t *testing.T) {
	repo := newRepo(t)
	layer := makeTar(t, tar.FormatPAX, sampleFiles(), 0)
	diffID := sha(layer)
	id, _, err := ImportLayer(repo, diffID, bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	streamObj := filepath.Join(repo.Path(), "objects", objects.PayloadForDigest(id))
	orig, _ := os.ReadFile(streamObj)

	// A damaged stream object: its digest no longer matches.
	damaged := bytes.Clone(orig)
	damaged[len(damaged)-3] ^= 0xff
	replace(t, streamObj, damaged)
	err = readLayer(repo, diffID)
	if !errors.Is(err, verity.ErrMismatch) || !strings.Contains(err.Error(), LayerID(diffID)) {
		t.Errorf("damaged stream: %v", err)
	}
	t.Logf("damaged stream: %v", err)

	// A malformed stream registered under the layer's name.
	junk := []byte("SplitStream but not really")
	if _, err := repo.WriteStream(LayerID(diffID), junk, ""); err != nil {
		t.Fatal(err)
	}
	err = readLayer(repo, diffID)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), diffID+": its stream") || strings.Count(err.Error(), diffID) != 1 {
		t.Errorf("malformed stream: %v", err)
	}
	t.Logf("malformed stream: %v", err)

	// The stream intact, one of its objects changed.
	replace(t, streamObj, orig)
	if err := repo.RegisterStream(LayerID(diffID), id, ""); err != nil {
		t.Fatal(err)
	}
	if err := readLayer(repo, diffID); err != nil {
		t.Fatalf("restored stream: %v", err)
	}
	d, _ := verity.DigestReader(verity.SHA256, bytes.NewReader(content(3000, 6)))
	obj := filepath.Join(repo.Path(), "objects", objects.PayloadForDigest(d))
	replace(t, obj, content(3000, 9))
	err = readLayer(repo, diffID)
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), objects.PayloadForDigest(d)) {
		t.Errorf("changed object: %v", err)
	}
	t.Logf("changed object: %v", err)
	replace(t, obj, content(2999, 6))
	if err := readLayer(repo, diffID); !errors.Is(err, ErrCorrupt) {
		t.Errorf("short object: %v", err)
	}
}

// storeTestImage imports two layers and stores an image of them.
func storeTestImage(t *testing.T, repo *objects.Repository, name string) (manifest, config []byte, diffIDs []string) {
	t.Helper()
	for i := range 2 {
		files := sampleFiles()[i*3 : i*3+6]
		layer := makeTar(t, tar.FormatPAX, files, 0)
		diffIDs = append(diffIDs, sha(layer))
		if _, _, err := ImportLayer(repo, sha(layer), bytes.NewReader(layer)); err != nil {
			t.Fatal(err)
		}
	}
	config, _ = json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	manifest, _ = json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": mediaTypeOCIConfig, "digest": sha(config), "size": len(config)},
		"layers": []map[string]any{
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha([]byte("a")), "size": 1},
			{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha([]byte("b")), "size": 1},
		},
	})
	img, err := StoreImage(repo, manifest, config, name)
	if err != nil {
		t.Fatal(err)
	}
	if img.ManifestDigest != sha(manifest) || img.ConfigDigest != sha(config) || len(img.DiffIDs) != 2 {
		t.Fatalf("StoreImage: %+v", img)
	}
	return manifest, config, diffIDs
}

func TestImages(t *testing.T) {
	repo := newRepo(t)
	manifest, config, diffIDs := storeTestImage(t, repo, "quay.io/app:1%")
	mdigest, cdigest := sha(manifest), sha(config)

	link, err := os.Readlink(filepath.Join(repo.Path(), "streams/refs/oci/quay.io%2Fapp:1%25"))
	if err != nil || link != "../../oci-manifest-"+mdigest {
		t.Errorf("tag link %q, %v", link, err)
	}
	if err := Tag(repo, mdigest, "second"); err != nil {
		t.Fatal(err)
	}
	list, err := List(repo)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, img := range list {
		got = append(got, fmt.Sprintf("%s %s %s", img.Name, img.ManifestDigest, img.ConfigDigest))
	}
	want := []string{"quay.io/app:1% " + mdigest + " " + cdigest, "second " + mdigest + " " + cdigest}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("List:\n%v\nwant\n%v", got, want)
	}
	if m, err := Manifest(repo, mdigest); err != nil || !bytes.Equal(m, manifest) {
		t.Errorf("Manifest: %v", err)
	}
	if c, err := Config(repo, cdigest); err != nil || !bytes.Equal(c, config) {
		t.Errorf("Config: %v", err)
	}

	// The streams' references, as composefs-rs makes them.
	mref := streamRefs(t, repo, ManifestID(mdigest))
	cref := streamRefs(t, repo, ConfigID(cdigest))
	l0, _, _ := HasLayer(repo, diffIDs[0])
	cs, _, _ := repo.HasStream(ConfigID(cdigest))
	if len(mref) != 3 || !bytes.Equal(mref["config:"+cdigest], cs) || !bytes.Equal(mref[diffIDs[0]], l0) {
		t.Errorf("manifest stream refs %x", mref)
	}
	if len(cref) != 2 || !bytes.Equal(cref[diffIDs[0]], l0) {
		t.Errorf("config stream refs %x", cref)
	}

	// Storing again changes nothing; a missing layer is an error.
	before := countFiles(t, repo.Path())
	if _, err := StoreImage(repo, manifest, config, ""); err != nil {
		t.Fatal(err)
	}
	if after := countFiles(t, repo.Path()); after != before {
		t.Errorf("%d files after storing again, %d before", after, before)
	}
	if _, err := StoreImage(newRepo(t), manifest, config, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("layers missing: %v", err)
	}
	if _, err := StoreImage(repo, manifest, append(config, ' '), ""); err == nil {
		t.Error("config digest mismatch accepted")
	}

	// Recording the composefs image.
	imageID, err := repo.WriteImage([]byte("an EROFS image, as far as this test cares"))
	if err != nil {
		t.Fatal(err)
	}
	if err := SetImageID(repo, mdigest, ImageRefKeyV1, imageID, "second"); err != nil {
		t.Fatal(err)
	}
	img, err := Resolve(repo, "second")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img.ImageRefs[1], imageID) || img.ImageRefs[2] != nil || fmt.Sprint(img.DiffIDs) != fmt.Sprint(diffIDs) {
		t.Errorf("after SetImageID: %+v", img)
	}
	cref = streamRefs(t, repo, ConfigID(cdigest))
	if !bytes.Equal(cref[ImageRefKeyV1], imageID) || !bytes.Equal(cref[diffIDs[1]], mustLayer(t, repo, diffIDs[1])) {
		t.Errorf("config stream refs after SetImageID %x", cref)
	}
	if err := SetImageID(repo, mdigest, "composefs.other", imageID, ""); err == nil {
		t.Error("recorded an image under a key that is no image's")
	}

	// Untag.
	if err := Untag(repo, "quay.io/app:1%"); err != nil {
		t.Fatal(err)
	}
	if err := Untag(repo, "quay.io/app:1%"); err == nil {
		t.Error("untagged twice")
	}
	if _, err := Resolve(repo, "quay.io/app:1%"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Resolve after Untag: %v", err)
	}
	list, _ = List(repo)
	if len(list) != 1 || list[0].Name != "second" {
		t.Errorf("List after Untag: %v", list)
	}
	if err := Tag(repo, sha([]byte("nothing")), "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("tagging a missing image: %v", err)
	}
	if err := Tag(repo, mdigest, "@sha256:x"); err == nil {
		t.Error("tag with a leading @")
	}
}

func mustLayer(t *testing.T, repo *objects.Repository, diffID string) []byte {
	id, ok, err := HasLayer(repo, diffID)
	if !ok || err != nil {
		t.Fatalf("layer %s: %v", diffID, err)
	}
	return id
}

func streamRefs(t *testing.T, repo *objects.Repository, cid string) map[string][]byte {
	t.Helper()
	f, _, err := repo.OpenStream(cid)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, _ := f.Stat()
	sr, err := splitstream.Open(f, st.Size(), repo.Algorithm())
	if err != nil {
		t.Fatal(err)
	}
	return sr.NamedRefs
}

func TestDecodeTag(t *testing.T) {
	for _, name := range []string{"a/b", "100%", "%2F", "x%25y/z", "plain:tag", "%", "%2"} {
		if got := decodeTag(encodeTag(name)); got != name {
			t.Errorf("%q encoded %q decoded %q", name, encodeTag(name), got)
		}
	}
	if got := decodeTag("a%41b"); got != "a%41b" {
		t.Errorf("unknown escape: %q", got)
	}
}

// memStore keeps objects in memory.
type memStore map[string][]byte

func (m memStore) WriteObject(src io.Reader, size int64) ([]byte, error) {
	data, err := io.ReadAll(src)
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, io.ErrUnexpectedEOF
	}
	d, _ := verity.DigestReader(verity.SHA256, bytes.NewReader(data))
	m[string(d)] = data
	return d, nil
}

// FuzzSplitTar: any input is split or refused, never a panic, and what is
// split comes back whole, its objects all regular files over 64 bytes.
func FuzzSplitTar(f *testing.F) {
	f.Add(makeTar(f, tar.FormatPAX, sampleFiles()[:7], 0))
	f.Add(makeTar(f, tar.FormatGNU, sampleFiles()[8:10], 1024))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		store := memStore{}
		w, _ := splitstream.NewWriter(store, verity.SHA256, splitstream.ContentTypeLayer)
		if err := splitTar(w, bytes.NewReader(data)); err != nil {
			return
		}
		ss, err := w.Finish()
		if err != nil {
			t.Fatal(err)
		}
		sr, err := splitstream.OpenBytes(ss, verity.SHA256)
		if err != nil {
			t.Fatal(err)
		}
		secs, err := splitstream.ReadAll(sr, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var back []byte
		for _, s := range secs {
			if s.Object == nil {
				back = append(back, s.Inline...)
				continue
			}
			obj := store[string(s.Object)]
			if len(obj) <= InlineMax {
				t.Fatalf("an object of %d bytes", len(obj))
			}
			back = append(back, obj...)
		}
		if !bytes.Equal(back, data) || sr.StreamSize != uint64(len(data)) {
			t.Fatalf("split, but %d bytes back of %d", len(back), len(data))
		}
	})
}

// rawHeader is a ustar header block with its checksum.
func rawHeader(name string, typ byte, size int64) []byte {
	h := make([]byte, block)
	copy(h, name)
	copy(h[100:], "0000644\x00")
	copy(h[124:], fmt.Sprintf("%011o\x00", size))
	copy(h[136:], "00000000000\x00")
	h[156] = typ
	copy(h[257:], "ustar\x0000")
	copy(h[148:], "        ")
	var sum int
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:], fmt.Sprintf("%06o\x00 ", sum))
	return h
}

// TestPAXSize: a PAX size record, not the header's size field, says how
// long the entry is, and so whether it becomes an object.
func TestPAXSize(t *testing.T) {
	rec := "12 size=100\n"
	var layer []byte
	layer = append(layer, rawHeader("PaxHeaders/f", 'x', int64(len(rec)))...)
	layer = append(layer, rec...)
	layer = append(layer, make([]byte, block-len(rec))...)
	layer = append(layer, rawHeader("f", '0', 0)...)
	data := content(100, 3)
	layer = append(layer, data...)
	layer = append(layer, make([]byte, block-100+2*block)...)

	// The standard library reads it the same way.
	tr := tar.NewReader(bytes.NewReader(layer))
	if h, err := tr.Next(); err != nil || h.Size != 100 {
		t.Fatalf("archive/tar: %v, %+v", err, h)
	}

	store := memStore{}
	w, _ := splitstream.NewWriter(store, verity.SHA256, splitstream.ContentTypeLayer)
	if err := splitTar(w, bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	d, _ := verity.DigestReader(verity.SHA256, bytes.NewReader(data))
	if len(store) != 1 || !bytes.Equal(store[string(d)], data) || w.ExternalChunks() != 1 {
		t.Errorf("%d objects; want the 100-byte file", len(store))
	}

	repo := newRepo(t)
	if _, _, err := ImportLayer(repo, sha(layer), bytes.NewReader(layer)); err != nil {
		t.Fatal(err)
	}
	rc, err := LayerTar(repo, sha(layer))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(back, layer) {
		t.Errorf("round trip: %v", err)
	}

	// Sparse files are refused, as composefs-rs refuses them.
	sparse := append(rawHeader("s", 'S', 0), make([]byte, 2*block)...)
	if err := splitTar(w, bytes.NewReader(sparse)); err == nil || !strings.Contains(err.Error(), "sparse") {
		t.Errorf("sparse: %v", err)
	}
}
