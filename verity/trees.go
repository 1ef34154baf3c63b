package verity

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"syscall"
)

// Trees keeps the block sums of files hashed in userspace on disk, by
// their digest, for the next process that meets the same content: a
// mount after a reboot or a remount checks a large file block by block as
// it is read (BlockSums.ReadAt) instead of hashing all of it before its
// first byte. The kernel's fs-verity keeps a file's tree beside it for the
// same reason.
//
// Nothing read back is trusted for content: sums are used only when the
// digest they give (BlockSums.Digest) is the one the caller expects, so a
// damaged or planted file costs a full hash, never a wrong byte. The
// directory itself must be the user's own and private (OpenTrees): the
// sums are hashes of the user's data, block by block, and a directory
// others can write to could make a server (root's, say) write where they
// point it, or hang on a fifo. Every access stays beneath the directory
// opened, whatever links are made inside it, and only regular files are
// read.
//
// Layout: DIR/ALG/XX/REST, where XXREST is the digest in hex and the file
// holds the sums alone, one digest per data block (1/128 of the data's
// size for sha256). Nothing is ever removed: a tree is 1/128 of what was
// read, and the directory can be emptied at any time.
type Trees struct {
	root *os.Root
}

// OpenTrees returns the trees kept in dir, making it (0700) if need be.
// A directory that is not this user's, or that others may read or write,
// is refused.
func OpenTrees(dir string) (*Trees, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("fs-verity trees: %w", err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("fs-verity trees: %w", err)
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("fs-verity trees: %w", err)
	}
	owner := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		owner = int(st.Uid)
	}
	if owner != os.Geteuid() || fi.Mode().Perm()&0o077 != 0 {
		root.Close()
		return nil, fmt.Errorf("fs-verity trees: %s is not private to this user (mode %v, owner %d): not used", dir, fi.Mode().Perm(), owner)
	}
	return &Trees{root: root}, nil
}

// Dir is where the trees are kept.
func (t *Trees) Dir() string { return t.root.Name() }

// Close lets go of the directory.
func (t *Trees) Close() error { return t.root.Close() }

// name is where the sums of the file of digest are, within the directory.
func name(alg Algorithm, digest []byte) string {
	h := hex.EncodeToString(digest)
	return path.Join(alg.String(), h[:2], h[2:])
}

// Load returns the block sums kept for a file of size bytes whose digest
// is digest, or nil when none are kept, or the sums kept do not give that
// digest. Files whose size keepsSums refuses have none.
func (t *Trees) Load(alg Algorithm, digest []byte, size int64) (*BlockSums, error) {
	if !keepsSums(size) || !alg.Valid() || len(digest) != alg.Size() {
		return nil, nil
	}
	// Only a regular file; and should one be swapped for a fifo after
	// this look, the open does not block on it.
	if fi, err := t.root.Lstat(name(alg, digest)); err != nil || !fi.Mode().IsRegular() {
		return nil, nil
	}
	f, err := t.root.OpenFile(name(alg, digest), os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ELOOP) {
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
	if !keepsSums(b.size) {
		return nil
	}
	if !bytes.Equal(b.Digest(), digest) {
		return fmt.Errorf("fs-verity tree: block sums do not give digest %x", digest)
	}
	dst := name(b.alg, digest)
	if err := t.root.MkdirAll(path.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	var r [8]byte
	rand.Read(r[:])
	tmp := path.Join(path.Dir(dst), ".new-"+hex.EncodeToString(r[:]))
	f, err := t.root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	_, err = f.Write(b.sums)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = t.root.Rename(tmp, dst)
	}
	if err != nil {
		t.root.Remove(tmp)
		return fmt.Errorf("fs-verity tree: %w", err)
	}
	return nil
}
