package objects

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// TestCreateFlat: a store CreateFlat makes is 0700 with 0755 fan-out
// directories and 0644 objects, under any umask; one that exists keeps
// its mode.
func TestCreateFlat(t *testing.T) {
	withUmask(t, 0o077)
	dir := filepath.Join(t.TempDir(), "a", "b", "store")
	s, err := CreateFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	payload, _, err := s.Add(verity.SHA256, tempSource(t, bytes.Repeat([]byte("x"), 5000)))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{
		dir:                             0o700,
		filepath.Join(dir, payload[:2]): 0o755,
		filepath.Join(dir, payload):     0o644,
		filepath.Dir(filepath.Dir(dir)): 0o700, // "a", as mkdir -p makes it under umask 077
	} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want %v", p, fi.Mode(), err, want)
		}
	}

	existing := t.TempDir()
	os.Chmod(existing, 0o751)
	s2, err := CreateFlat(existing)
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
	if fi, _ := os.Stat(existing); fi.Mode().Perm() != 0o751 {
		t.Errorf("existing store's mode changed to %v", fi.Mode())
	}
}

// withUmask runs the test under umask m.
func withUmask(t *testing.T, m int) {
	old := unix.Umask(m)
	t.Cleanup(func() { unix.Umask(old) })
}
