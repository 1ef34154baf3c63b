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
// The copy is written to a temporary file beside its final name, synced,
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
	if err := writeObject(root, payload, alg, digest, src, fi.Size()); err != nil {
		return "", nil, errpath.New("add object", src.Name(), fmt.Errorf("into store %s: %w", root.path, err))
	}
	if !readableByOthers(fi.Mode()) {
		s.unreadable.Add(1)
	}
	return payload, digest, nil
}

// writeObject stores size bytes of src as payload ("xx/rest") in root.
func writeObject(root storeRoot, payload string, alg verity.Algorithm, digest []byte, src *os.File, size int64) error {
	rootfd := int(root.dir.Fd())
	sub, name := payload[:2], payload[3:]
	subCreated := false
	switch err := unix.Mkdirat(rootfd, sub, 0o700); err {
	case nil:
		subCreated = true
	case unix.EEXIST:
	default:
		return fmt.Errorf("mkdir %s: %w", sub, err)
	}
	// The subdirectory is opened beneath the root with no symlinks, so a
	// planted symlink cannot redirect the write elsewhere.
	dirfd, err := openBeneath(rootfd, sub, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if err != nil {
		return fmt.Errorf("open %s: %w", sub, err)
	}
	defer unix.Close(dirfd)
	if subCreated {
		// Searchable by all whatever the umask: whether others reach
		// the objects is decided by the top directory's mode alone.
		if err := unix.Fchmod(dirfd, 0o755); err != nil {
			return fmt.Errorf("chmod %s: %w", sub, err)
		}
	}

	tmp, err := tempName()
	if err != nil {
		return err
	}
	tfd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create temporary file: %w", err)
	}
	placed := false
	defer func() {
		if !placed {
			unix.Unlinkat(dirfd, tmp, 0)
		}
	}()
	dst := os.NewFile(uintptr(tfd), filepath.Join(root.path, sub, tmp))
	err = copyContent(dst, src, size)
	if err == nil {
		// Readable by all whatever the umask, as C mkcomposefs does.
		err = dst.Chmod(0o644)
	}
	if err == nil {
		err = dst.Sync()
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}

	// fs-verity needs a read-only descriptor and no writers left.
	rfd, err := unix.Openat(dirfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopen temporary file: %w", err)
	}
	rf := os.NewFile(uintptr(rfd), dst.Name())
	defer rf.Close()
	if err := verity.EnableVerity(rf, alg); err != nil {
		slog.Debug("fs-verity not enabled on new object", "object", payload, "reason", err.Error())
	}
	// The name must match what was written, even if src changed meanwhile.
	got, err := verity.DigestFile(alg, rf)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, digest) {
		// No name in the mismatch: the caller's error names src.
		return fmt.Errorf("source changed while being copied: %w",
			&verity.MismatchError{Alg: alg, Expected: digest, Actual: got})
	}

	if err := renameNoReplace(dirfd, tmp, name); err != nil {
		if err == unix.EEXIST {
			// Someone else stored it first: theirs is kept.
			return nil
		}
		return fmt.Errorf("rename into place: %w", err)
	}
	placed = true
	if err := unix.Fsync(dirfd); err != nil {
		return fmt.Errorf("sync %s: %w", sub, err)
	}
	if subCreated {
		if err := unix.Fsync(rootfd); err != nil {
			return fmt.Errorf("sync %s: %w", root.path, err)
		}
	}
	return nil
}

// renameNoReplace renames old to new in dirfd unless new exists (EEXIST).
// Filesystems without RENAME_NOREPLACE get link + unlink, which also
// refuses to replace.
func renameNoReplace(dirfd int, old, new string) error {
	err := unix.Renameat2(dirfd, old, dirfd, new, unix.RENAME_NOREPLACE)
	if err != unix.EINVAL && err != unix.ENOSYS {
		return err
	}
	if err := unix.Linkat(dirfd, old, dirfd, new, 0); err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, old, 0)
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
