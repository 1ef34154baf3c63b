package tests

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// TestRepository mounts images out of a composefs-rs repository: by image
// id, by ref name, and by path with the repository as the object store.
func TestRepository(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	repo := tempDir(t, "repo")
	put := func(o object) {
		o.Put(t, filepath.Join(repo, "objects"), o.Content)
	}
	for _, o := range []object{v.good, v.nodigest} {
		put(o)
	}
	data, err := os.ReadFile(v.image)
	if err != nil {
		t.Fatal(err)
	}
	img := newObject(data)
	put(img)
	id := hex.EncodeToString(verity.DigestBytes(verity.SHA256, data))
	if err := os.MkdirAll(filepath.Join(repo, "images", "refs", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "objects", img.Payload), filepath.Join(repo, "images", id)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..", "..", "..", "images", id), filepath.Join(repo, "images", "refs", "sub", "name")); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"by id":   {id, "--repo", repo},
		"by ref":  {"sub/name", "--repo=" + repo},
		"by path": {v.image, "-o", "repo=" + repo},
	} {
		t.Run(name, func(t *testing.T) {
			mnt := fuseMount(t, args[0], args[1:]...)
			got, err := os.ReadFile(filepath.Join(mnt, "good"))
			if err != nil || !bytes.Equal(got, v.good.Content) {
				t.Errorf("good: %d bytes, %v", len(got), err)
			}
			if _, err := readErrno(filepath.Join(mnt, "inline")); err != nil {
				t.Errorf("inline: %v", err)
			}
		})
	}
	bad := tempDir(t, "fuse")
	if out, err := tryFuseMount(t, "no-such-image", bad, "--repo", repo); err == nil {
		t.Errorf("a missing image mounted:\n%s", out)
	}
}
