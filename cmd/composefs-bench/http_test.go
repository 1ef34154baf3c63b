package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCountObjects: the objects of a flat store are the files in its
// two-hex-digit directories; temporary files, other directories and
// files at the top are not.
func TestCountObjects(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []string{"ab/cdef", "ab/0123", "0f/99", "ab/.tmp-1", "zz/x", "top", "meta/ab"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "ab", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	n, err := countObjects(dir)
	if err != nil || n != 3 {
		t.Fatalf("countObjects = %d, %v; want 3", n, err)
	}
}
