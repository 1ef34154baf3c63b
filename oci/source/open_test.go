package source

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/composefs/composefs-go/internal/ocitest"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// testLayers returns three layer tars: small files and links, one
// with a 1 MiB file of random bytes (big enough to interrupt midway),
// and one with whiteouts.
func testLayers(t *testing.T) [][]byte {
	big := make([]byte, 1<<20)
	if _, err := rand.Read(big); err != nil {
		t.Fatal(err)
	}
	return [][]byte{
		ocitest.NewTar(t).Dir("etc").File("etc/hostname", "box\n").Symlink("etc/localtime", "/usr/share/zoneinfo/UTC").
			Hardlink("etc/hostname2", "etc/hostname").Bytes(),
		ocitest.NewTar(t).Dir("data").File("data/big", string(big), ocitest.Xattr("user.k", "v")).Bytes(),
		ocitest.NewTar(t).Whiteout("etc/hostname2").Opaque("data").CharDevice("null", 1, 3).Bytes(),
	}
}

func mustOpen(t *testing.T, source string, opts Options) *Image {
	t.Helper()
	ref, err := Parse(source)
	if err != nil {
		t.Fatal(err)
	}
	im, err := Open(context.Background(), ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	return im
}

// readLayers fetches im to dir and returns its layers' tars.
func readLayers(t *testing.T, im *Image, dir string) [][]byte {
	t.Helper()
	if err := im.Fetch(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := range im.Layers() {
		r, err := im.OpenLayer(context.Background(), i)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		if err := r.Close(); err != nil {
			t.Fatalf("layer %d: close: %v", i, err)
		}
		out = append(out, b)
	}
	return out
}

// isolate keeps the machine's registry configuration and credentials out
// of a test.
func isolate(t *testing.T) {
	t.Setenv("HOME", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", "")
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("REGISTRY_AUTH_FILE", "")
	t.Setenv("CONTAINERS_REGISTRIES_CONF", filepath.Join(t.TempDir(), "registries.conf"))
}

// TestEverySource: one image in an OCI layout (gzip, zstd and
// uncompressed layers), a tar of it, a docker archive skopeo made of it
// and a registry skopeo pushed it to gives, from each, the same config,
// the same diff_ids and the very layer tars it was built from.
func TestEverySource(t *testing.T) {
	isolate(t)
	layers := testLayers(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "layout")
	lay := ocitest.BuildLayout(t, dir, layers, ocitest.WithCompression(ocitest.Gzip, ocitest.Zstd, ocitest.Uncompressed), ocitest.WithRef("v1"))
	want := lay.Images[0]

	archive := filepath.Join(tmp, "layout.tar")
	if out, err := exec.Command("tar", "-C", dir, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	// Docker archives have no zstd: skopeo makes one of the same image
	// with a gzip layer for the zstd one (the config is the same).
	gzipDir := filepath.Join(tmp, "gzip")
	ocitest.BuildLayout(t, gzipDir, layers, ocitest.WithCompression(ocitest.Gzip, ocitest.Gzip, ocitest.Uncompressed))
	dockerArchive := filepath.Join(tmp, "docker.tar")
	ocitest.Skopeo(t, "copy", "oci:"+gzipDir, "docker-archive:"+dockerArchive+":test/img:v1")
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, dir+":v1", host+"/test/img:v1")

	for _, source := range []string{
		"oci:" + dir + ":v1",
		"oci:" + dir,
		"oci-archive:" + archive + ":v1",
		"docker-archive:" + dockerArchive,
		"docker-archive:" + dockerArchive + ":test/img:v1",
		"docker://" + host + "/test/img:v1",
		"docker://" + host + "/test/img@" + pushedDigest(t, host+"/test/img:v1"),
	} {
		t.Run(strings.SplitN(source, ":", 2)[0], func(t *testing.T) {
			im := mustOpen(t, source, Options{SkipTLSVerify: true})
			if !bytes.Equal(im.Config(), want.ConfigBytes) || im.ConfigDigest() != want.Config {
				t.Errorf("config %s %q, want %s", im.ConfigDigest(), im.Config(), want.Config)
			}
			if got := sha256Digest(im.Manifest()); got != im.ManifestDigest() {
				t.Errorf("manifest digest %s, its bytes' %s", im.ManifestDigest(), got)
			}
			ls := im.Layers()
			if len(ls) != len(layers) {
				t.Fatalf("%d layers, want %d", len(ls), len(layers))
			}
			for i, l := range ls {
				if l.DiffID != want.DiffIDs[i] {
					t.Errorf("layer %d diff_id %s, want %s", i, l.DiffID, want.DiffIDs[i])
				}
				// skopeo compresses an uncompressed layer it pushes, and
				// docker archives hold layers as they choose.
				asBuilt := strings.HasPrefix(source, "oci") || strings.HasPrefix(source, "docker:") && i < 2
				if asBuilt && l.Digest != want.LayerDigests[i] {
					t.Errorf("layer %d digest %s, want %s", i, l.Digest, want.LayerDigests[i])
				}
			}
			if strings.HasPrefix(source, "oci") && im.ManifestDigest() != want.Manifest {
				t.Errorf("manifest %s, want %s", im.ManifestDigest(), want.Manifest)
			}
			for i, b := range readLayers(t, im, t.TempDir()) {
				if !bytes.Equal(b, layers[i]) {
					t.Errorf("layer %d: %d bytes read differ from the %d built", i, len(b), len(layers[i]))
				}
			}
		})
	}
}

// pushedDigest returns the digest of the manifest a registry has for
// image (HOST/REPO:TAG), as Open finds it.
func pushedDigest(t *testing.T, image string) string {
	return mustOpen(t, "docker://"+image, Options{SkipTLSVerify: true}).ManifestDigest()
}

// TestIndexPlatforms: an index of two platforms gives this machine's
// image by default, another asked for, and an error naming both for a
// third; the same from a registry skopeo pushed the index to.
func TestIndexPlatforms(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	other := "arm64"
	if runtime.GOARCH == "arm64" {
		other = "amd64"
	}
	lay := ocitest.BuildLayout(t, dir, testLayers(t)[:1], ocitest.WithPlatforms("linux/"+other, "linux/"+runtime.GOARCH))
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, dir, host+"/multi:latest")
	for _, source := range []string{"oci:" + dir, "docker://" + host + "/multi:latest"} {
		if im := mustOpen(t, source, Options{SkipTLSVerify: true}); im.ConfigDigest() != lay.Images[1].Config {
			t.Errorf("%s: default platform: config %s, want %s (linux/%s)", source, im.ConfigDigest(), lay.Images[1].Config, runtime.GOARCH)
		}
		if im := mustOpen(t, source, Options{SkipTLSVerify: true, Platform: "linux/" + other}); im.ConfigDigest() != lay.Images[0].Config {
			t.Errorf("%s: linux/%s: config %s, want %s", source, other, im.ConfigDigest(), lay.Images[0].Config)
		}
		ref, _ := Parse(source)
		_, err := Open(context.Background(), ref, Options{SkipTLSVerify: true, Platform: "linux/s390x"})
		if err == nil || !strings.Contains(err.Error(), "no image for linux/s390x; the index has linux/"+other+", linux/"+runtime.GOARCH) || !strings.HasPrefix(err.Error(), source) {
			t.Errorf("%s: linux/s390x: error %v", source, err)
		}
	}
}

// TestTamperedBlob: a layer blob with a byte flipped fails Fetch with a
// digest mismatch naming the source and the layer, and leaves nothing
// under the blob's name (nor a temporary file).
func TestTamperedBlob(t *testing.T) {
	dir := t.TempDir()
	lay := ocitest.BuildLayout(t, dir, testLayers(t))
	blob := ocitest.BlobPath(dir, lay.Images[0].LayerDigests[1])
	flipByte(t, blob, 100)
	im := mustOpen(t, "oci:"+dir, Options{})
	out := t.TempDir()
	err := im.Fetch(context.Background(), out, nil)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "oci:"+dir+": layer 1 ("+lay.Images[0].LayerDigests[1]+")") {
		t.Fatalf("Fetch: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, BlobName(lay.Images[0].LayerDigests[1]))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tampered blob kept: %v", err)
	}
	for _, n := range dirNames(t, out) {
		if strings.Contains(n, "partial") {
			t.Errorf("temporary file %s left", n)
		}
	}
}

// TestLayerDiffIDMismatch: a layer whose tar is not the config's diff_id
// (the blob matching the manifest) reads to an error naming the layer,
// never a clean EOF, and so does Close after a partial read; a blob
// changed after Fetch is caught on reading too.
func TestLayerDiffIDMismatch(t *testing.T) {
	dir := t.TempDir()
	layers := testLayers(t)
	ocitest.BuildLayout(t, dir, layers[:2], ocitest.WithCompression(ocitest.Zstd, ocitest.Gzip))
	// The same image but for the diff_id of layer 0, taken from layer 2.
	other := ocitest.BuildLayout(t, t.TempDir(), layers[2:])
	rewriteDiffID(t, dir, 0, other.Images[0].DiffIDs[0])

	im := mustOpen(t, "oci:"+dir, Options{})
	if err := im.Fetch(context.Background(), t.TempDir(), nil); err != nil {
		t.Fatal(err)
	}
	r, err := im.OpenLayer(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(r)
	if !errors.Is(err, ErrDigestMismatch) || !strings.Contains(err.Error(), "layer 0") || !strings.Contains(err.Error(), "diff_id") {
		t.Errorf("read: %v", err)
	}
	r.Close()
	r, err = im.OpenLayer(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("close after a partial read: %v", err)
	}
	// Layer 1 is fine, until its fetched blob changes.
	r, err = im.OpenLayer(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err != nil {
		t.Errorf("layer 1: %v", err)
	}
	r.Close()
	flipByte(t, filepath.Join(im.dir, BlobName(im.Layers()[1].Digest)), 5000)
	r, err = im.OpenLayer(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); err == nil || !strings.Contains(err.Error(), "layer 1") {
		t.Errorf("layer 1 changed after Fetch: %v", err)
	}
	r.Close()
}

// TestInterruptedFetch: a Fetch cancelled in the middle of a layer keeps
// the layers done before it, nothing of the one cut short; the next
// Fetch takes what is there and downloads the rest. From a layout and
// from a registry.
func TestInterruptedFetch(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	layers := testLayers(t)
	lay := ocitest.BuildLayout(t, dir, layers, ocitest.WithCompression(ocitest.Gzip, ocitest.Uncompressed, ocitest.Gzip))
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, dir, host+"/big:1")
	digests := lay.Images[0].LayerDigests
	for _, source := range []string{"oci:" + dir, "docker://" + host + "/big:1"} {
		im := mustOpen(t, source, Options{SkipTLSVerify: true, Jobs: 1})
		out := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		var cutAt int64
		err := im.Fetch(ctx, out, func(p LayerProgress) {
			if p.Index == 1 && p.State == Downloading && p.Done >= 64<<10 && cutAt == 0 {
				cutAt = p.Done
				cancel()
			}
		})
		cancel()
		if !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), source) {
			t.Fatalf("%s: interrupted Fetch: %v", source, err)
		}
		if cutAt == 0 || cutAt >= int64(len(layers[1])) {
			t.Fatalf("%s: not cut midway (at %d)", source, cutAt)
		}
		names := dirNames(t, out)
		if len(names) != 1 || names[0] != BlobName(digests[0]) {
			t.Fatalf("%s: after the interruption the directory has %v, want only layer 0", source, names)
		}
		var mu sync.Mutex
		states := map[int]LayerState{}
		if err := im.Fetch(context.Background(), out, func(p LayerProgress) {
			mu.Lock()
			defer mu.Unlock()
			states[p.Index] = p.State
		}); err != nil {
			t.Fatalf("%s: second Fetch: %v", source, err)
		}
		if states[0] != Present || states[1] != Complete || states[2] != Complete {
			t.Errorf("%s: second Fetch: states %v, want 0 present, 1 and 2 complete", source, states)
		}
		for i, b := range readLayers(t, im, out) {
			if !bytes.Equal(b, layers[i]) {
				t.Errorf("%s: layer %d differs", source, i)
			}
		}
	}
}

// TestRegistryAuth: a registry wanting a password refuses an anonymous
// pull, and gives the image with the credentials of the auth file named
// by REGISTRY_AUTH_FILE or Options.AuthFile, or found in XDG_RUNTIME_DIR;
// a wrong password fails.
func TestRegistryAuth(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	lay := ocitest.BuildLayout(t, dir, testLayers(t)[:1])
	host := ocitest.StartRegistryWithAuth(t, "alice", "s3cret")
	ocitest.Push(t, dir, host+"/private/img:1", "--dest-creds", "alice:s3cret")
	ref, err := Parse("docker://" + host + "/private/img:1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), ref, Options{SkipTLSVerify: true}); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("anonymous: %v", err)
	}
	authFile := func(pass string) string {
		f := filepath.Join(t.TempDir(), "auth.json")
		auth := base64.StdEncoding.EncodeToString([]byte("alice:" + pass))
		if err := os.WriteFile(f, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	t.Setenv("REGISTRY_AUTH_FILE", authFile("s3cret"))
	im, err := Open(context.Background(), ref, Options{SkipTLSVerify: true})
	if err != nil {
		t.Fatalf("with REGISTRY_AUTH_FILE: %v", err)
	}
	if im.ConfigDigest() != lay.Images[0].Config {
		t.Errorf("config %s, want %s", im.ConfigDigest(), lay.Images[0].Config)
	}
	if err := im.Fetch(context.Background(), t.TempDir(), nil); err != nil {
		t.Errorf("fetch with credentials: %v", err)
	}
	if _, err := Open(context.Background(), ref, Options{SkipTLSVerify: true, AuthFile: authFile("wrong")}); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
		t.Errorf("wrong password: %v", err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", "")
	if _, err := Open(context.Background(), ref, Options{SkipTLSVerify: true, AuthFile: authFile("s3cret")}); err != nil {
		t.Errorf("with Options.AuthFile: %v", err)
	}
	// Where podman login writes: ${XDG_RUNTIME_DIR}/containers/auth.json.
	runtimeDir := t.TempDir()
	if err := os.Mkdir(filepath.Join(runtimeDir, "containers"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(authFile("s3cret"), filepath.Join(runtimeDir, "containers", "auth.json")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
	if _, err := Open(context.Background(), ref, Options{SkipTLSVerify: true}); err != nil {
		t.Errorf("with ${XDG_RUNTIME_DIR}/containers/auth.json: %v", err)
	}
}

// TestInsecureRegistriesConf: with TLS verified, plain HTTP to a local
// registry is refused, until a registries.conf.d drop-in (found through
// CONTAINERS_REGISTRIES_CONF or Options.RegistriesConf) marks it insecure.
func TestInsecureRegistriesConf(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	ocitest.BuildLayout(t, dir, testLayers(t)[:1])
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, dir, host+"/img:1")
	ref, err := Parse("docker://" + host + "/img:1")
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(t.TempDir(), "registries.conf")
	t.Setenv("CONTAINERS_REGISTRIES_CONF", conf)
	if _, err := Open(context.Background(), ref, Options{}); err == nil || !strings.Contains(err.Error(), "plain HTTP to "+host+" refused") {
		t.Fatalf("without an insecure entry: %v", err)
	}
	if err := os.WriteFile(conf, []byte("unqualified-search-registries = [\"docker.io\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(conf+".d", 0o755); err != nil {
		t.Fatal(err)
	}
	dropIn := "# test\n[[registry]]\nlocation = \"" + host + "\"\ninsecure = true\n"
	if err := os.WriteFile(filepath.Join(conf+".d", "50-local.conf"), []byte(dropIn), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), ref, Options{}); err != nil {
		t.Errorf("with an insecure drop-in: %v", err)
	}
	t.Setenv("CONTAINERS_REGISTRIES_CONF", "")
	if _, err := Open(context.Background(), ref, Options{RegistriesConf: conf}); err != nil {
		t.Errorf("with Options.RegistriesConf: %v", err)
	}
}

// TestOpenErrors: what goes wrong is one line naming the source.
func TestOpenErrors(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	ocitest.BuildLayout(t, dir, testLayers(t)[:1], ocitest.WithRef("a"))
	ocitest.BuildLayout(t, dir, testLayers(t)[:1], ocitest.WithRef("b"))
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, dir+":a", host+"/img:1")
	closed := freePort(t)
	for _, c := range []struct{ source, says string }{
		{"oci:" + dir, "index.json lists 2 images; name one after a colon (it has a, b)"},
		{"oci:" + dir + ":c", `no image named "c" in index.json; it has a, b`},
		{"oci:" + filepath.Join(dir, "missing"), "no such file or directory"},
		{"oci:" + filepath.Join(dir, "blobs"), "not an OCI image layout"},
		{"oci-archive:" + filepath.Join(dir, "index.json"), "tar"},
		{"docker://" + host + "/img:2", "MANIFEST_UNKNOWN"},
		{"docker://" + host + "/nothing:1", "MANIFEST_UNKNOWN"},
		{"docker://" + closed + "/img:1", "connection refused"},
	} {
		ref, err := Parse(c.source)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Open(context.Background(), ref, Options{SkipTLSVerify: true})
		if err == nil || !strings.HasPrefix(err.Error(), c.source+": ") || !strings.Contains(err.Error(), c.says) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line saying %q", c.source, err, c.says)
		}
	}
}

// TestConfigChecks: a config listing fewer diff_ids than the manifest
// has layers, or with no rootfs, is refused when the image is opened.
func TestConfigChecks(t *testing.T) {
	for _, c := range []struct {
		edit func(map[string]any)
		says string
	}{
		{func(c map[string]any) {
			r := c["rootfs"].(map[string]any)
			r["diff_ids"] = r["diff_ids"].([]any)[:1]
		}, "lists 1 diff_ids for the manifest's 2 layers"},
		{func(c map[string]any) { delete(c, "rootfs") }, "no rootfs"},
		{func(c map[string]any) { c["rootfs"].(map[string]any)["diff_ids"].([]any)[1] = "md5:00" }, `diff_id 1 "md5:00" is not a sha256 digest`},
	} {
		dir := t.TempDir()
		ocitest.BuildLayout(t, dir, testLayers(t)[:2])
		rewriteConfig(t, dir, c.edit)
		ref, _ := Parse("oci:" + dir)
		if _, err := Open(context.Background(), ref, Options{}); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("error %v, want %q", err, c.says)
		}
	}
}

// TestArtifactNotAnImage: a manifest whose config is not an image's (a
// Helm chart's) is refused by name.
func TestArtifactNotAnImage(t *testing.T) {
	m := `{"schemaVersion":2,"config":{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"sha256:` +
		strings.Repeat("0", 64) + `","size":2},"layers":[]}`
	if _, err := imageFromManifest(context.Background(), nil, []byte(m), v1.Hash{}); err == nil || !strings.Contains(err.Error(), "is not an image config") {
		t.Errorf("error %v", err)
	}
}
