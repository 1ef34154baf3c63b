package objects

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// Repository is a composefs-rs repository, opened for reading by
// OpenRepository and written by CreateRepository's and the write methods
// (repository_write.go, splitstream.go):
//
//	meta.json                  format version, algorithm, feature flags
//	objects/XX/REST            content by fs-verity digest
//	images/<id>                -> ../objects/XX/REST, one per known image
//	images/refs/<name>         -> ../<id> (one more ../ per slash in name)
//	streams/<content id>       -> ../objects/XX/REST, a split stream (streams.go)
//	streams/refs/<name>        -> ../<content id> (one more ../ per slash)
type Repository struct {
	path string
	dir  *os.File
	meta *Meta // nil for a repository from before meta.json
	alg  verity.Algorithm
	// secure: meta.json has fs-verity, which tells composefs-rs that every
	// object must have it too; writes then fail without it.
	secure bool
	// unsynced: objects were written since the last syncObjects,
	// which syncMu makes one at a time.
	unsynced atomic.Bool
	syncMu   sync.Mutex
}

// maxMetaSize bounds meta.json: it is a few hundred bytes.
const maxMetaSize = 1 << 20

// OpenRepository opens the repository at dir for reading. Its algorithm
// comes from meta.json; a repository from before meta.json existed gets
// it from the length of its object names. Errors are *fs.PathError about
// dir, reading "repository DIR: ..." with DIR said once.
//
// The repository holds a shared flock on its directory until Close (or
// Unlock), as composefs-rs' does (lock.go): it waits for a garbage
// collection to finish, and one waits for it.
func OpenRepository(dir string) (*Repository, error) {
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errpath.New("repository", dir, err)
	}
	r := &Repository{path: dir, dir: f}
	if err := r.lockShared(); err != nil {
		f.Close()
		return nil, errpath.New("repository", dir, err)
	}
	if err := r.readMeta(); err != nil {
		f.Close()
		return nil, errpath.New("repository", dir, err)
	}
	return r, nil
}

func (r *Repository) readMeta() error {
	mf, err := openRegular(int(r.dir.Fd()), "meta.json", filepath.Join(r.path, "meta.json"), noSymlinks)
	if errors.Is(err, fs.ErrNotExist) {
		alg, ierr := r.inferAlgorithm()
		if ierr != nil {
			return fmt.Errorf("no meta.json, and %w", ierr)
		}
		r.alg = alg
		return nil
	}
	if err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	defer mf.Close()
	m, err := ReadMeta(mf)
	if err != nil {
		return err
	}
	r.meta, r.alg = m, m.Algorithm
	_, verr := verity.MeasureVerity(mf, r.alg)
	r.secure = verr == nil
	return nil
}

// inferAlgorithm looks at the first object name under objects/XX/: 62 hex
// digits mean sha256, 126 sha512.
func (r *Repository) inferAlgorithm() (verity.Algorithm, error) {
	fd, err := openBeneath(int(r.dir.Fd()), "objects", unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if err != nil {
		return 0, fmt.Errorf("cannot infer the algorithm: objects/: %w", err)
	}
	objects := os.NewFile(uintptr(fd), filepath.Join(r.path, "objects"))
	defer objects.Close()
	subs, err := objects.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	for _, sub := range subs {
		if len(sub) != 2 || !isHex(sub) {
			continue
		}
		sfd, err := openBeneath(fd, sub, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
		if err != nil {
			continue
		}
		sd := os.NewFile(uintptr(sfd), sub)
		names, _ := sd.Readdirnames(-1)
		sd.Close()
		for _, n := range names {
			if !isHex(n) {
				continue
			}
			if alg, ok := verity.AlgorithmForDigestSize((len(n) + 2) / 2); ok && len(n)%2 == 0 {
				return alg, nil
			}
		}
	}
	return 0, errors.New("cannot infer the algorithm: no objects")
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// Close releases the repository directory.
func (r *Repository) Close() error { return r.dir.Close() }

// Path is the repository directory.
func (r *Repository) Path() string { return r.path }

// Algorithm is the repository's fs-verity algorithm.
func (r *Repository) Algorithm() verity.Algorithm { return r.alg }

// Meta is the repository's meta.json, nil for an older repository without one.
func (r *Repository) Meta() *Meta { return r.meta }

// Open opens the object named by payload under objects/, with the same
// safety rules as FlatStore.Open.
func (r *Repository) Open(payload string) (*os.File, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("object %q: %w", payload, err)
	}
	f, err := openRegular(int(r.dir.Fd()), "objects/"+rel, filepath.Join(r.path, "objects", rel), noSymlinks)
	if err != nil {
		return nil, fmt.Errorf("object %q in %s: %w", payload, filepath.Join(r.path, "objects"), err)
	}
	return f, nil
}

// Has tells whether the object exists under objects/ as a regular file.
func (r *Repository) Has(payload string) (bool, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return false, fmt.Errorf("object %q: %w", payload, err)
	}
	ok, err := statRegular(int(r.dir.Fd()), "objects/"+rel, noSymlinks)
	if err != nil {
		return false, fmt.Errorf("object %q in %s: %w", payload, filepath.Join(r.path, "objects"), err)
	}
	return ok, nil
}

// OpenDigest opens the object with the given fs-verity digest.
func (r *Repository) OpenDigest(digest []byte) (*os.File, error) {
	if len(digest) != r.alg.Size() {
		return nil, fmt.Errorf("object digest of %d bytes in a %s repository", len(digest), r.alg)
	}
	return r.Open(PayloadForDigest(digest))
}

// OpenImage opens an image by its fs-verity id (hex) or by a ref name
// (looked up under images/refs/, e.g. "myapp/rootfs"). The symlinks of
// images/ are followed, but only while they stay inside the repository.
// An image opened by id is checked against that id.
func (r *Repository) OpenImage(nameOrID string) (*os.File, error) {
	name, err := cleanRelative(nameOrID)
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", nameOrID, err)
	}
	id, isID := r.parseID(name)
	rel := "images/" + name
	f, err := openRegular(int(r.dir.Fd()), rel, filepath.Join(r.path, rel), symlinksBeneath)
	if errors.Is(err, fs.ErrNotExist) && !isID {
		rel = "images/refs/" + name
		f, err = openRegular(int(r.dir.Fd()), rel, filepath.Join(r.path, rel), symlinksBeneath)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image %q not found in %s: %w", nameOrID, r.path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("image %q in %s: %w", nameOrID, r.path, err)
	}
	if isID {
		got, err := verity.DigestFile(r.alg, f)
		if err == nil && string(got) != string(id) {
			err = &verity.MismatchError{Name: f.Name(), Alg: r.alg, Expected: id, Actual: got}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("image %q: %w", nameOrID, err)
		}
	}
	return f, nil
}

// ImageID is the id nameOrID names an image by, if it is one (rather than
// a ref name): OpenImage checks the image it opens against it.
func (r *Repository) ImageID(nameOrID string) ([]byte, bool) {
	name, err := cleanRelative(nameOrID)
	if err != nil {
		return nil, false
	}
	return r.parseID(name)
}

// parseID tells whether name is an image id of the repository's algorithm.
func (r *Repository) parseID(name string) ([]byte, bool) {
	if len(name) != 2*r.alg.Size() || !isHex(name) {
		return nil, false
	}
	id, err := hex.DecodeString(name)
	return id, err == nil
}
