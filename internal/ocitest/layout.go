package ocitest

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// Compression is how BuildLayout stores a layer.
type Compression int

const (
	Gzip Compression = iota
	Zstd
	Uncompressed
)

// Layout describes what BuildLayout wrote.
type Layout struct {
	Dir string
	// Images are the layout's images, one per platform asked for.
	Images []LayoutImage
	// Index is the digest of the image index when there are several
	// platforms; empty otherwise.
	Index string
}

// LayoutImage is one image of a layout.
type LayoutImage struct {
	Platform     string // OS/ARCH
	Manifest     string // digest
	Config       string // digest
	ConfigBytes  []byte
	LayerDigests []string
	DiffIDs      []string
}

// LayoutOption changes what BuildLayout writes.
type LayoutOption func(*layoutOptions)

type layoutOptions struct {
	compressions []Compression
	ref          string
	platforms    []string
}

// WithCompression gives the layers' compression in order; layers beyond
// the list are gzip-compressed.
func WithCompression(c ...Compression) LayoutOption {
	return func(o *layoutOptions) { o.compressions = c }
}

// WithRef names the layout's image (or index) in index.json with an
// org.opencontainers.image.ref.name annotation.
func WithRef(name string) LayoutOption {
	return func(o *layoutOptions) { o.ref = name }
}

// WithPlatforms makes an image index with one image per platform
// (OS/ARCH), the same layers in each and the config saying which.
func WithPlatforms(p ...string) LayoutOption {
	return func(o *layoutOptions) { o.platforms = p }
}

// BuildLayout writes an OCI image layout in dir (created if missing)
// with one image of the given layer tars, bottom first, gzip-compressed
// unless WithCompression says otherwise. It adds to an existing layout's
// index.json, so a layout can hold several images under several refs.
func BuildLayout(t testing.TB, dir string, layers [][]byte, opts ...LayoutOption) Layout {
	t.Helper()
	var o layoutOptions
	for _, f := range opts {
		f(&o)
	}
	w := layoutWriter{t: t, dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755); err != nil {
		t.Fatal(err)
	}
	w.write("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))

	type descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int               `json:"size"`
		Platform    map[string]string `json:"platform,omitempty"`
		Annotations map[string]string `json:"annotations,omitempty"`
	}
	var blobs []descriptor
	var diffIDs []string
	for i, tarball := range layers {
		c := Gzip
		if i < len(o.compressions) {
			c = o.compressions[i]
		}
		blob, mt := compress(t, tarball, c)
		blobs = append(blobs, descriptor{MediaType: mt, Digest: w.blob(blob), Size: len(blob)})
		diffIDs = append(diffIDs, digest(tarball))
	}
	platforms := o.platforms
	if len(platforms) == 0 {
		platforms = []string{"linux/amd64"}
	}
	out := Layout{Dir: dir}
	var manifests []descriptor
	for _, p := range platforms {
		os, arch, _ := strings.Cut(p, "/")
		config := mustJSON(t, map[string]any{
			"architecture": arch,
			"os":           os,
			"config":       map[string]any{"Env": []string{"PATH=/usr/bin"}},
			"rootfs":       map[string]any{"type": "layers", "diff_ids": diffIDs},
		})
		cd := w.blob(config)
		manifest := mustJSON(t, map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.manifest.v1+json",
			"config":        descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: cd, Size: len(config)},
			"layers":        blobs,
		})
		md := w.blob(manifest)
		img := LayoutImage{Platform: p, Manifest: md, Config: cd, ConfigBytes: config, DiffIDs: diffIDs}
		for _, b := range blobs {
			img.LayerDigests = append(img.LayerDigests, b.Digest)
		}
		out.Images = append(out.Images, img)
		manifests = append(manifests, descriptor{MediaType: "application/vnd.oci.image.manifest.v1+json", Digest: md, Size: len(manifest),
			Platform: map[string]string{"os": os, "architecture": arch}})
	}
	top := manifests[0]
	top.Platform = nil
	if len(platforms) > 1 {
		index := mustJSON(t, map[string]any{
			"schemaVersion": 2,
			"mediaType":     "application/vnd.oci.image.index.v1+json",
			"manifests":     manifests,
		})
		out.Index = w.blob(index)
		top = descriptor{MediaType: "application/vnd.oci.image.index.v1+json", Digest: out.Index, Size: len(index)}
	}
	if o.ref != "" {
		top.Annotations = map[string]string{"org.opencontainers.image.ref.name": o.ref}
	}
	// Add to index.json.
	var index struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType,omitempty"`
		Manifests     []json.RawMessage `json:"manifests"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, "index.json")); err == nil {
		if err := json.Unmarshal(b, &index); err != nil {
			t.Fatalf("%s/index.json: %v", dir, err)
		}
	}
	index.SchemaVersion, index.MediaType = 2, "application/vnd.oci.image.index.v1+json"
	index.Manifests = append(index.Manifests, mustJSON(t, top))
	w.write("index.json", mustJSON(t, index))
	return out
}

type layoutWriter struct {
	t   testing.TB
	dir string
}

func (w layoutWriter) write(name string, b []byte) {
	if err := os.WriteFile(filepath.Join(w.dir, name), b, 0o644); err != nil {
		w.t.Fatal(err)
	}
}

// blob stores b under its digest and returns the digest.
func (w layoutWriter) blob(b []byte) string {
	d := digest(b)
	w.write(filepath.Join("blobs", "sha256", strings.TrimPrefix(d, "sha256:")), b)
	return d
}

// BlobPath returns where a layout keeps the blob with digest d.
func BlobPath(dir, d string) string {
	return filepath.Join(dir, "blobs", "sha256", strings.TrimPrefix(d, "sha256:"))
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func mustJSON(t testing.TB, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// compress returns tarball compressed by c and its layer media type.
func compress(t testing.TB, tarball []byte, c Compression) ([]byte, string) {
	var buf bytes.Buffer
	switch c {
	case Uncompressed:
		return tarball, "application/vnd.oci.image.layer.v1.tar"
	case Gzip:
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(tarball); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), "application/vnd.oci.image.layer.v1.tar+gzip"
	case Zstd:
		zw, err := zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := zw.Write(tarball); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes(), "application/vnd.oci.image.layer.v1.tar+zstd"
	}
	t.Fatalf("compression %d", c)
	return nil, ""
}
