package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

// withUmask runs the test under umask m.
func withUmask(t *testing.T, m int) {
	old := unix.Umask(m)
	t.Cleanup(func() { unix.Umask(old) })
}

// TestDigestStoreModes: a store mkcomposefs creates is 0700 at the top,
// with fan-out directories 0755 and objects 0644 whatever the umask, so
// that one chmod of the top shares it; a store that exists keeps its mode.
func TestDigestStoreModes(t *testing.T) {
	withUmask(t, 0o027)
	src := sourceTree(t, 4, 4096, 0o600)
	tmp := t.TempDir()

	store := filepath.Join(tmp, "new", "store")
	if code, _, errs := mk(t, nil, "--digest-store="+store, src, filepath.Join(tmp, "a.cfs")); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if m := mode(t, store); m != 0o700 {
		t.Errorf("new store %s has mode %v, want 0700", store, m)
	}
	subs, _ := filepath.Glob(filepath.Join(store, "??"))
	objs, _ := filepath.Glob(filepath.Join(store, "??", "*"))
	if len(subs) == 0 || len(objs) != 4 {
		t.Fatalf("store holds %d directories, %d objects", len(subs), len(objs))
	}
	for _, d := range subs {
		if m := mode(t, d); m != 0o755 {
			t.Errorf("fan-out directory %s has mode %v, want 0755", d, m)
		}
	}
	for _, o := range objs {
		if m := mode(t, o); m != 0o644 {
			t.Errorf("object %s has mode %v, want 0644", o, m)
		}
	}

	existing := filepath.Join(tmp, "existing")
	if err := os.Mkdir(existing, 0o751); err != nil {
		t.Fatal(err)
	}
	os.Chmod(existing, 0o751)
	if code, _, errs := mk(t, nil, "--digest-store="+existing, src, filepath.Join(tmp, "b.cfs")); code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if m := mode(t, existing); m != 0o751 {
		t.Errorf("existing store's mode changed to %v", m)
	}
}
