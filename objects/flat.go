package objects

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// FlatStore is the C mkcomposefs --digest-store layout: an object lives at
// XX/REST under a base directory, XX the first byte of its digest in hex,
// REST the other 62 (sha256) or 126 (sha512) hex digits. Several base
// directories are searched in order, like the basedir=A:B mount option.
type FlatStore struct {
	roots []storeRoot
	// unreadable counts objects Add wrote from files others could not
	// read (see Exposure).
	unreadable atomic.Int64
}

// storeRoot is one base directory, held open: later renames of its path
// do not move the store under our feet.
type storeRoot struct {
	path string
	dir  *os.File
}

// OpenFlat opens the base directories; each argument may itself be a
// colon-separated list ("A:B"), as C's basedir accepts. A directory that
// cannot be opened is an *fs.PathError about it ("object store DIR: ...").
func OpenFlat(dirs ...string) (*FlatStore, error) {
	var paths []string
	for _, d := range dirs {
		for p := range strings.SplitSeq(d, ":") {
			if p == "" {
				return nil, fmt.Errorf("object store: empty directory in %q", d)
			}
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		return nil, errors.New("object store: no base directory given")
	}
	s := &FlatStore{}
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			s.Close()
			return nil, errpath.New("object store", p, err)
		}
		s.roots = append(s.roots, storeRoot{path: p, dir: f})
	}
	return s, nil
}

// CreateFlat opens the store at dir (one directory: no colon list) for
// Add, making it first when it is missing. A store made here is private:
// its top directory is 0700, while the fan-out directories Add makes are
// 0755 and objects 0644, so that its owner shares the store, when they
// mean to, with one chmod of the top. A directory that exists keeps its
// mode; missing parents are made as mkdir -p does. A directory that
// cannot be made or opened is an *fs.PathError about it, as in OpenFlat.
func CreateFlat(dir string) (*FlatStore, error) {
	if dir == "" {
		return nil, errors.New("object store: no directory given")
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, errpath.New("object store", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, errpath.New("object store", dir, err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errpath.New("object store", dir, err)
	}
	return &FlatStore{roots: []storeRoot{{path: dir, dir: f}}}, nil
}

// Close releases the base directories.
func (s *FlatStore) Close() error {
	var errs []error
	for _, r := range s.roots {
		errs = append(errs, r.dir.Close())
	}
	s.roots = nil
	return errors.Join(errs...)
}

// Dirs lists the base directories in search order.
func (s *FlatStore) Dirs() []string {
	ds := make([]string, len(s.roots))
	for i, r := range s.roots {
		ds[i] = r.path
	}
	return ds
}

// Open opens the object named by payload from the first base directory
// that has it. Payloads are untrusted: see cleanPayload for what is
// refused; no symlink is followed; only a regular file is returned.
func (s *FlatStore) Open(payload string) (*os.File, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("object %q: %w", payload, err)
	}
	for _, r := range s.roots {
		f, err := openRegular(int(r.dir.Fd()), rel, filepath.Join(r.path, rel), noSymlinks)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("object %q in %s: %w", payload, r.path, err)
		}
	}
	return nil, fmt.Errorf("object %q not found in %s: %w", payload, strings.Join(s.Dirs(), ":"), fs.ErrNotExist)
}

// Has tells whether some base directory has the object as a regular file.
// Unsafe payloads and non-regular files are errors, not "absent".
func (s *FlatStore) Has(payload string) (bool, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return false, fmt.Errorf("object %q: %w", payload, err)
	}
	for _, r := range s.roots {
		ok, err := statRegular(int(r.dir.Fd()), rel, noSymlinks)
		if err != nil {
			return false, fmt.Errorf("object %q in %s: %w", payload, r.path, err)
		}
		if ok {
			return true, nil
		}
	}
	return false, nil
}

// OpenDigest opens the object whose fs-verity digest is digest.
func (s *FlatStore) OpenDigest(digest []byte) (*os.File, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	return s.Open(PayloadForDigest(digest))
}

func checkDigest(digest []byte) error {
	if _, ok := verity.AlgorithmForDigestSize(len(digest)); !ok {
		return fmt.Errorf("object digest of %d bytes (want 32 for sha256 or 64 for sha512)", len(digest))
	}
	return nil
}
