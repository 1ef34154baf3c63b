package oci

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// From layers to an image in a repository, read back through the read
// side: contents from the objects, hardlinks as one inode, the
// transform's xattrs, whiteouts gone.
func TestCommit(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		rdir := filepath.Join(t.TempDir(), "repo")
		repo, err := objects.CreateRepository(rdir, alg)
		require.NoError(t, err)
		big := strings.Repeat("busybox ", 2000)
		b := NewBuilder(repo)
		b.WriteLayerStreams(repo)
		layers := [][]byte{
			layer(t,
				dir("usr/", 0o755), dir("usr/bin/", 0o755),
				with(file("usr/bin/busybox", big), func(h *tar.Header) {
					h.Mode = 0o4755
					h.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": "cap", "SCHILY.xattr.user.x": "x"}
				}),
				hardlink("usr/bin/sh", "usr/bin/busybox"),
				file("usr/bin/old", strings.Repeat("old ", 100)),
				// A real 0/0 character device: an overlay whiteout
				// inside the image, which format 1 escapes; the
				// image must still be written.
				ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "usr/wh", Mode: 0o644}},
			),
			layer(t, file("usr/bin/.wh.old", ""), file("etc/hostname", "box\n")),
		}
		for _, l := range layers {
			diffID, err := b.ApplyLayer(bytes.NewReader(l))
			require.NoError(t, err)
			// The layer is stored as composefs-rs stores it, and
			// rebuilds byte for byte from its splitstream.
			sid, ok := b.LayerStream(diffID)
			require.True(t, ok)
			target, err := os.Readlink(filepath.Join(rdir, "streams", "oci-layer-"+diffID))
			require.NoError(t, err)
			assert.Equal(t, "../objects/"+objects.PayloadForDigest(sid), target)
			sf, err := repo.OpenDigest(sid)
			require.NoError(t, err)
			data, _ := io.ReadAll(sf)
			sf.Close()
			ss, err := objects.ParseSplitstream(data)
			require.NoError(t, err)
			assert.Equal(t, objects.ContentTypeOCILayer, ss.ContentType)
			var rebuilt bytes.Buffer
			_, err = ss.Rebuild(&rebuilt, repo)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(l, rebuilt.Bytes()), "layer rebuilt from its splitstream differs")
		}
		_, ok := b.LayerStream("sha256:nothing")
		assert.False(t, ok)
		id, err := b.Commit(repo, TransformDefault)
		require.NoError(t, err)
		require.NoError(t, repo.Tag("test/image", id))

		ro, err := objects.OpenRepository(rdir)
		require.NoError(t, err)
		f, err := ro.OpenImage(hex.EncodeToString(id))
		require.NoError(t, err)
		cfs, err := composefs.OpenFile(f, composefs.Config{Store: ro, ImageDigest: id})
		f.Close()
		require.NoError(t, err)

		data, err := fs.ReadFile(cfs, "usr/bin/busybox")
		require.NoError(t, err)
		assert.Equal(t, big, string(data))
		data, err = fs.ReadFile(cfs, "etc/hostname")
		require.NoError(t, err)
		assert.Equal(t, "box\n", string(data))
		_, err = cfs.Stat("usr/bin/old")
		assert.ErrorIs(t, err, fs.ErrNotExist, "whited-out file")

		bb, err := cfs.Stat("usr/bin/busybox")
		require.NoError(t, err)
		sh, err := cfs.Stat("usr/bin/sh")
		require.NoError(t, err)
		ba, sa := bb.Sys().(*composefs.Attr), sh.Sys().(*composefs.Attr)
		assert.Equal(t, ba.Ino, sa.Ino, "hardlinks share an inode")
		assert.Equal(t, uint32(2), ba.Nlink)
		assert.Equal(t, fs.ModeSetuid, bb.Mode()&fs.ModeSetuid)
		xs, err := cfs.ListXattr("usr/bin/busybox")
		require.NoError(t, err)
		assert.Equal(t, []string{"security.capability"}, xs)

		// What composefs-rs keeps of the image: config and manifest
		// splitstreams naming the layers and the image, and the tag.
		var diffIDs []string
		for _, l := range layers {
			diffIDs = append(diffIDs, sha256Digest(l))
		}
		config := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["` + strings.Join(diffIDs, `","`) + `"]}}`)
		manifest := []byte(`{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + sha256Digest(config) + `","size":1}}`)
		md, err := b.StoreImage(repo, manifest, config, id, repo.ErofsVersion(), "test/image:v1")
		require.NoError(t, err)
		assert.Equal(t, sha256Digest(manifest), md)
		target, err := os.Readlink(filepath.Join(rdir, "streams/refs/oci/test%2Fimage:v1"))
		require.NoError(t, err)
		assert.Equal(t, "../../oci-manifest-"+md, target)
		readStream := func(name string) (*objects.Splitstream, []byte) {
			data, err := os.ReadFile(filepath.Join(rdir, "streams", name))
			require.NoError(t, err, name)
			ss, err := objects.ParseSplitstream(data)
			require.NoError(t, err, name)
			var content bytes.Buffer
			_, err = ss.Rebuild(&content, repo)
			require.NoError(t, err, name)
			return ss, content.Bytes()
		}
		ms, mjson := readStream("oci-manifest-" + md)
		assert.Equal(t, manifest, mjson)
		assert.Equal(t, objects.ContentTypeOCIManifest, ms.ContentType)
		cs, cjson := readStream("oci-config-" + sha256Digest(config))
		assert.Equal(t, config, cjson)
		assert.Equal(t, id, cs.NamedRefs["composefs.image.v1"])
		for _, d := range diffIDs {
			sid, _ := b.LayerStream(d)
			assert.Equal(t, sid, cs.NamedRefs[d], "config names layer %s", d)
			assert.Equal(t, sid, ms.NamedRefs[d], "manifest names layer %s", d)
		}
		assert.Len(t, cs.NamedRefs, len(diffIDs)+1)
		assert.NotNil(t, ms.NamedRefs["config:"+sha256Digest(config)])
		_, err = b.StoreImage(repo, manifest, []byte(`{"rootfs":{"diff_ids":[]}}`), id, 1, "")
		assert.ErrorIs(t, err, ErrImageJSON, "a config the manifest does not name")
		wrong := []byte(`{"rootfs":{"diff_ids":["` + diffIDs[0] + `"]}}`)
		wrongManifest := []byte(`{"config":{"digest":"` + sha256Digest(wrong) + `"}}`)
		_, err = b.StoreImage(repo, wrongManifest, wrong, id, 1, "")
		assert.ErrorIs(t, err, ErrImageJSON, "diff_ids that are not the layers applied")
		_, err = b.StoreImage(repo, manifest, config, id, 0, "")
		assert.Error(t, err, "format 0")

		// The same layers give the same image, and every object the
		// image names is in the repository.
		again, err := b.Image(TransformDefault, repo.ErofsVersion())
		require.NoError(t, err)
		assert.Equal(t, id, verity.DigestBytes(alg, again))
		refs, err := ro.Refs()
		require.NoError(t, err)
		assert.Equal(t, id, refs["test/image"])
		names, _ := os.ReadDir(filepath.Join(rdir, "objects"))
		assert.NotEmpty(t, names)
		cfs.Close()
		ro.Close()
		repo.Close()
	}
}
