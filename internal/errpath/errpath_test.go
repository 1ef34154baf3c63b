package errpath

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCause(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	_, err := os.Open(missing)
	if err == nil {
		t.Fatal("opened a missing file")
	}
	for _, c := range []struct {
		name string
		err  error
		path string
		want string
	}{
		{"same path", err, missing, "no such file or directory"},
		{"unclean path", err, missing + "/", "no such file or directory"},
		{"other path", err, "/elsewhere", err.Error()},
		{"not a PathError", fmt.Errorf("reading: %w", err), missing, "reading: " + err.Error()},
		{"nested", New("scan", missing, New("fs-verity digest of", missing, err)), missing, "no such file or directory"},
	} {
		got := Cause(c.err, c.path)
		if got.Error() != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
		if !errors.Is(got, fs.ErrNotExist) {
			t.Errorf("%s: %v is not fs.ErrNotExist", c.name, got)
		}
	}
}

// TestNew: the path is said once, by the outer error, which is an
// *fs.PathError a caller can take apart in turn.
func TestNew(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "repo")
	_, err := os.Open(missing)
	got := New("repository", missing, err)
	if want := "repository " + missing + ": no such file or directory"; got.Error() != want {
		t.Errorf("%q, want %q", got, want)
	}
	var pe *fs.PathError
	if !errors.As(got, &pe) || pe.Op != "repository" || pe.Path != missing {
		t.Errorf("%#v is not the repository's *fs.PathError", got)
	}
	if !errors.Is(got, fs.ErrNotExist) {
		t.Errorf("%v is not fs.ErrNotExist", got)
	}
	// An error about another path keeps its own words.
	other := New("repository", "/r", err)
	if want := "repository /r: " + err.Error(); other.Error() != want {
		t.Errorf("%q, want %q", other, want)
	}
}
