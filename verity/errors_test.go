package verity

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestDigestErrorsNamePathOnce: DigestPath's and DigestFile's errors are
// an *fs.PathError naming the file once, "fs-verity digest of NAME: ...",
// not again for the open, stat or read below them.
func TestDigestErrorsNamePathOnce(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	closed, err := os.Create(filepath.Join(dir, "closed"))
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	for _, c := range []struct {
		name   string
		digest func() error
		path   string
		cause  string
		is     error
	}{
		{"missing", func() error { _, err := DigestPath(SHA256, missing); return err }, missing, "no such file or directory", fs.ErrNotExist},
		{"directory", func() error { _, err := DigestPath(SHA256, dir); return err }, dir, "is a directory", nil},
		{"closed", func() error { _, err := DigestFile(SHA256, closed); return err }, closed.Name(), "file already closed", fs.ErrClosed},
	} {
		err := c.digest()
		if want := "fs-verity digest of " + c.path + ": " + c.cause; err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", c.name, err, want)
			continue
		}
		var pe *fs.PathError
		if !errors.As(err, &pe) || pe.Path != c.path {
			t.Errorf("%s: %#v is no *fs.PathError about %s", c.name, err, c.path)
		}
		if c.is != nil && !errors.Is(err, c.is) {
			t.Errorf("%s: %v is not %v", c.name, err, c.is)
		}
	}
}
