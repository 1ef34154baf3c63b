package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// archiveStore gives the blobs of a docker archive, whose files are named
// by path, not digest: config and layers are hashed when it is opened.
type archiveStore struct {
	tree  fileTree
	paths map[string]string // digest → path in the archive
}

func (s archiveStore) blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	p, ok := s.paths[d.String()]
	if !ok {
		return nil, fmt.Errorf("no blob %s in the archive", d)
	}
	rc, _, err := s.tree.open(p)
	if err != nil {
		return nil, err
	}
	return readCloser{ctxReader{ctx, rc}, rc}, nil
}

func (s archiveStore) close() error { return s.tree.close() }

// openDockerArchive opens the image of a docker save archive that ref
// (NAME:TAG) names among its RepoTags, or the only one when ref is empty.
// It has no image manifest: one is made, the layers as stored.
func openDockerArchive(file, ref string) (im *Image, err error) {
	tree, err := openTarTree(file)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			tree.close()
		}
	}()
	rc, _, err := tree.open("manifest.json")
	if err != nil {
		return nil, err
	}
	b, err := readAllLimited(rc, maxManifestSize)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(b, &entries); err != nil {
		return nil, fmt.Errorf("manifest.json: %w", err)
	}
	i, err := chooseRepoTag(len(entries), func(i int) []string { return entries[i].RepoTags }, ref)
	if err != nil {
		return nil, err
	}
	e := entries[i]
	st := archiveStore{tree: tree, paths: map[string]string{}}
	rc, size, err := tree.open(e.Config)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if size > maxConfigSize {
		rc.Close()
		return nil, fmt.Errorf("config %s: %d bytes, more than %d", e.Config, size, maxConfigSize)
	}
	cfg, err := readAllLimited(rc, maxConfigSize)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", e.Config, err)
	}
	diffIDs, err := parseDiffIDs(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", e.Config, err)
	}
	if len(diffIDs) != len(e.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff_ids for manifest.json's %d layers", e.Config, len(diffIDs), len(e.Layers))
	}
	cfgDigest := sha256Digest(cfg)
	st.paths[cfgDigest] = e.Config
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.DockerManifestSchema2,
		Config:        v1.Descriptor{MediaType: types.DockerConfigJSON, Size: int64(len(cfg)), Digest: digestHash(cfgDigest)},
	}
	im = &Image{config: cfg, configDigest: cfgDigest, store: st}
	for j, p := range e.Layers {
		l, err := hashArchiveLayer(tree, p)
		if err != nil {
			return nil, fmt.Errorf("layer %d %s: %w", j, p, err)
		}
		l.DiffID = diffIDs[j]
		st.paths[l.Digest] = p
		im.layers = append(im.layers, l)
		m.Layers = append(m.Layers, v1.Descriptor{MediaType: types.MediaType(l.MediaType), Size: l.Size, Digest: digestHash(l.Digest)})
	}
	if im.manifest, err = json.Marshal(m); err != nil {
		return nil, err
	}
	im.manifestDigest = sha256Digest(im.manifest)
	return im, nil
}

// chooseRepoTag picks the entry of n whose tags include ref, or the only
// one when ref is empty.
func chooseRepoTag(n int, tags func(int) []string, ref string) (int, error) {
	if ref == "" {
		if n != 1 {
			return 0, fmt.Errorf("manifest.json lists %d images; name one after a colon", n)
		}
		return 0, nil
	}
	want, err := name.NewTag(ref)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	var have []string
	for i := range n {
		for _, t := range tags(i) {
			have = append(have, t)
			if tag, err := name.NewTag(t); err == nil && tag.Name() == want.Name() {
				return i, nil
			}
		}
	}
	if len(have) == 0 {
		return 0, fmt.Errorf("no image tagged %s in manifest.json; it has no tags", ref)
	}
	return 0, fmt.Errorf("no image tagged %s in manifest.json; it has %s", ref, strings.Join(have, ", "))
}

// hashArchiveLayer reads a layer file of an archive for its digest and
// size, and tells its compression from its first bytes.
func hashArchiveLayer(tree fileTree, p string) (Layer, error) {
	rc, _, err := tree.open(p)
	if err != nil {
		return Layer{}, err
	}
	defer rc.Close()
	h := sha256.New()
	var head [4]byte
	n, err := io.ReadFull(rc, head[:])
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		return Layer{}, err
	}
	h.Write(head[:n])
	rest, err := io.Copy(h, rc)
	if err != nil {
		return Layer{}, err
	}
	mt := types.DockerUncompressedLayer
	switch {
	case bytes.HasPrefix(head[:n], []byte{0x1f, 0x8b}):
		mt = types.DockerLayer
	case bytes.HasPrefix(head[:n], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		mt = types.OCILayerZStd
	}
	return Layer{Digest: "sha256:" + hex.EncodeToString(h.Sum(nil)), Size: int64(n) + rest, MediaType: string(mt)}, nil
}

// digestHash converts a sha256 digest this package computed.
func digestHash(s string) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: strings.TrimPrefix(s, "sha256:")}
}
