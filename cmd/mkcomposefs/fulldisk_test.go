package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// sourceTree makes a directory of n files of size bytes each, different
// contents, every file with mode perm; files larger than 64 bytes go to
// the store.
func sourceTree(t *testing.T, n, size int, perm fs.FileMode) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "src")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		data := bytes.Repeat(fmt.Appendf(nil, "file %d ", i), size/7+1)[:size]
		p := filepath.Join(dir, "sub", fmt.Sprintf("f%04d", i))
		if err := os.WriteFile(p, data, perm); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// mountTmpfs mounts a tmpfs of size bytes in a new temporary directory.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "full")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0755"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// checkStoreComplete fails on a temporary file left in store, or an
// object whose content is not what its name says.
func checkStoreComplete(t *testing.T, store string) {
	t.Helper()
	n := 0
	filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(store, p)
		if strings.HasPrefix(d.Name(), ".tmp") {
			t.Errorf("temporary file left in the store: %s", rel)
			return nil
		}
		data, err := os.ReadFile(p)
		if err != nil {
			t.Error(err)
			return nil
		}
		name := strings.ReplaceAll(rel, "/", "")
		if got := hex.EncodeToString(verity.DigestBytes(verity.SHA256, data)); got != name {
			t.Errorf("object %s holds %d bytes of digest %s: partial", rel, len(data), got)
		}
		n++
		return nil
	})
	t.Logf("%d complete objects in the store", n)
}

// checkFullDiskFailure: exit 1 and one line naming ENOSPC and where: the
// path the user gave (not a temporary name), and not the source.
func checkFullDiskFailure(t *testing.T, code int, errs, where, notSource string) {
	t.Helper()
	t.Logf("exit %d: %s", code, errs)
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "no space left on device") {
		t.Errorf("exit %d, stderr %q; want exit 1 and one line saying no space left on device", code, errs)
	}
	if !strings.Contains(errs, where) {
		t.Errorf("stderr %q does not name %s", errs, where)
	}
	if notSource != "" && strings.Contains(errs, notSource) {
		t.Errorf("stderr %q blames the source %s for a full output", errs, notSource)
	}
}

// checkImage: the image is absent (old == nil) or holds old.
func checkImage(t *testing.T, img string, old []byte) {
	t.Helper()
	b, err := os.ReadFile(img)
	switch {
	case old == nil && err == nil:
		t.Errorf("image %s created (%d bytes) by a failed run", img, len(b))
	case old == nil:
	case err != nil:
		t.Errorf("image %s: %v", img, err)
	case !bytes.Equal(b, old):
		t.Errorf("image %s changed by a failed run", img)
	}
	ents, _ := os.ReadDir(filepath.Dir(img))
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left beside the image", e.Name())
		}
	}
}

// TestFullDisk: mkcomposefs on a full filesystem, the digest store's or
// the image's, fails naming ENOSPC, leaves IMAGE as it was and no partial
// object under its final name.
func TestFullDisk(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		store := mountTmpfs(t, "256k")
		src := sourceTree(t, 12, 64<<10, 0o644)
		tmp := t.TempDir()
		for _, old := range [][]byte{nil, []byte("previous image")} {
			img := filepath.Join(tmp, fmt.Sprintf("img%d.cfs", len(old)))
			if old != nil {
				os.WriteFile(img, old, 0o644)
			}
			code, _, errs := mk(t, nil, "--digest-store="+store, src, img)
			checkFullDiskFailure(t, code, errs, store, "")
			checkImage(t, img, old)
			checkStoreComplete(t, store)
		}
	})
	t.Run("image", func(t *testing.T) {
		out := mountTmpfs(t, "256k")
		// About 4000 entries with inline content and long names: an
		// image of well over 256 KiB.
		var dump strings.Builder
		dump.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
		for i := range 4000 {
			fmt.Fprintf(&dump, "/%s%05d 32 100644 1 0 0 0 0.0 - %032d -\n", strings.Repeat("n", 80), i, i)
		}
		src := filepath.Join(t.TempDir(), "big.dump")
		if err := os.WriteFile(src, []byte(dump.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, old := range [][]byte{nil, []byte("previous image")} {
			img := filepath.Join(out, fmt.Sprintf("img%d.cfs", len(old)))
			if old != nil {
				os.WriteFile(img, old, 0o644)
			}
			code, _, errs := mk(t, nil, "--from-file", src, img)
			checkFullDiskFailure(t, code, errs, "writing "+img+": no space left on device", src)
			checkImage(t, img, old)
		}
	})
}
