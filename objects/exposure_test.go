package objects

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// TestExposure: Add counts sources others cannot read; Shared follows
// the store's mode and its ancestors'.
func TestExposure(t *testing.T) {
	tmp := t.TempDir()
	for d := tmp; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	dir := filepath.Join(tmp, "store")
	s, err := CreateFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	private := tempSource(t, bytes.Repeat([]byte("p"), 5000)) // 0600
	public := tempSource(t, bytes.Repeat([]byte("q"), 5000))
	os.Chmod(public.Name(), 0o644)
	for _, f := range []*os.File{private, public} {
		if _, _, err := s.Add(verity.SHA256, f); err != nil {
			t.Fatal(err)
		}
	}
	if e := s.Exposure(); e.Dir != dir || e.Shared || e.Unreadable != 1 {
		t.Errorf("new store: %+v, want private, 1 unreadable", e)
	}
	os.Chmod(dir, 0o755)
	if e := s.Exposure(); !e.Shared {
		t.Errorf("store chmod 0755: %+v, want shared", e)
	}
	os.Chmod(tmp, 0o750)
	if e := s.Exposure(); e.Shared {
		t.Errorf("parent 0750: %+v, want not shared", e)
	}
}
