package objects

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// The write side of a composefs-rs repository, in composefs-rs' on-disk
// form so that each reads what the other writes: objects/XX/REST named by
// fs-verity digest, images/<id> -> ../objects/XX/REST, images/refs/<name>
// -> ../<id> (one more ../ per slash in name); split streams are
// streams.go's.

// CreateRepository opens the repository at dir for writing, making it
// first when dir is missing or empty: the top directory 0700 (private, as
// CreateFlat's; one chmod shares it), missing parents as mkdir -p does,
// and meta.json as composefs-rs' cfsctl init writes it (alg, EROFS format
// 1), with fs-verity where the file system has it, which makes the
// repository require fs-verity on every object, as composefs-rs does. A
// repository that already exists is opened as it is, but one of another
// algorithm is an error, and so is a directory with other content and no
// meta.json. Errors are *fs.PathError about dir.
func CreateRepository(dir string, alg verity.Algorithm) (*Repository, error) {
	if dir == "" {
		return nil, errors.New("repository: no directory given")
	}
	if !alg.Valid() {
		return nil, errpath.New("repository", dir, fmt.Errorf("unsupported algorithm %s", alg))
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, errpath.New("repository", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, errpath.New("repository", dir, err)
	}
	f, err := os.OpenFile(dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, errpath.New("repository", dir, err)
	}
	err = initMeta(f, alg)
	f.Close()
	if err != nil {
		return nil, errpath.New("repository", dir, err)
	}
	r, err := OpenRepository(dir)
	if err != nil {
		return nil, err
	}
	if r.alg != alg {
		r.Close()
		return nil, errpath.New("repository", dir, fmt.Errorf("%w: it uses %s, not %s", ErrRepositoryMeta, r.alg, alg))
	}
	return r, nil
}

// initMeta writes meta.json into the directory d unless it is there.
func initMeta(d *os.File, alg verity.Algorithm) error {
	dirfd := int(d.Fd())
	if err := unix.Fstatat(dirfd, "meta.json", &unix.Stat_t{}, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return nil
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		// Another CreateRepository may be writing meta.json beside us.
		if n != "meta.json" && !strings.HasPrefix(n, ".tmp-") {
			return fmt.Errorf("not empty and no meta.json: not a composefs-rs repository (%q is there)", n)
		}
	}
	data, err := NewMeta(alg).Encode()
	if err != nil {
		return err
	}
	tmp, err := tempName()
	if err != nil {
		return err
	}
	tfd, err := unix.Openat(dirfd, tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("create meta.json: %w", err)
	}
	defer unix.Unlinkat(dirfd, tmp, 0)
	tf := os.NewFile(uintptr(tfd), tmp)
	_, err = tf.Write(data)
	if err == nil {
		err = tf.Chmod(0o644)
	}
	if err == nil {
		err = tf.Sync()
	}
	if cerr := tf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write meta.json: %w", err)
	}
	rfd, err := unix.Openat(dirfd, tmp, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopen meta.json: %w", err)
	}
	rf := os.NewFile(uintptr(rfd), tmp)
	// Best effort: without fs-verity here the repository is what
	// composefs-rs calls insecure (cfsctl init --insecure).
	verity.EnableVerity(rf, alg)
	rf.Close()
	if err := renameNoReplace(dirfd, tmp, dirfd, "meta.json"); err != nil && err != unix.EEXIST {
		return fmt.Errorf("place meta.json: %w", err)
	}
	return unix.Fsync(dirfd)
}

// ErofsVersion is the composefs image format the repository's images are
// written in by default (meta.json's; 2 for a repository without one).
func (r *Repository) ErofsVersion() int {
	if r.meta == nil {
		return 2
	}
	return r.meta.ErofsVersion
}

// subdir opens (making it when missing, 0755) the directory name directly
// under the repository, with no symlink followed.
func (r *Repository) subdir(name string) (*os.File, error) {
	rootfd := int(r.dir.Fd())
	if err := unix.Mkdirat(rootfd, name, 0o755); err != nil && err != unix.EEXIST {
		return nil, fmt.Errorf("mkdir %s: %w", name, err)
	}
	fd, err := openBeneath(rootfd, name, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(r.path, name)), nil
}

// WriteObject stores size bytes read from r as an object and returns its
// fs-verity digest. An object already present is kept (and not written
// again); a failed write leaves the repository as it was. Reading fewer
// or more than size bytes is an error.
func (r *Repository) WriteObject(src io.Reader, size int64) (digest []byte, err error) {
	if size < 0 {
		return nil, fmt.Errorf("write object: negative size %d", size)
	}
	objects, err := r.subdir("objects")
	if err != nil {
		return nil, errpath.New("repository", r.path, err)
	}
	defer objects.Close()
	// Hashed as it is written, so that the bytes are read once.
	fill := func(dst *os.File) ([]byte, error) {
		h := verity.NewHasher(r.alg)
		n, err := io.Copy(io.MultiWriter(dst, h), io.LimitReader(src, size))
		if err != nil {
			return nil, err
		}
		if n != size {
			return nil, fmt.Errorf("object content ended after %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
		}
		var one [1]byte
		if m, _ := src.Read(one[:]); m > 0 {
			return nil, fmt.Errorf("object content is longer than %d bytes", size)
		}
		return h.Sum(), nil
	}
	// Not synced one by one: syncObjects syncs them all before a link
	// names any, as composefs-rs does.
	digest, err = storeObject(int(objects.Fd()), objects.Name(), r.alg, nil, r.secure, false, fill)
	if err != nil {
		return nil, fmt.Errorf("write object into %s: %w", objects.Name(), err)
	}
	r.unsynced.Store(true)
	return digest, nil
}

// syncObjects makes the objects written since the last call durable,
// with one syncfs of the repository's file system, before a link (an
// image, a stream, a ref) names them: after a crash, a link never names an
// object that is not whole.
func (r *Repository) syncObjects() error {
	// Held across the sync: a caller whose objects a sync in flight
	// covers waits for it to end, and sees its failure.
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if !r.unsynced.Swap(false) {
		return nil
	}
	// objects/ may be a file system of its own.
	objects, err := r.subdir("objects")
	if err == nil {
		err = unix.Syncfs(int(objects.Fd()))
		objects.Close()
	}
	if err != nil {
		r.unsynced.Store(true)
		return fmt.Errorf("sync %s: %w", r.path, err)
	}
	return nil
}

// WriteImage stores a composefs image as an object and links it as
// images/<id>, as composefs-rs does for every image it may mount; id is
// the image's fs-verity digest in the repository's algorithm.
func (r *Repository) WriteImage(image []byte) (id []byte, err error) {
	id, err = r.WriteObject(bytes.NewReader(image), int64(len(image)))
	if err != nil {
		return nil, err
	}
	if err := r.syncObjects(); err != nil {
		return nil, err
	}
	images, err := r.subdir("images")
	if err != nil {
		return nil, errpath.New("repository", r.path, err)
	}
	defer images.Close()
	target := "../objects/" + PayloadForDigest(id)
	if err := replaceSymlink(int(images.Fd()), hex.EncodeToString(id), target); err != nil {
		return nil, fmt.Errorf("link image %x in %s: %w", id, images.Name(), err)
	}
	return id, nil
}

// replaceSymlink makes name in dirfd a symlink to target, replacing what
// was there at once (a new link renamed over it).
func replaceSymlink(dirfd int, name, target string) error {
	if cur, err := readlinkat(dirfd, name); err == nil && cur == target {
		return nil
	}
	tmp, err := tempName()
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(target, dirfd, tmp); err != nil {
		return err
	}
	if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
		unix.Unlinkat(dirfd, tmp, 0)
		return err
	}
	return unix.Fsync(dirfd)
}

// refDir opens the directory of TOP/refs/<name> beneath the repository,
// TOP "images" or "streams", making the directories on the way (0755)
// when create is set; no symlink is followed. It returns that directory
// and the name's last component.
func (r *Repository) refDir(top, name string, create bool) (*os.File, string, error) {
	rel, err := cleanRelative(name)
	if err != nil {
		return nil, "", fmt.Errorf("ref %q: %w", name, err)
	}
	dir, last := top+"/refs", rel
	if i := strings.LastIndexByte(rel, '/'); i >= 0 {
		dir, last = dir+"/"+rel[:i], rel[i+1:]
	}
	d, err := r.openDirs(dir, create)
	if err != nil {
		return nil, "", fmt.Errorf("ref %q: %w", name, err)
	}
	return d, last, nil
}

// Tag names the image id (already written by WriteImage) ref name: the
// symlink images/refs/<name>, replaced if it exists. Names may have
// slashes ("myapp/rootfs"), not "." or ".." components.
func (r *Repository) Tag(name string, id []byte) error {
	if len(id) != r.alg.Size() {
		return fmt.Errorf("tag %q: image id of %d bytes in a %s repository", name, len(id), r.alg)
	}
	h := hex.EncodeToString(id)
	if ok, err := r.imageLinked(h); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("no image %s in %s: %w", h, r.path, fs.ErrNotExist)
		}
		return fmt.Errorf("tag %q: %w", name, err)
	}
	d, last, err := r.refDir("images", name, true)
	if err != nil {
		return fmt.Errorf("tag %q in %s: %w", name, r.path, err)
	}
	defer d.Close()
	// As composefs-rs links it: relative to images/, the directory both
	// are in.
	target := strings.Repeat("../", strings.Count(name, "/")+1) + h
	if err := replaceSymlink(int(d.Fd()), last, target); err != nil {
		return fmt.Errorf("tag %q in %s: %w", name, r.path, err)
	}
	return nil
}

// imageLinked tells whether images/<h> exists as a symlink.
func (r *Repository) imageLinked(h string) (bool, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(r.dir.Fd()), "images/"+h, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFLNK, nil
}

// Untag removes ref name. The image stays (until composefs-rs' gc).
func (r *Repository) Untag(name string) error {
	d, last, err := r.refDir("images", name, false)
	if err != nil {
		return fmt.Errorf("untag %q in %s: %w", name, r.path, err)
	}
	defer d.Close()
	if err := removeLink(d, last); err != nil {
		return fmt.Errorf("untag %q in %s: %w", name, r.path, err)
	}
	return nil
}

// removeLink removes the symlink name from directory d, and only a
// symlink: a ref, which names what it links to.
func removeLink(d *os.File, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		return errors.New("not a ref (not a symlink)")
	}
	if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil {
		return err
	}
	return unix.Fsync(int(d.Fd()))
}

// maxRefDepth bounds how deep Refs descends into images/refs/.
const maxRefDepth = 64

// Refs lists the image refs: each name (relative to images/refs/, with
// slashes) and the id of the image its symlink names. A symlink whose
// target does not end in images/<id> is an error.
func (r *Repository) Refs() (map[string][]byte, error) {
	refs := map[string][]byte{}
	fd, err := openBeneath(int(r.dir.Fd()), "images/refs", unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if errors.Is(err, fs.ErrNotExist) {
		return refs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("refs in %s: %w", r.path, err)
	}
	d := os.NewFile(uintptr(fd), filepath.Join(r.path, "images/refs"))
	defer d.Close()
	err = walkLinks(d, "images/refs", 0, false, func(ld *os.File, name, rel string) error {
		target, err := readlinkat(int(ld.Fd()), name)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		ref := strings.TrimPrefix(rel, "images/refs/")
		dir, base := filepath.Split(target)
		id, ok := r.parseID(base)
		// composefs-rs's "../<id>" (one more ../ per slash in the
		// name), or a path ending in images/<id>.
		up := strings.Repeat("../", strings.Count(ref, "/")+1)
		if !ok || dir != up && !strings.HasSuffix(dir, "images/") {
			return fmt.Errorf("%s: target %q is not images/<id>", rel, target)
		}
		refs[ref] = id
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("refs in %s: %w", r.path, err)
	}
	return refs, nil
}
