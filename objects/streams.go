package objects

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// Split streams in a repository, kept as composefs-rs keeps them: the
// stream is an object like any other, and
//
//	streams/<content id>       -> ../objects/XX/REST
//	streams/refs/<name>        -> ../<content id> (one more ../ per slash in name)
//
// A content identifier ("oci-layer-sha256:...") names what the stream
// holds, independently of how it was split; a ref name keeps a stream
// from composefs-rs' garbage collection. The split stream format itself
// is package splitstream's.

// ErrNoStream is wrapped when a content identifier has no stream.
var ErrNoStream = errors.New("no such stream")

// checkContentID allows one plain name that is not "refs".
func checkContentID(id string) error {
	if _, err := cleanRelative(id); err != nil {
		return fmt.Errorf("stream %q: %w", id, err)
	}
	if strings.Contains(id, "/") || id == "refs" {
		return fmt.Errorf("stream %q: %w: a content identifier is one name, not refs", id, ErrUnsafePath)
	}
	return nil
}

// openDirs opens the directory path (slash-separated, checked) beneath the
// repository, with no symlink followed, making what is missing (0755)
// when create is set.
func (r *Repository) openDirs(path string, create bool) (*os.File, error) {
	fd, err := unix.FcntlInt(r.dir.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	cur := os.NewFile(uintptr(fd), r.path)
	for p := range strings.SplitSeq(path, "/") {
		if create {
			if err := unix.Mkdirat(int(cur.Fd()), p, 0o755); err != nil && err != unix.EEXIST {
				cur.Close()
				return nil, fmt.Errorf("mkdir %s: %w", filepath.Join(cur.Name(), p), err)
			}
		}
		nfd, err := openBeneath(int(cur.Fd()), p, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
		next := filepath.Join(cur.Name(), p)
		cur.Close()
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", next, err)
		}
		cur = os.NewFile(uintptr(nfd), next)
	}
	return cur, nil
}

// WriteStream stores a split stream's bytes as an object and registers it
// under contentID (RegisterStream); ref, when not empty, names it too.
// It returns the stream's object id.
func (r *Repository) WriteStream(contentID string, data []byte, ref string) ([]byte, error) {
	if err := checkContentID(contentID); err != nil {
		return nil, err
	}
	id, err := r.WriteObject(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("stream %q: %w", contentID, err)
	}
	if err := r.RegisterStream(contentID, id, ref); err != nil {
		return nil, err
	}
	return id, nil
}

// RegisterStream links streams/<contentID> to the object id (a split
// stream already stored, with everything it names), replacing a link that
// was there; ref, when not empty, then names it (NameStream). The objects
// written before are synced first, so the link never names content a
// crash could lose.
func (r *Repository) RegisterStream(contentID string, id []byte, ref string) error {
	if err := checkContentID(contentID); err != nil {
		return err
	}
	if len(id) != r.alg.Size() {
		return fmt.Errorf("stream %q: object id of %d bytes in a %s repository", contentID, len(id), r.alg)
	}
	if ok, err := r.Has(PayloadForDigest(id)); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("no object %x: %w", id, fs.ErrNotExist)
		}
		return fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	if err := r.syncObjects(); err != nil {
		return err
	}
	d, err := r.openDirs("streams", true)
	if err != nil {
		return fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	defer d.Close()
	if err := replaceSymlink(int(d.Fd()), contentID, "../objects/"+PayloadForDigest(id)); err != nil {
		return fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	if ref != "" {
		return r.NameStream(contentID, ref)
	}
	return nil
}

// HasStream gives the object id of the stream registered as contentID;
// ok is false when there is none. A link that is not
// ../objects/XX/REST of the repository's algorithm is an error.
func (r *Repository) HasStream(contentID string) (id []byte, ok bool, err error) {
	if err := checkContentID(contentID); err != nil {
		return nil, false, err
	}
	d, err := r.openDirs("streams", false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	defer d.Close()
	target, err := readlinkat(int(d.Fd()), contentID)
	if err == unix.ENOENT {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	id, err = r.streamTarget(target)
	if err != nil {
		return nil, false, fmt.Errorf("stream %q in %s: %w", contentID, r.path, err)
	}
	return id, true, nil
}

// streamTarget reads the object id from a streams/ link's target: "../"
// then a path ending in XX/REST, as composefs-rs reads it.
func (r *Repository) streamTarget(target string) ([]byte, error) {
	rest, ok := strings.CutPrefix(target, "../")
	parts := strings.Split(rest, "/")
	if !ok || len(parts) < 2 {
		return nil, fmt.Errorf("link target %q is not ../objects/XX/REST", target)
	}
	h := parts[len(parts)-2] + parts[len(parts)-1]
	id, valid := r.parseID(h)
	if !valid || len(parts[len(parts)-2]) != 2 {
		return nil, fmt.Errorf("link target %q does not end in a %s object name", target, r.alg)
	}
	return id, nil
}

// OpenStream opens the split stream registered as contentID and checks
// its content against its object id; it returns the file and the id.
func (r *Repository) OpenStream(contentID string) (*os.File, []byte, error) {
	id, ok, err := r.HasStream(contentID)
	if err != nil {
		return nil, nil, err
	}
	if !ok {
		return nil, nil, fmt.Errorf("stream %q in %s: %w", contentID, r.path, ErrNoStream)
	}
	f, err := r.OpenVerified(id)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %q: %w", contentID, err)
	}
	return f, id, nil
}

// OpenVerified opens the object id and checks its content against id: by
// fs-verity where the file has it, else by reading it.
func (r *Repository) OpenVerified(id []byte) (*os.File, error) {
	f, err := r.OpenDigest(id)
	if err != nil {
		return nil, err
	}
	// The kernel's measurement where there is one (DigestFile asks it
	// first), and the file's offset left alone.
	got, err := verity.DigestFile(r.alg, f)
	if err == nil && !bytes.Equal(got, id) {
		err = &verity.MismatchError{Name: f.Name(), Alg: r.alg, Expected: id, Actual: got}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// NameStream makes streams/refs/<name> name the stream registered as
// contentID (a garbage collection root for composefs-rs), replacing what
// the name named. Names may have slashes, not "." or ".." components.
func (r *Repository) NameStream(contentID, name string) error {
	if err := checkContentID(contentID); err != nil {
		return err
	}
	if _, ok, err := r.HasStream(contentID); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("stream %q in %s: %w", contentID, r.path, ErrNoStream)
		}
		return fmt.Errorf("name stream %q: %w", name, err)
	}
	d, last, err := r.refDir("streams", name, true)
	if err != nil {
		return fmt.Errorf("stream %w", err)
	}
	defer d.Close()
	target := strings.Repeat("../", strings.Count(name, "/")+1) + contentID
	if err := replaceSymlink(int(d.Fd()), last, target); err != nil {
		return fmt.Errorf("stream ref %q in %s: %w", name, r.path, err)
	}
	return nil
}

// UnnameStream removes streams/refs/<name>; the stream stays.
func (r *Repository) UnnameStream(name string) error {
	d, last, err := r.refDir("streams", name, false)
	if err != nil {
		return fmt.Errorf("stream %w", err)
	}
	defer d.Close()
	if err := removeLink(d, last); err != nil {
		return fmt.Errorf("stream ref %q in %s: %w", name, r.path, err)
	}
	return nil
}

// StreamRef gives the content identifier streams/refs/<name> names.
func (r *Repository) StreamRef(name string) (string, error) {
	d, last, err := r.refDir("streams", name, false)
	if err != nil {
		return "", fmt.Errorf("stream %w", err)
	}
	defer d.Close()
	target, err := readlinkat(int(d.Fd()), last)
	if err != nil {
		return "", fmt.Errorf("stream ref %q in %s: %w", name, r.path, err)
	}
	return refTarget(name, target)
}

// refTarget takes the content identifier from a ref's target: its last
// component, which must be a content identifier.
func refTarget(name, target string) (string, error) {
	cid := target[strings.LastIndexByte(target, '/')+1:]
	if !strings.HasPrefix(target, "../") || checkContentID(cid) != nil {
		return "", fmt.Errorf("stream ref %q: target %q is not ../<content id>", name, target)
	}
	return cid, nil
}

// StreamRefs lists the refs under streams/refs/<prefix>/ (all refs for an
// empty prefix): each name relative to it, with the content identifier
// its link names. Links that do not name a content identifier are
// skipped, as composefs-rs skips them.
func (r *Repository) StreamRefs(prefix string) (map[string]string, error) {
	dir := "streams/refs"
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		if _, err := cleanRelative(prefix); err != nil {
			return nil, fmt.Errorf("stream refs %q: %w", prefix, err)
		}
		dir += "/" + prefix
	}
	refs := map[string]string{}
	d, err := r.openDirs(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return refs, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream refs in %s: %w", r.path, err)
	}
	defer d.Close()
	err = walkLinks(d, dir, 0, false, func(ld *os.File, name, rel string) error {
		target, err := readlinkat(int(ld.Fd()), name)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		ref := strings.TrimPrefix(rel, dir+"/")
		if cid, err := refTarget(ref, target); err == nil {
			refs[ref] = cid
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("stream refs in %s: %w", r.path, err)
	}
	return refs, nil
}
