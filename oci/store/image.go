package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/splitstream"
)

// Config media types whose rootfs.diff_ids name the layers.
const (
	mediaTypeOCIConfig    = "application/vnd.oci.image.config.v1+json"
	mediaTypeDockerConfig = "application/vnd.docker.container.image.v1+json"
)

// maxJSON bounds a manifest or config read back from the repository.
const maxJSON = 16 << 20

// Image is an OCI image stored in the repository.
type Image struct {
	// Name is the tag (empty when looked up by digest).
	Name           string
	ManifestDigest string
	ConfigDigest   string
	// DiffIDs are the layers' diff_ids, lowest first.
	DiffIDs []string
	// ManifestStream and ConfigStream are the streams' object ids.
	ManifestStream, ConfigStream []byte
	// ImageRefs are the composefs images recorded for the config by
	// format version (1, 2), as SetImageID records them.
	ImageRefs map[int][]byte
	// Images are all the composefs images recorded for the config, by
	// their ref key (ImageKey): those of other transforms too.
	Images map[string][]byte
}

type manifestJSON struct {
	Config struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
}

type configJSON struct {
	RootFS struct {
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

func parseManifest(data []byte) (*manifestJSON, error) {
	var m manifestJSON
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if _, err := checkDigest(m.Config.Digest); err != nil {
		return nil, fmt.Errorf("manifest: config: %w", err)
	}
	if t := m.Config.MediaType; t != mediaTypeOCIConfig && t != mediaTypeDockerConfig {
		return nil, fmt.Errorf("manifest: config media type %q: not a container image", t)
	}
	return &m, nil
}

func parseDiffIDs(config []byte) ([]string, error) {
	var c configJSON
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	for _, d := range c.RootFS.DiffIDs {
		if _, err := checkDigest(d); err != nil {
			return nil, fmt.Errorf("config: diff_id: %w", err)
		}
	}
	return c.RootFS.DiffIDs, nil
}

// StoreImage stores an image whose layers are all stored (ImportLayer):
// its config as the stream oci-config-<digest>, naming each layer stream
// by diff_id, and its manifest as oci-manifest-<digest>, naming the
// config stream "config:<digest>" and the layers by diff_id; streams
// already there are kept, as composefs-rs keeps them. A name tags the
// image (Tag). The manifest must be a container image's, its config
// digest the config's, and it must have as many layers as the config has
// diff_ids.
func StoreImage(repo *objects.Repository, manifest, config []byte, name string) (*Image, error) {
	return storeImage(repo, manifest, config, name, "", nil)
}

// StoreImageWithID is StoreImage for an image whose composefs image is
// made already (imageID, written with Repository.WriteImage): its config
// stream names it under key (ImageKey) from the start, as SetImageID
// would, so that no stream is written twice. A config stream that was
// there is kept as it is: SetImageID then records the image when the
// returned Images lack it.
func StoreImageWithID(repo *objects.Repository, manifest, config []byte, name, key string, imageID []byte) (*Image, error) {
	if !strings.HasPrefix(key, ImageRefKey) {
		return nil, fmt.Errorf("image: %q is no composefs image ref key", key)
	}
	if len(imageID) != repo.Algorithm().Size() {
		return nil, fmt.Errorf("image: composefs image id of %d bytes in a %s repository", len(imageID), repo.Algorithm())
	}
	return storeImage(repo, manifest, config, name, key, imageID)
}

// imageRefKeys are the named refs of a config stream to its composefs
// image, by format version.
var imageRefKeys = map[int]string{1: ImageRefKeyV1, 2: ImageRefKey}

// ImageKey is the named ref under which a config stream records its
// composefs image of format version (1 or 2): composefs-rs's key for the
// image of its default transform (variant ""), the key with
// "."+variant added for another ("xattrs=keep-user-xattrs", as
// composefs-rs names its boot images of that mode), so that images of
// several transforms are kept side by side and composefs-rs never takes
// one of them for its own.
func ImageKey(version int, variant string) (string, error) {
	key := imageRefKeys[version]
	if key == "" {
		return "", fmt.Errorf("composefs-rs records images of format 1 and 2, not %d", version)
	}
	if variant != "" {
		key += "." + variant
	}
	return key, nil
}

// CheckImage checks a manifest and its config as StoreImage will: a
// container image's manifest, naming this config, with as many layers as
// the config has diff_ids. A pull checks them before it downloads.
func CheckImage(manifest, config []byte) error {
	_, _, err := checkImage(manifest, config)
	return err
}

// checkImage is CheckImage, giving the config's digest and diff_ids.
func checkImage(manifest, config []byte) (cdigest string, diffIDs []string, err error) {
	mdigest := digestBytes("sha256", manifest)
	m, err := parseManifest(manifest)
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", mdigest, err)
	}
	calg, _ := checkDigest(m.Config.Digest)
	cdigest = m.Config.Digest
	if got := digestBytes(calg, config); got != cdigest {
		return "", nil, fmt.Errorf("image %s: config digest is %s, the manifest says %s", mdigest, got, cdigest)
	}
	diffIDs, err = parseDiffIDs(config)
	if err != nil {
		return "", nil, fmt.Errorf("image %s: %w", mdigest, err)
	}
	if len(diffIDs) != len(m.Layers) {
		return "", nil, fmt.Errorf("image %s: %d layers, %d diff_ids", mdigest, len(m.Layers), len(diffIDs))
	}
	return cdigest, diffIDs, nil
}

func storeImage(repo *objects.Repository, manifest, config []byte, name, key string, imageID []byte) (*Image, error) {
	mdigest := digestBytes("sha256", manifest)
	cdigest, diffIDs, err := checkImage(manifest, config)
	if err != nil {
		return nil, err
	}
	layers := map[string][]byte{}
	for _, d := range diffIDs {
		id, ok, err := repo.HasStream(LayerID(d))
		if err == nil && !ok {
			err = fmt.Errorf("layer %s: %w", d, ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", mdigest, err)
		}
		layers[d] = id
	}
	img := &Image{ManifestDigest: mdigest, ConfigDigest: cdigest, DiffIDs: diffIDs}
	img.ConfigStream, err = ensureJSONStream(repo, ConfigID(cdigest), splitstream.ContentTypeConfig, config, func(w *splitstream.Writer) error {
		for _, d := range diffIDs {
			if err := w.AddStreamRef(d, layers[d]); err != nil {
				return err
			}
		}
		if imageID != nil {
			return w.AddStreamRef(key, imageID)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", mdigest, err)
	}
	img.ManifestStream, err = ensureJSONStream(repo, ManifestID(mdigest), splitstream.ContentTypeManifest, manifest, func(w *splitstream.Writer) error {
		return manifestRefs(w, cdigest, img.ConfigStream, diffIDs, layers)
	})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", mdigest, err)
	}
	if imageID != nil {
		// What the config stream records, whether written now or before.
		stored, err := Open(repo, mdigest)
		if err != nil {
			return nil, err
		}
		img.ImageRefs, img.Images = stored.ImageRefs, stored.Images
	}
	if name != "" {
		if err := Tag(repo, mdigest, name); err != nil {
			return nil, err
		}
		img.Name = name
	}
	return img, nil
}

// manifestRefs adds a manifest stream's refs: the config, then the layers
// in diff_id order.
func manifestRefs(w *splitstream.Writer, cdigest string, configStream []byte, diffIDs []string, layers map[string][]byte) error {
	if err := w.AddStreamRef("config:"+cdigest, configStream); err != nil {
		return err
	}
	for _, d := range diffIDs {
		if err := w.AddStreamRef(d, layers[d]); err != nil {
			return err
		}
	}
	return nil
}

// ensureJSONStream returns the stream cid, writing it when missing: data
// as its one object, refs added by refs.
func ensureJSONStream(repo *objects.Repository, cid string, ctype uint64, data []byte, refs func(*splitstream.Writer) error) ([]byte, error) {
	if id, ok, err := repo.HasStream(cid); err != nil || ok {
		return id, err
	}
	return writeJSONStream(repo, cid, ctype, data, refs)
}

func writeJSONStream(repo *objects.Repository, cid string, ctype uint64, data []byte, refs func(*splitstream.Writer) error) ([]byte, error) {
	w, err := splitstream.NewWriter(repo, repo.Algorithm(), ctype)
	if err != nil {
		return nil, err
	}
	if err := refs(w); err != nil {
		return nil, err
	}
	if _, err := w.WriteExternal(bytes.NewReader(data), int64(len(data))); err != nil {
		return nil, err
	}
	ss, err := w.Finish()
	if err != nil {
		return nil, err
	}
	return repo.WriteStream(cid, ss, "")
}

// readJSONStream reads the stream cid: its one object's bytes (checked
// against digest) and its named refs.
func readJSONStream(repo *objects.Repository, cid, digest string, ctype uint64) ([]byte, map[string][]byte, error) {
	alg, err := checkDigest(digest)
	if err != nil {
		return nil, nil, err
	}
	f, _, err := repo.OpenStream(cid)
	if errors.Is(err, objects.ErrNoStream) {
		return nil, nil, fmt.Errorf("%s: %w", cid, ErrNotFound)
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	sr, err := splitstream.Open(f, st.Size(), repo.Algorithm())
	if err == nil && sr.ContentType != ctype {
		err = fmt.Errorf("content type %#x, want %#x", sr.ContentType, ctype)
	}
	if err == nil && len(sr.ObjectRefs) != 1 {
		err = fmt.Errorf("%d objects, want 1", len(sr.ObjectRefs))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w: %w", cid, ErrCorrupt, err)
	}
	defer sr.Close()
	if sr.StreamSize > maxJSON {
		return nil, nil, fmt.Errorf("stream %s: %w: %d bytes of JSON", cid, ErrCorrupt, sr.StreamSize)
	}
	obj, err := repo.OpenVerified(sr.ObjectRefs[0])
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w: %w", cid, ErrCorrupt, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(io.LimitReader(obj, maxJSON+1))
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", cid, err)
	}
	if got := digestBytes(alg, data); got != digest {
		return nil, nil, fmt.Errorf("stream %s: %w: content digest %s", cid, ErrCorrupt, got)
	}
	return data, sr.NamedRefs, nil
}

// Manifest reads back the manifest stored by digest, checked against it.
func Manifest(repo *objects.Repository, digest string) ([]byte, error) {
	data, _, err := readJSONStream(repo, ManifestID(digest), digest, splitstream.ContentTypeManifest)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", digest, err)
	}
	return data, nil
}

// Config reads back the config stored by digest, checked against it.
func Config(repo *objects.Repository, digest string) ([]byte, error) {
	data, _, err := readJSONStream(repo, ConfigID(digest), digest, splitstream.ContentTypeConfig)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", digest, err)
	}
	return data, nil
}

// Open reads the image stored by manifest digest: its config digest,
// diff_ids, streams and recorded composefs images. Each layer must be
// stored and named by the config's stream.
func Open(repo *objects.Repository, manifestDigest string) (*Image, error) {
	mdata, mrefs, err := readJSONStream(repo, ManifestID(manifestDigest), manifestDigest, splitstream.ContentTypeManifest)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", manifestDigest, err)
	}
	m, err := parseManifest(mdata)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w: %w", manifestDigest, ErrCorrupt, err)
	}
	cdigest := m.Config.Digest
	cdata, crefs, err := readJSONStream(repo, ConfigID(cdigest), cdigest, splitstream.ContentTypeConfig)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", manifestDigest, err)
	}
	diffIDs, err := parseDiffIDs(cdata)
	if err != nil {
		return nil, fmt.Errorf("image %s: %w: %w", manifestDigest, ErrCorrupt, err)
	}
	img := &Image{ManifestDigest: manifestDigest, ConfigDigest: cdigest, DiffIDs: diffIDs, ImageRefs: map[int][]byte{}}
	img.ManifestStream, _, _ = repo.HasStream(ManifestID(manifestDigest))
	img.ConfigStream = mrefs["config:"+cdigest]
	if img.ConfigStream == nil {
		return nil, fmt.Errorf("image %s: %w: the manifest stream names no config stream", manifestDigest, ErrCorrupt)
	}
	for _, d := range diffIDs {
		if crefs[d] == nil {
			return nil, fmt.Errorf("image %s: %w: the config stream names no layer %s", manifestDigest, ErrCorrupt, d)
		}
	}
	if id := crefs[ImageRefKey]; id != nil {
		img.ImageRefs[2] = id
	}
	if id := crefs[ImageRefKeyV1]; id != nil {
		img.ImageRefs[1] = id
	}
	img.Images = map[string][]byte{}
	for k, id := range crefs {
		if strings.HasPrefix(k, ImageRefKey) {
			img.Images[k] = id
		}
	}
	return img, nil
}

func validTag(name string) error {
	if name == "" || strings.HasPrefix(name, "@") || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("tag %q: empty, NUL, or a leading '@' (kept for digests)", name)
	}
	return nil
}

// Tag names the image stored by manifest digest: streams/refs/oci/<name>,
// '%' and '/' of name escaped as composefs-rs escapes them. A tag already
// there is moved.
func Tag(repo *objects.Repository, manifestDigest, name string) error {
	if err := validTag(name); err != nil {
		return err
	}
	if _, err := checkDigest(manifestDigest); err != nil {
		return fmt.Errorf("tag %q: %w", name, err)
	}
	if err := repo.NameStream(ManifestID(manifestDigest), tagRef(name)); err != nil {
		if errors.Is(err, objects.ErrNoStream) {
			err = fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return fmt.Errorf("tag %q: %w", name, err)
	}
	return nil
}

// Untag removes a tag; the image stays until composefs-rs' gc.
func Untag(repo *objects.Repository, name string) error {
	if err := validTag(name); err != nil {
		return err
	}
	if err := repo.UnnameStream(tagRef(name)); err != nil {
		return fmt.Errorf("untag %q: %w", name, err)
	}
	return nil
}

// Resolve gives the image a tag names.
func Resolve(repo *objects.Repository, name string) (*Image, error) {
	if err := validTag(name); err != nil {
		return nil, err
	}
	cid, err := repo.StreamRef(tagRef(name))
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w: %w", name, ErrNotFound, err)
	}
	digest, ok := strings.CutPrefix(cid, manifestPrefix)
	if !ok {
		return nil, fmt.Errorf("tag %q: %w: names %s, not a manifest", name, ErrCorrupt, cid)
	}
	img, err := Open(repo, digest)
	if err != nil {
		return nil, fmt.Errorf("tag %q: %w", name, err)
	}
	img.Name = name
	return img, nil
}

// List gives the tagged images, sorted by name. A tag whose image cannot
// be read is left out with a warning, as composefs-rs leaves it out.
func List(repo *objects.Repository) ([]*Image, error) {
	refs, err := repo.StreamRefs(tagPrefix)
	if err != nil {
		return nil, err
	}
	var out []*Image
	for enc, cid := range refs {
		name := decodeTag(enc)
		digest, ok := strings.CutPrefix(cid, manifestPrefix)
		if !ok {
			continue
		}
		img, err := Open(repo, digest)
		if err != nil {
			slog.Warn("skipping an unreadable image", "tag", name, "err", err)
			continue
		}
		img.Name = name
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b *Image) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// SetImageID records imageID, a composefs image built from the image
// stored by manifest digest (and written with Repository.WriteImage),
// under key (ImageKey: composefs.image.v1 for format 1, composefs.image
// for format 2, with a variant for another transform), as composefs-rs
// does after a pull: the config stream is written again with the ref
// added, other refs kept, and so is the manifest stream, to name the new
// config stream. A name then tags the image. It is what keeps the
// composefs image from composefs-rs' gc.
func SetImageID(repo *objects.Repository, manifestDigest, key string, imageID []byte, name string) error {
	if !strings.HasPrefix(key, ImageRefKey) {
		return fmt.Errorf("image %s: %q is no composefs image ref key", manifestDigest, key)
	}
	if len(imageID) != repo.Algorithm().Size() {
		return fmt.Errorf("image %s: composefs image id of %d bytes in a %s repository", manifestDigest, len(imageID), repo.Algorithm())
	}
	img, err := Open(repo, manifestDigest)
	if err != nil {
		return err
	}
	mdata, _, err := readJSONStream(repo, ManifestID(manifestDigest), manifestDigest, splitstream.ContentTypeManifest)
	if err != nil {
		return fmt.Errorf("image %s: %w", manifestDigest, err)
	}
	cdata, crefs, err := readJSONStream(repo, ConfigID(img.ConfigDigest), img.ConfigDigest, splitstream.ContentTypeConfig)
	if err != nil {
		return fmt.Errorf("image %s: %w", manifestDigest, err)
	}
	crefs[key] = imageID
	configStream, err := writeJSONStream(repo, ConfigID(img.ConfigDigest), splitstream.ContentTypeConfig, cdata, func(w *splitstream.Writer) error {
		for _, d := range img.DiffIDs { // layers first, in order, as composefs-rs adds them
			if err := w.AddStreamRef(d, crefs[d]); err != nil {
				return err
			}
		}
		for _, k := range []string{ImageRefKey, ImageRefKeyV1} {
			if id := crefs[k]; id != nil {
				if err := w.AddStreamRef(k, id); err != nil {
					return err
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(crefs)) {
			if !slices.Contains(img.DiffIDs, k) && k != ImageRefKey && k != ImageRefKeyV1 {
				if err := w.AddStreamRef(k, crefs[k]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("image %s: config: %w", manifestDigest, err)
	}
	_, err = writeJSONStream(repo, ManifestID(manifestDigest), splitstream.ContentTypeManifest, mdata, func(w *splitstream.Writer) error {
		return manifestRefs(w, img.ConfigDigest, configStream, img.DiffIDs, crefs)
	})
	if err != nil {
		return fmt.Errorf("image %s: manifest: %w", manifestDigest, err)
	}
	if name != "" {
		return Tag(repo, manifestDigest, name)
	}
	return nil
}
