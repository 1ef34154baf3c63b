package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
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
			assert.Equal(t, sha256Digest(l), diffID)
		}
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

func sha256Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}
