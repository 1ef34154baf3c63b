package objects

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// TestErrorsNamePathOnce: a repository or store that cannot be opened,
// and a source Add cannot read, give an *fs.PathError about that path
// whose message names it once, with the cause after it, and the cause
// stays testable with errors.Is.
func TestErrorsNamePathOnce(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "missing")
	file := filepath.Join(tmp, "file")
	mustWrite(t, file, "not a directory")
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	closed := tempSource(t, []byte("content"))
	closed.Close()
	store, err := OpenFlat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()

	for _, c := range []struct {
		name string
		open func() error
		path string
		want string // the whole message, when it is known
		is   error
	}{
		{"repository missing", func() error { _, err := OpenRepository(missing); return err },
			missing, "repository " + missing + ": no such file or directory", fs.ErrNotExist},
		{"repository a file", func() error { _, err := OpenRepository(file); return err },
			file, "repository " + file + ": not a directory", nil},
		{"repository empty", func() error { _, err := OpenRepository(empty); return err },
			empty, "", fs.ErrNotExist},
		{"store missing", func() error { _, err := OpenFlat(missing); return err },
			missing, "object store " + missing + ": no such file or directory", fs.ErrNotExist},
		{"second store missing", func() error { _, err := OpenFlat(empty + ":" + missing); return err },
			missing, "object store " + missing + ": no such file or directory", fs.ErrNotExist},
		{"store created in a file", func() error { _, err := CreateFlat(filepath.Join(file, "s")); return err },
			filepath.Join(file, "s"), "", nil},
		{"store created on a file", func() error { _, err := CreateFlat(file); return err },
			file, "object store " + file + ": not a directory", nil},
		{"add a closed file", func() error { _, _, err := store.Add(verity.SHA256, closed); return err },
			closed.Name(), "add object " + closed.Name() + ": file already closed", fs.ErrClosed},
	} {
		err := c.open()
		if err == nil {
			t.Errorf("%s: no error", c.name)
			continue
		}
		msg := err.Error()
		if n := strings.Count(msg, c.path); n != 1 {
			t.Errorf("%s: %q names %s %d times, want once", c.name, msg, c.path, n)
		}
		if c.want != "" && msg != c.want {
			t.Errorf("%s: %q, want %q", c.name, msg, c.want)
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
