package objects

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// Add copies the regular file src into the first base directory under its
// fs-verity digest and returns the payload ("xx/rest") and the digest.
//
// The copy is written to a temporary file at the top of the store, synced,
// given fs-verity (best effort), checked against the digest, and renamed
// into place without replacing anything: an object already present (in
// any base directory) is kept as it is. A crash leaves at worst a stray
// ".tmp-*" file, never a partial object.
//
// The errors about src are *fs.PathError naming it once ("add object
// SRC: ..."), its digest's and stat's errors included.
func (s *FlatStore) Add(alg verity.Algorithm, src *os.File) (payload string, digest []byte, err error) {
	if !alg.Valid() {
		return "", nil, fmt.Errorf("add object: unsupported algorithm %s", alg)
	}
	if len(s.roots) == 0 {
		return "", nil, errors.New("add object: store is closed")
	}
	fi, err := src.Stat()
	if err != nil {
		return "", nil, errpath.New("add object", src.Name(), err)
	}
	if !fi.Mode().IsRegular() {
		return "", nil, errpath.New("add object", src.Name(), ErrNotRegular)
	}
	digest, err = verity.DigestFile(alg, src)
	if err != nil {
		return "", nil, errpath.New("add object", src.Name(), err)
	}
	payload = PayloadForDigest(digest)
	if ok, err := s.Has(payload); err != nil || ok {
		return payload, digest, err
	}
	root := s.roots[0]
	fill := func(dst *os.File) ([]byte, error) { return nil, copyContent(dst, src, fi.Size()) }
	if _, err := storeObject(int(root.dir.Fd()), root.path, alg, digest, false, true, fill); err != nil {
		return "", nil, errpath.New("add object", src.Name(), fmt.Errorf("into store %s: %w", root.path, err))
	}
	if !readableByOthers(fi.Mode()) {
		s.unreadable.Add(1)
	}
	return payload, digest, nil
}

// storeObject is the one place that writes an object into a directory of
// XX/REST names (a flat store's base, a repository's objects/): fill
// writes the content into a temporary file at the top of rootfd, which is
// given fs-verity (an error when requireVerity, else best effort),
// digested, checked against want when want is not nil, and renamed to its
// name without replacing anything: an object already present is kept. A
// failure leaves nothing behind; a crash at worst a ".tmp-*" file. fill
// returns the digest of the bytes it wrote when it computed it on the
// way (else nil, and the file is read back for it). durable syncs the file
// and its directories before returning; without it the caller syncs
// before anything names the object (a repository, once per batch).
func storeObject(rootfd int, rootPath string, alg verity.Algorithm, want []byte, requireVerity, durable bool, fill func(dst *os.File) ([]byte, error)) (digest []byte, err error) {
	tmp, err := tempName()
	if err != nil {
		return nil, err
	}
	tfd, err := unix.Openat(rootfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create temporary file: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			unix.Unlinkat(rootfd, tmp, 0)
		}
	}()
	dst := os.NewFile(uintptr(tfd), filepath.Join(rootPath, tmp))
	written, err := fill(dst)
	if err == nil {
		// Readable by all whatever the umask, as C mkcomposefs does.
		err = dst.Chmod(0o644)
	}
	if err == nil && durable {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}

	// fs-verity needs a read-only descriptor and no writers left.
	rfd, err := unix.Openat(rootfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("reopen temporary file: %w", err)
	}
	rf := os.NewFile(uintptr(rfd), dst.Name())
	defer rf.Close()
	if err := verity.EnableVerity(rf, alg); err != nil {
		if requireVerity {
			return nil, fmt.Errorf("enable fs-verity (the repository requires it): %w", err)
		}
		slog.Debug("fs-verity not enabled on new object", "object", dst.Name(), "reason", err.Error())
	}
	// The name must match what was written, even if the source changed
	// meanwhile: the digest is of the bytes written.
	digest = written
	if digest == nil {
		if digest, err = verity.DigestFile(alg, rf); err != nil {
			return nil, err
		}
	}
	if want != nil && !bytes.Equal(digest, want) {
		// No name in the mismatch: the caller's error names the source.
		return nil, fmt.Errorf("source changed while being copied: %w",
			&verity.MismatchError{Alg: alg, Expected: want, Actual: digest})
	}

	payload := PayloadForDigest(digest)
	sub, name := payload[:2], payload[3:]
	subCreated := false
	switch err := unix.Mkdirat(rootfd, sub, 0o700); err {
	case nil:
		subCreated = true
	case unix.EEXIST:
	default:
		return nil, fmt.Errorf("mkdir %s: %w", sub, err)
	}
	// The subdirectory is opened beneath the root with no symlinks, so a
	// planted symlink cannot redirect the write elsewhere.
	dirfd, err := openBeneath(rootfd, sub, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", sub, err)
	}
	defer unix.Close(dirfd)
	if subCreated {
		// Searchable by all whatever the umask: whether others reach
		// the objects is decided by the top directory's mode alone.
		if err := unix.Fchmod(dirfd, 0o755); err != nil {
			return nil, fmt.Errorf("chmod %s: %w", sub, err)
		}
	}
	if err := renameNoReplace(rootfd, tmp, dirfd, name); err != nil {
		if err != unix.EEXIST {
			return nil, fmt.Errorf("rename into place: %w", err)
		}
		// Someone else stored it first: theirs is kept, unless it
		// is not even of the right size, as an object a crash caught
		// before its sync can be: then ours replaces it.
		var theirs, ours unix.Stat_t
		if unix.Fstatat(dirfd, name, &theirs, unix.AT_SYMLINK_NOFOLLOW) != nil ||
			unix.Fstat(int(rf.Fd()), &ours) != nil ||
			theirs.Mode&unix.S_IFMT != unix.S_IFREG || theirs.Size == ours.Size {
			return digest, nil
		}
		if err := unix.Renameat(rootfd, tmp, dirfd, name); err != nil {
			return nil, fmt.Errorf("replace a damaged object: %w", err)
		}
	}
	placed = true
	if !durable {
		return digest, nil
	}
	if err := unix.Fsync(dirfd); err != nil {
		return nil, fmt.Errorf("sync %s: %w", sub, err)
	}
	if err := unix.Fsync(rootfd); err != nil {
		return nil, fmt.Errorf("sync %s: %w", rootPath, err)
	}
	return digest, nil
}

// renameNoReplace renames old in olddir to new in newdir unless new exists
// (EEXIST). Filesystems without RENAME_NOREPLACE get link + unlink, which
// also refuses to replace.
func renameNoReplace(olddir int, old string, newdir int, new string) error {
	err := unix.Renameat2(olddir, old, newdir, new, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	if err := unix.Linkat(olddir, old, newdir, new, 0); err != nil {
		return err
	}
	return unix.Unlinkat(olddir, old, 0)
}

func tempName() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return ".tmp-" + hex.EncodeToString(b[:]), nil
}

// copyContent copies size bytes of src, from offset 0, to the empty dst:
// a reflink where the filesystem shares extents, else copy_file_range,
// else read and write.
func copyContent(dst, src *os.File, size int64) error {
	dfd, sfd := int(dst.Fd()), int(src.Fd())
	if size > 0 && unix.IoctlFileClone(dfd, sfd) == nil {
		return checkCopied(dst, size)
	}
	var off int64
	for off < size {
		n, err := unix.CopyFileRange(sfd, &off, dfd, nil, int(min(size-off, 1<<30)), 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			break // not supported here, or the source shrank: read and write
		}
	}
	if off < size {
		n, err := io.Copy(dst, io.NewSectionReader(src, off, size-off))
		if err != nil {
			return err
		}
		if off+n != size {
			return fmt.Errorf("source shrank while being copied: %w", io.ErrUnexpectedEOF)
		}
	}
	return checkCopied(dst, size)
}

func checkCopied(dst *os.File, size int64) error {
	fi, err := dst.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != size {
		return fmt.Errorf("copied %d bytes, expected %d", fi.Size(), size)
	}
	return nil
}
