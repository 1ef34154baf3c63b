package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/objects"
)

// composefs-rs' named refs from an OCI config's splitstream to the
// composefs image made of it, by image format.
const (
	imageRefKeyV2 = "composefs.image"
	imageRefKeyV1 = "composefs.image.v1"
)

// ErrImageJSON is wrapped when a manifest or config does not fit the
// layers applied.
var ErrImageJSON = errors.New("OCI manifest or config does not match")

// imageJSON is what StoreImage reads of a manifest and a config.
type imageJSON struct {
	configDigest string
	diffIDs      []string
}

// parseImageJSON reads the config digest a manifest names and the
// diff_ids a config lists.
func parseImageJSON(manifest, config []byte) (*imageJSON, error) {
	var m struct {
		Config *struct {
			Digest string `json:"digest"`
		} `json:"config"`
	}
	var c struct {
		RootFS *struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrImageJSON, err)
	}
	if err := json.Unmarshal(config, &c); err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrImageJSON, err)
	}
	if m.Config == nil || m.Config.Digest == "" {
		return nil, fmt.Errorf("%w: manifest names no config", ErrImageJSON)
	}
	if c.RootFS == nil {
		return nil, fmt.Errorf("%w: config has no rootfs", ErrImageJSON)
	}
	for _, d := range append([]string{m.Config.Digest}, c.RootFS.DiffIDs...) {
		if h, ok := strings.CutPrefix(d, "sha256:"); !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("%w: digest %q is not sha256:<64 hex digits>", ErrImageJSON, d)
		}
	}
	return &imageJSON{configDigest: m.Config.Digest, diffIDs: c.RootFS.DiffIDs}, nil
}

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// StoreImage writes what composefs-rs keeps of a pulled OCI image besides
// its layers, so that its cfsctl oci commands find the image: the
// config's splitstream "oci-config-<digest>" (the config JSON as an
// object; named refs to each layer's stream by diff_id, and to the
// composefs image imageID under "composefs.image.v1" for format 1 or
// "composefs.image" for format 2), the manifest's "oci-manifest-<digest>"
// (the manifest JSON; "config:<digest>" and the layers), and, when tag is
// not empty, the tag streams/refs/oci/<tag> ("/" and "%" percent-encoded).
// The layers must have been applied with WriteLayerStreams(repo), those
// the config's rootfs.diff_ids list, in that order, and the manifest must
// name this config. It returns the manifest digest.
func (b *Builder) StoreImage(repo *objects.Repository, manifest, config, imageID []byte, version int, tag string) (manifestDigest string, err error) {
	var key string
	switch version {
	case 1:
		key = imageRefKeyV1
	case 2:
		key = imageRefKeyV2
	default:
		return "", fmt.Errorf("store image: composefs-rs links images of format 1 or 2, not %d", version)
	}
	if strings.HasPrefix(tag, "@") {
		return "", fmt.Errorf("store image: tag %q: a leading @ is for digests", tag)
	}
	j, err := parseImageJSON(manifest, config)
	if err != nil {
		return "", err
	}
	configDigest := sha256Digest(config)
	if j.configDigest != configDigest {
		return "", fmt.Errorf("%w: the manifest names config %s, the config is %s", ErrImageJSON, j.configDigest, configDigest)
	}
	if !slices.Equal(j.diffIDs, b.diffIDs) {
		return "", fmt.Errorf("%w: the config lists diff_ids %q, the layers applied were %q", ErrImageJSON, j.diffIDs, b.diffIDs)
	}
	layers := make([][]byte, len(j.diffIDs))
	for i, d := range j.diffIDs {
		id, ok := b.layerStream[d]
		if !ok {
			return "", fmt.Errorf("store image: layer %s was not stored as a splitstream (WriteLayerStreams)", d)
		}
		layers[i] = id
	}

	cs := repo.NewSplitstream(objects.ContentTypeOCIConfig)
	for i, d := range j.diffIDs {
		if err := cs.AddNamedRef(d, layers[i]); err != nil {
			return "", err
		}
	}
	if err := cs.AddNamedRef(key, imageID); err != nil {
		return "", err
	}
	if err := writeExternal(repo, cs, config); err != nil {
		return "", err
	}
	configStream, err := cs.Commit("oci-config-" + configDigest)
	if err != nil {
		return "", err
	}

	ms := repo.NewSplitstream(objects.ContentTypeOCIManifest)
	if err := ms.AddNamedRef("config:"+configDigest, configStream); err != nil {
		return "", err
	}
	for i, d := range j.diffIDs {
		if err := ms.AddNamedRef(d, layers[i]); err != nil {
			return "", err
		}
	}
	if err := writeExternal(repo, ms, manifest); err != nil {
		return "", err
	}
	manifestDigest = sha256Digest(manifest)
	name := "oci-manifest-" + manifestDigest
	if _, err := ms.Commit(name); err != nil {
		return "", err
	}
	if tag != "" {
		if err := repo.NameStream(name, TagRef(tag)); err != nil {
			return "", err
		}
	}
	return manifestDigest, nil
}

// writeExternal stores data as an object and adds it to the stream.
func writeExternal(repo *objects.Repository, w *objects.SplitstreamWriter, data []byte) error {
	d, err := repo.WriteObject(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return err
	}
	return w.AddExternal(d, uint64(len(data)))
}
