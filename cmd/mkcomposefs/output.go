package main

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/composefs/composefs-go/internal/termprogress"
	"golang.org/x/sys/unix"
)

// imageOutput receives the image bytes; commit makes them visible, abort
// leaves the destination as it was.
type imageOutput interface {
	io.Writer
	commit() error
	abort()
}

type discardOutput struct{}

func (discardOutput) Write(p []byte) (int, error) { return len(p), nil }
func (discardOutput) commit() error               { return nil }
func (discardOutput) abort()                      {}

// streamOutput writes to stdout. The writer checks its input before it
// emits a byte, so an invalid tree writes nothing here either.
type streamOutput struct{ w io.Writer }

func (o *streamOutput) Write(p []byte) (int, error) {
	n, err := o.w.Write(p)
	if err != nil {
		err = writeFailed("<stdout>", err)
	}
	return n, err
}
func (o *streamOutput) commit() error { return nil }
func (o *streamOutput) abort()        {}

// fileOutput writes IMAGE. A regular file (or a new one) is written to a
// temporary file beside it and renamed into place on success, so a failed
// run leaves IMAGE untouched. Anything else (a pipe, a device, a
// /proc/self/fd/N an invoker handed over) is opened and written in place,
// and only once the first byte arrives, i.e. once the input proved valid.
type fileOutput struct {
	path   string
	f      *os.File
	target string // rename destination; "" when writing in place
	err    error
}

func newFileOutput(path string) *fileOutput { return &fileOutput{path: path} }

func (o *fileOutput) open() error {
	if o.f != nil || o.err != nil {
		return o.err
	}
	o.err = o.create()
	if o.err != nil {
		o.err = writeFailed(o.path, o.err)
	}
	return o.err
}

// create opens the file the image is written to.
func (o *fileOutput) create() error {
	target, inPlace := renameTarget(o.path)
	if inPlace {
		f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o666)
		o.f = f
		return err
	}
	perm := fs.FileMode(0o666) &^ currentUmask()
	if st, err := os.Stat(target); err == nil {
		perm = st.Mode().Perm()
	}
	dir, base := filepath.Split(target)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return err
	}
	o.f, o.target = f, target
	return nil
}

// renameTarget decides how to write path: through a temporary file renamed
// onto the returned target, or in place.
func renameTarget(path string) (string, bool) {
	clean := filepath.Clean(path)
	for _, p := range []string{"/proc/", "/dev/"} {
		if strings.HasPrefix(clean, p) {
			return "", true
		}
	}
	st, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return path, false
	case err != nil:
		return "", true
	case st.Mode().IsRegular():
		return path, false
	case st.Mode()&fs.ModeSymlink != 0:
		// Replace the file the link names, keeping the link.
		resolved, err := filepath.EvalSymlinks(path)
		if err != nil {
			return "", true
		}
		if rst, err := os.Stat(resolved); err == nil && rst.Mode().IsRegular() {
			return resolved, false
		}
	}
	return "", true
}

func (o *fileOutput) Write(p []byte) (int, error) {
	if err := o.open(); err != nil {
		return 0, err
	}
	n, err := o.f.Write(p)
	if err != nil {
		o.err = writeFailed(o.path, err)
	}
	return n, o.err
}

func (o *fileOutput) commit() error {
	if err := o.open(); err != nil {
		o.abort()
		return err
	}
	name := o.f.Name()
	err := o.f.Close()
	if err == nil && o.target != "" {
		err = os.Rename(name, o.target)
	}
	if err != nil {
		if o.target != "" {
			os.Remove(name)
		}
		return writeFailed(o.path, err)
	}
	return nil
}

// outputError is a failure to write the image, not a fault of the source:
// it names the image as the user gave it, never a temporary file.
type outputError struct {
	name string
	err  error
}

func (e *outputError) Error() string { return "writing " + e.name + ": " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// writeFailed wraps err as a failure to write name, keeping only the
// cause of a *fs.PathError (its path is the temporary file's).
func writeFailed(name string, err error) error {
	var oe *outputError
	if errors.As(err, &oe) {
		return err
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return &outputError{name: name, err: err}
}

func (o *fileOutput) abort() {
	if o.f == nil {
		return
	}
	o.f.Close()
	if o.target != "" {
		os.Remove(o.f.Name())
	}
}

func currentUmask() fs.FileMode {
	m := unix.Umask(0)
	unix.Umask(m)
	return fs.FileMode(m)
}

// isTerminal reports whether w is a terminal (termprogress owns the test).
func isTerminal(w io.Writer) bool { return termprogress.IsTerminal(w) }
