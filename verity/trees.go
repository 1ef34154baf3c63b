package verity

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Trees keeps the block sums of files hashed in userspace on disk, by
// their digest, for the next process that meets the same content: a
// mount after a reboot or a remount checks a large file block by block as
// it is read (BlockSums.ReadAt) instead of hashing all of it before its
// first byte. The kernel's fs-verity keeps a file's tree beside it for the
// same reason.
//
// Nothing read back is trusted: sums are used only when the digest they
// give (BlockSums.Digest) is the one the caller expects, so a damaged or
// planted file costs a full hash, never a wrong byte. What they reveal
// (hashes of a user's data, block by block) is kept as private as the
// user's own files: the directories are made 0700 and the files 0600.
//
// Layout: DIR/ALG/XX/REST, where XXREST is the digest in hex and the file
// holds the sums alone, one digest per data block (1/128 of the data's
// size for sha256).
type Trees struct {
	dir string
}

// OpenTrees returns the trees kept in dir, making it if need be.
func OpenTrees(dir string) (*Trees, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fs-verity trees: %w", err)
	}
	return &Trees{dir: dir}, nil
}

// Dir is where the trees are kept.
func (t *Trees) Dir() string { return t.dir }

func (t *Trees) path(alg Algorithm, digest []byte) string {
	h := hex.EncodeToString(digest)
	return filepath.Join(t.dir, alg.String(), h[:2], h[2:])
}

// Load returns the block sums kept for a file of size bytes whose digest
// is digest, or nil when none are kept, or the sums kept do not give that
// digest. Files under TreeMinSize have none.
func (t *Trees) Load(alg Algorithm, digest []byte, size int64) (*BlockSums, error) {
	if size < TreeMinSize || !alg.Valid() || len(digest) != alg.Size() {
		return nil, nil
	}
	f, err := os.Open(t.path(alg, digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fs-verity tree: %w", err)
	}
	defer f.Close()
	want := sumsLen(alg, size)
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("fs-verity tree: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Size() != want {
		// Not the sums of a file of this size: not these.
		return nil, nil
	}
	sums := make([]byte, want)
	if _, err := io.ReadFull(f, sums); err != nil {
		return nil, fmt.Errorf("fs-verity tree %s: %w", f.Name(), err)
	}
	b := &BlockSums{alg: alg, size: size, sums: sums}
	if !bytes.Equal(b.Digest(), digest) {
		return nil, nil
	}
	return b, nil
}

// Save keeps b, the block sums of a file whose digest is digest, replacing
// what was kept for it. Sums that do not give digest are refused. The
// file appears whole or not at all (written aside, then renamed).
func (t *Trees) Save(digest []byte, b *BlockSums) error {
	if b.size < TreeMinSize {
		return nil
	}
	if !bytes.Equal(b.Digest(), digest) {
		return fmt.Errorf("fs-verity tree: block sums do not give digest %x", digest)
	}
	path := t.path(b.alg, digest)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".new-*")
	if err != nil {
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	_, err = tmp.Write(b.sums)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	return nil
}
