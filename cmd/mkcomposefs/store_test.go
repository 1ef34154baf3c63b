package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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

// shareTempDir makes dir and the directories t.TempDir made above it
// searchable by others, as a shared store's path is.
func shareTempDir(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestDigestStoreWarning: storing files other users cannot read into an
// existing store they can reach prints one warning naming the store and
// the count; a private store, or one behind a private directory, none.
func TestDigestStoreWarning(t *testing.T) {
	private := sourceTree(t, 3, 4096, 0o600)
	public := sourceTree(t, 2, 4096, 0o644)
	if err := os.WriteFile(filepath.Join(private, "open"), bytes.Repeat([]byte("readable "), 100), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(private, "open"), 0o644)
	tmp := t.TempDir()
	shareTempDir(t, tmp)
	img := filepath.Join(tmp, "img.cfs")

	shared := filepath.Join(tmp, "shared")
	os.Mkdir(shared, 0o755)
	os.Chmod(shared, 0o755)
	code, _, errs := mk(t, nil, "--digest-store="+shared, private, img)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "warning: ") || !strings.Contains(errs, "store="+shared) || !strings.Contains(errs, "files=3") {
		t.Errorf("shared store: stderr %q, want one warning naming %s and 3 files", errs, shared)
	}
	// Nothing new to expose: no warning.
	if code, _, errs := mk(t, nil, "--digest-store="+shared, public, img); code != 0 || errs != "" {
		t.Errorf("readable sources: exit %d, stderr %q", code, errs)
	}

	for name, dir := range map[string]string{
		"private store":     filepath.Join(tmp, "private"),
		"behind a private":  filepath.Join(tmp, "hidden", "store"),
		"created by us too": filepath.Join(tmp, "made", "store"),
	} {
		switch name {
		case "private store":
			os.Mkdir(dir, 0o700)
		case "behind a private":
			os.Mkdir(filepath.Dir(dir), 0o711)
			os.Chmod(filepath.Dir(dir), 0o700)
			os.Mkdir(dir, 0o755)
			os.Chmod(dir, 0o755)
		}
		if code, _, errs := mk(t, nil, "--digest-store="+dir, private, img); code != 0 || errs != "" {
			t.Errorf("%s: exit %d, stderr %q", name, code, errs)
		}
	}
}
