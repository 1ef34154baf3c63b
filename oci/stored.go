package oci

import (
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// maxLayerStream bounds the split stream of one layer read into memory:
// its inline part is tar headers and small files, its external part
// object references.
const maxLayerStream = 1 << 30

// LayerContentID is the name composefs-rs registers a layer's split
// stream under: "oci-layer-<diff_id>".
func LayerContentID(diffID string) string { return "oci-layer-" + diffID }

// ApplyStoredLayer applies the layer whose uncompressed tar has diffID
// from its split stream in repo, as a pull stored it before, when repo
// has it (ok false otherwise, with nothing applied): the tar is rebuilt
// from the stream and its objects, checked against diffID, and applied as
// ApplyLayer would, its files' digests computed without writing them
// again. A layer shared by images is so downloaded and stored once.
func (b *Builder) ApplyStoredLayer(repo *objects.Repository, diffID string) (ok bool, err error) {
	cid := LayerContentID(diffID)
	id, ok, err := repo.HasStream(cid)
	if err != nil || !ok {
		return false, err
	}
	f, _, err := repo.OpenStream(cid)
	if err != nil {
		return false, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxLayerStream+1))
	f.Close()
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", cid, err)
	}
	if len(data) > maxLayerStream {
		return false, fmt.Errorf("stream %s: over %d bytes", cid, maxLayerStream)
	}
	s, err := objects.ParseSplitstream(data)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", cid, err)
	}
	pr, pw := io.Pipe()
	go func() {
		_, err := s.Rebuild(pw, repo)
		pw.CloseWithError(err)
	}()
	// The objects are in repo already: only their digests are needed.
	saved, savedStreams := b.objects, b.streams
	b.objects, b.streams = digestOnly{repo.Algorithm()}, nil
	got, err := b.ApplyLayer(pr)
	b.objects, b.streams = saved, savedStreams
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		return false, fmt.Errorf("stream %s: %w", cid, err)
	}
	if got != diffID {
		return false, fmt.Errorf("stream %s: rebuilds a tar of %s", cid, got)
	}
	if b.layerStream == nil {
		b.layerStream = map[string][]byte{}
	}
	b.layerStream[diffID] = id
	return true, nil
}

// digestOnly is an ObjectWriter that computes the digest of what it is
// given and stores nothing.
type digestOnly struct{ alg verity.Algorithm }

func (d digestOnly) WriteObject(r io.Reader, size int64) ([]byte, error) {
	digest, err := verity.DigestReader(d.alg, io.LimitReader(r, size))
	if err != nil {
		return nil, err
	}
	return digest, nil
}

// StoredImage is an OCI image as a pull stored it in a repository.
type StoredImage struct {
	// Tag is the name it was pulled as ("" when looked up by digest).
	Tag string
	// ManifestDigest and ConfigDigest are "sha256:<hex>".
	ManifestDigest, ConfigDigest string
	// Manifest and Config are the JSON documents as pulled.
	Manifest, Config []byte
	// ImageID is the composefs image made of it for the repository's
	// format, nil when there is none (an image composefs-rs pulled
	// without making one).
	ImageID []byte
}

// TagRef is the stream ref a tag is kept as: "oci/" and the tag with "/"
// and "%" percent-encoded, as composefs-rs names it.
func TagRef(tag string) string {
	return "oci/" + strings.ReplaceAll(strings.ReplaceAll(tag, "%", "%25"), "/", "%2F")
}

// untagRef is TagRef's inverse on a name below "oci/".
func untagRef(name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(name, "%2F", "/"), "%25", "%")
}

// Tags lists the tags of the images stored in repo, each with the
// content identifier of its manifest's stream.
func Tags(repo *objects.Repository) (map[string]string, error) {
	refs, err := repo.StreamRefs("oci")
	if err != nil {
		return nil, err
	}
	tags := make(map[string]string, len(refs))
	for name, cid := range refs {
		tags[untagRef(name)] = cid
	}
	return tags, nil
}

// LookupImage finds the image stored as tag, or by its manifest digest
// when tag is "@sha256:<hex>", and reads its manifest and config back,
// checked against their digests.
func LookupImage(repo *objects.Repository, tag string) (*StoredImage, error) {
	var mcid string
	if d, ok := strings.CutPrefix(tag, "@"); ok {
		mcid = "oci-manifest-" + d
	} else {
		cid, err := repo.StreamRef(TagRef(tag))
		if err != nil {
			return nil, fmt.Errorf("image %q: %w", tag, err)
		}
		mcid = cid
		if !strings.HasPrefix(cid, "oci-manifest-") {
			return nil, fmt.Errorf("image %q: its ref names %q, not a manifest", tag, cid)
		}
	}
	img := &StoredImage{Tag: tag, ManifestDigest: strings.TrimPrefix(mcid, "oci-manifest-")}
	if strings.HasPrefix(tag, "@") {
		img.Tag = ""
	}
	f, _, err := repo.OpenStream(mcid)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", tag, err)
	}
	ms, err := readStream(f, mcid)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", tag, err)
	}
	if img.Manifest, err = streamBytes(ms, repo); err != nil {
		return nil, fmt.Errorf("image %q: manifest: %w", tag, err)
	}
	if got := sha256Digest(img.Manifest); got != img.ManifestDigest {
		return nil, fmt.Errorf("image %q: the manifest stored is %s, not %s", tag, got, img.ManifestDigest)
	}
	var configStream []byte
	for name, id := range ms.NamedRefs {
		if d, ok := strings.CutPrefix(name, "config:"); ok {
			img.ConfigDigest, configStream = d, id
		}
	}
	if configStream == nil {
		return nil, fmt.Errorf("image %q: its manifest stream names no config", tag)
	}
	cf, err := repo.OpenVerified(configStream)
	if err != nil {
		return nil, fmt.Errorf("image %q: config: %w", tag, err)
	}
	cs, err := readStream(cf, "oci-config-"+img.ConfigDigest)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", tag, err)
	}
	if img.Config, err = streamBytes(cs, repo); err != nil {
		return nil, fmt.Errorf("image %q: config: %w", tag, err)
	}
	if got := sha256Digest(img.Config); got != img.ConfigDigest {
		return nil, fmt.Errorf("image %q: the config stored is %s, not %s", tag, got, img.ConfigDigest)
	}
	key := imageRefKeyV1
	if repo.ErofsVersion() == 2 {
		key = imageRefKeyV2
	}
	img.ImageID = cs.NamedRefs[key]
	return img, nil
}

// maxJSONStream bounds a manifest's or config's stream.
const maxJSONStream = 16 << 20

// readStream reads and parses the split stream in f, and closes f.
func readStream(f io.ReadCloser, name string) (*objects.Splitstream, error) {
	data, err := io.ReadAll(io.LimitReader(f, maxJSONStream+1))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	if len(data) > maxJSONStream {
		return nil, fmt.Errorf("stream %s: over %d bytes", name, maxJSONStream)
	}
	s, err := objects.ParseSplitstream(data)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	return s, nil
}

// streamBytes rebuilds a small stream's content.
func streamBytes(s *objects.Splitstream, repo *objects.Repository) ([]byte, error) {
	if s.Size > maxJSONStream {
		return nil, fmt.Errorf("%d bytes, over %d", s.Size, maxJSONStream)
	}
	var buf bytes.Buffer
	if _, err := s.Rebuild(&buf, repo); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DiffIDs are the diff_ids of the image's layers, from its config.
func (img *StoredImage) DiffIDs() ([]string, error) {
	j, err := parseImageJSON(img.Manifest, img.Config)
	if err != nil {
		return nil, err
	}
	return j.diffIDs, nil
}

// Merge applies the stored image's layers, in order, from their streams
// in repo to a new Builder, which writes nothing: for the entries or the
// image of another transform than the one pulled with.
func (img *StoredImage) Merge(repo *objects.Repository) (*Builder, error) {
	diffIDs, err := img.DiffIDs()
	if err != nil {
		return nil, err
	}
	b := NewBuilder(digestOnly{repo.Algorithm()})
	for _, d := range diffIDs {
		ok, err := b.ApplyStoredLayer(repo, d)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("image %s: layer %s is not in %s", img.ManifestDigest, d, repo.Path())
		}
	}
	return b, nil
}
