package source

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Options says how to reach and choose an image. The zero value verifies
// TLS, reads the usual configuration files and picks linux/GOARCH.
type Options struct {
	// SkipTLSVerify allows a registry over plain HTTP or with a
	// certificate not verified, like skopeo's --tls-verify=false. Without
	// it only registries registries.conf marks insecure may be.
	SkipTLSVerify bool
	// RegistriesConf is the registries.conf to read insecure registries
	// from; its drop-ins are the *.conf files in RegistriesConf+".d".
	// Empty: $CONTAINERS_REGISTRIES_CONF, else DefaultRegistriesConf.
	RegistriesConf string
	// AuthFile holds registry credentials, as written by podman login or
	// skopeo login; it must exist. Empty: $REGISTRY_AUTH_FILE. Either is
	// read before ${XDG_RUNTIME_DIR}/containers/auth.json and docker's
	// ~/.docker/config.json.
	AuthFile string
	// Platform chooses among an index's images: OS/ARCH[/VARIANT].
	// Empty: linux/GOARCH.
	Platform string
	// Jobs is how many layers Fetch downloads at once; 0 means 3.
	Jobs int
}

// Layer describes one of an image's layers, from its manifest and config.
type Layer struct {
	// Digest is the blob's digest as stored ("sha256:..."), compressed
	// or not as MediaType says.
	Digest string
	// Size is the blob's size in bytes.
	Size int64
	// MediaType is the layer's media type from the manifest.
	MediaType string
	// DiffID is the digest of the uncompressed tar, from the config's
	// rootfs.diff_ids.
	DiffID string
}

// compression is how a layer blob is stored.
type compression int

const (
	uncompressed compression = iota
	gzipped
	zstdCompressed
)

// layerCompression returns how a layer of media type mt is compressed, or
// an error for a type that is not a layer tar this package reads.
func layerCompression(mt string) (compression, error) {
	switch types.MediaType(mt) {
	case types.OCIUncompressedLayer, types.OCIUncompressedRestrictedLayer, types.DockerUncompressedLayer:
		return uncompressed, nil
	case types.OCILayer, types.OCIRestrictedLayer, types.DockerLayer, types.DockerForeignLayer:
		return gzipped, nil
	case types.OCILayerZStd, "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd":
		return zstdCompressed, nil
	}
	return 0, fmt.Errorf("media type %q is not a layer tar (uncompressed, gzip or zstd)", mt)
}

// Size limits on the JSON documents read, as containers/image has them:
// nothing legitimate comes close, and a hostile source cannot make us
// hold gigabytes.
const (
	maxManifestSize = 4 << 20
	maxConfigSize   = 4 << 20
)

// Image is an image opened from a source: its manifest and config read
// and checked, its layers ready to fetch. Close releases it.
type Image struct {
	src            Reference
	manifest       []byte
	manifestDigest string
	config         []byte
	configDigest   string
	layers         []Layer
	store          blobStore
	jobs           int
	dir            string // where Fetch put the layers
}

// blobStore gives the blobs of the source an image came from.
type blobStore interface {
	// blob opens the blob with digest d, its bytes as stored; reads
	// stop with ctx's error once it is done.
	blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error)
	close() error
}

// manifestStore is a blobStore that also gives manifests by digest
// (which a registry serves apart from blobs).
type manifestStore interface {
	blobStore
	manifest(ctx context.Context, d v1.Hash) ([]byte, error)
}

// Open resolves ref to the one image it names for the chosen platform
// and reads its manifest and config. Its errors are one line naming ref.
func Open(ctx context.Context, ref Reference, opts Options) (*Image, error) {
	im, err := open(ctx, ref, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ref, err)
	}
	im.src = ref
	im.jobs = opts.Jobs
	if im.jobs <= 0 {
		im.jobs = 3
	}
	return im, nil
}

func open(ctx context.Context, ref Reference, opts Options) (*Image, error) {
	want, err := parsePlatform(opts.Platform)
	if err != nil {
		return nil, err
	}
	switch ref.Transport {
	case Docker:
		return openRemote(ctx, ref.Path, opts, want)
	case OCI:
		tree, err := openDirTree(ref.Path)
		if err != nil {
			return nil, err
		}
		return openLayout(ctx, tree, ref.Ref, want)
	case OCIArchive:
		tree, err := openTarTree(ref.Path)
		if err != nil {
			return nil, err
		}
		return openLayout(ctx, tree, ref.Ref, want)
	case DockerArchive:
		return openDockerArchive(ref.Path, ref.Ref)
	}
	return nil, fmt.Errorf("%w: no transport", ErrSyntax)
}

// Source returns the reference the image was opened from.
func (im *Image) Source() Reference { return im.src }

// Manifest returns the image manifest's bytes as the source has them
// (for a docker-archive, which has none, one made from its manifest.json).
func (im *Image) Manifest() []byte { return im.manifest }

// ManifestDigest returns the manifest's digest, "sha256:...".
func (im *Image) ManifestDigest() string { return im.manifestDigest }

// Config returns the image config's bytes.
func (im *Image) Config() []byte { return im.config }

// ConfigDigest returns the config's digest, "sha256:..."; it is the image
// ID docker and podman show.
func (im *Image) ConfigDigest() string { return im.configDigest }

// Layers returns the image's layers, bottom first.
func (im *Image) Layers() []Layer { return append([]Layer(nil), im.layers...) }

// Close releases the source (an archive's open file); layers already
// fetched stay readable with OpenLayer.
func (im *Image) Close() error { return im.store.close() }

// parsePlatform reads OS/ARCH[/VARIANT]; empty is linux/GOARCH.
func parsePlatform(s string) (v1.Platform, error) {
	if s == "" {
		return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want OS/ARCH[/VARIANT]", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func platformString(p *v1.Platform) string {
	if p == nil || p.OS == "" {
		return "unknown"
	}
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// maxIndexDepth bounds indexes within indexes.
const maxIndexDepth = 4

// resolve follows b, a manifest or an index with digest d (from st), down
// to the image manifest for want, and reads that image's config.
func resolve(ctx context.Context, st manifestStore, b []byte, d v1.Hash, want v1.Platform) (*Image, error) {
	for depth := 0; ; depth++ {
		kind, err := manifestKind(b)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w", d, err)
		}
		if kind == kindImage {
			im, err := imageFromManifest(ctx, st, b, d)
			if err != nil {
				return nil, err
			}
			im.store = st
			return im, nil
		}
		if depth == maxIndexDepth {
			return nil, fmt.Errorf("index %s: indexes nested more than %d deep", d, maxIndexDepth)
		}
		var idx v1.IndexManifest
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, fmt.Errorf("index %s: %w", d, err)
		}
		desc, err := choosePlatform(idx.Manifests, want)
		if err != nil {
			return nil, fmt.Errorf("index %s: %w", d, err)
		}
		if b, err = readManifest(ctx, st, desc); err != nil {
			return nil, err
		}
		d = desc.Digest
	}
}

// readManifest reads the manifest or index desc names and checks its
// size and digest.
func readManifest(ctx context.Context, st manifestStore, desc v1.Descriptor) ([]byte, error) {
	if err := checkDescriptor(desc, maxManifestSize); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	b, err := st.manifest(ctx, desc.Digest)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	if err := checkContent(b, desc); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", desc.Digest, err)
	}
	return b, nil
}

// checkDescriptor checks what a descriptor says before it is used: a
// sha256 digest and a size from 0 to max.
func checkDescriptor(desc v1.Descriptor, max int64) error {
	if desc.Digest.Algorithm != "sha256" {
		return fmt.Errorf("digest %q: only sha256 digests are supported", desc.Digest)
	}
	if desc.Size < 0 || desc.Size > max {
		return fmt.Errorf("size %d out of range 0 to %d", desc.Size, max)
	}
	return nil
}

// checkContent checks b against the size and digest desc gives it.
func checkContent(b []byte, desc v1.Descriptor) error {
	if int64(len(b)) != desc.Size {
		return fmt.Errorf("%d bytes, the descriptor says %d", len(b), desc.Size)
	}
	if got := sha256Digest(b); got != desc.Digest.String() {
		return fmt.Errorf("content's digest is %s: %w", got, ErrDigestMismatch)
	}
	return nil
}

// ErrDigestMismatch is wrapped by errors about content whose digest or
// diff_id is not the one its manifest or config gives.
var ErrDigestMismatch = errors.New("digest mismatch")

func sha256Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

type manifestKindT int

const (
	kindImage manifestKindT = iota + 1
	kindIndex
)

// manifestKind tells an image manifest from an index by its mediaType,
// or by its fields when it has none (as OCI allows).
func manifestKind(b []byte) (manifestKindT, error) {
	var probe struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Layers        json.RawMessage `json:"layers"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return 0, err
	}
	switch types.MediaType(probe.MediaType) {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
		return kindImage, nil
	case types.OCIImageIndex, types.DockerManifestList:
		return kindIndex, nil
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return 0, fmt.Errorf("docker schema 1 manifests are not supported")
	case "":
		switch {
		case probe.SchemaVersion == 1:
			return 0, fmt.Errorf("docker schema 1 manifests are not supported")
		case probe.Manifests != nil:
			return kindIndex, nil
		case probe.Layers != nil:
			return kindImage, nil
		}
		return 0, fmt.Errorf("neither an image manifest nor an index")
	}
	return 0, fmt.Errorf("media type %q is neither an image manifest nor an index", probe.MediaType)
}

// choosePlatform picks want's image among an index's: the same OS and
// architecture, and the variant when want has one (an image without one
// does too). Its error names the platforms there are.
func choosePlatform(descs []v1.Descriptor, want v1.Platform) (v1.Descriptor, error) {
	var have []string
	for _, d := range descs {
		p := d.Platform
		if p != nil && p.OS == want.OS && p.Architecture == want.Architecture &&
			(want.Variant == "" || p.Variant == "" || p.Variant == want.Variant) {
			return d, nil
		}
		have = append(have, platformString(p))
	}
	if len(have) == 0 {
		return v1.Descriptor{}, fmt.Errorf("no images in the index")
	}
	return v1.Descriptor{}, fmt.Errorf("no image for %s; the index has %s", platformString(&want), strings.Join(have, ", "))
}

// imageFromManifest checks an image manifest, reads its config and
// matches the config's diff_ids to the layers.
func imageFromManifest(ctx context.Context, st blobStore, b []byte, d v1.Hash) (*Image, error) {
	var m v1.Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", d, err)
	}
	if err := checkDescriptor(m.Config, maxConfigSize); err != nil {
		return nil, fmt.Errorf("manifest %s: config: %w", d, err)
	}
	switch m.Config.MediaType {
	case types.OCIConfigJSON, types.DockerConfigJSON, "":
	default:
		// An artifact (a Helm chart, a signature) rather than an image.
		return nil, fmt.Errorf("manifest %s: config media type %q is not an image config", d, m.Config.MediaType)
	}
	cfg, err := readBlob(ctx, st, m.Config)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	diffIDs, err := parseDiffIDs(cfg)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("config %s lists %d diff_ids for the manifest's %d layers", m.Config.Digest, len(diffIDs), len(m.Layers))
	}
	im := &Image{manifest: b, manifestDigest: d.String(), config: cfg, configDigest: m.Config.Digest.String()}
	for i, l := range m.Layers {
		if err := checkDescriptor(l, 1<<62); err != nil {
			return nil, fmt.Errorf("manifest %s: layer %d: %w", d, i, err)
		}
		if _, err := layerCompression(string(l.MediaType)); err != nil {
			return nil, fmt.Errorf("manifest %s: layer %d: %w", d, i, err)
		}
		im.layers = append(im.layers, Layer{Digest: l.Digest.String(), Size: l.Size, MediaType: string(l.MediaType), DiffID: diffIDs[i]})
	}
	return im, nil
}

// readBlob reads a small blob (a config) whole and checks it.
func readBlob(ctx context.Context, st blobStore, desc v1.Descriptor) ([]byte, error) {
	rc, err := st.blob(ctx, desc.Digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, desc.Size+1))
	if err != nil {
		return nil, err
	}
	if err := checkContent(b, desc); err != nil {
		return nil, err
	}
	return b, nil
}

// parseDiffIDs returns an image config's rootfs.diff_ids, checked.
func parseDiffIDs(cfg []byte) ([]string, error) {
	var c struct {
		RootFS *struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(cfg, &c); err != nil {
		return nil, err
	}
	if c.RootFS == nil {
		return nil, fmt.Errorf("no rootfs")
	}
	if c.RootFS.Type != "layers" {
		return nil, fmt.Errorf("rootfs type %q, want \"layers\"", c.RootFS.Type)
	}
	for i, id := range c.RootFS.DiffIDs {
		h, err := v1.NewHash(id)
		if err != nil || h.Algorithm != "sha256" {
			return nil, fmt.Errorf("diff_id %d %q is not a sha256 digest", i, id)
		}
	}
	return c.RootFS.DiffIDs, nil
}

// readAllLimited reads r whole, failing when it is longer than max.
func readAllLimited(r io.Reader, max int64) ([]byte, error) {
	var buf bytes.Buffer
	n, err := io.Copy(&buf, io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("longer than %d bytes", max)
	}
	return buf.Bytes(), nil
}

// ctxReader stops reading once its context is done, for readers (files)
// that do not watch one themselves.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// readCloser pairs a reader with what closes it.
type readCloser struct {
	io.Reader
	io.Closer
}
