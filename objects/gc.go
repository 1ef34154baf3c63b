package objects

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/composefs/composefs-go/splitstream"
	"golang.org/x/sys/unix"
)

// Garbage collection, as composefs-rs' gc does it: what images/refs/ and
// streams/refs/ name lives — each named image's object and the objects its
// files name, each named stream's object, its object references and,
// through its named references, the streams it names, recursively (found
// by object id in the streams/ links) — and every other object is removed;
// then the links of images/ and streams/ left broken, first level first,
// then the refs below them.

// ImageObjectsFunc lists the objects an image's files name, as payloads
// ("xx/rest", a leading slash allowed): package objects does not read
// images, so the caller (package composefs) does. An error means the image
// could not be read whole.
type ImageObjectsFunc func(image *os.File) ([]string, error)

// GCResult is what a garbage collection removed, or would remove.
type GCResult struct {
	// ObjectsRemoved and ObjectsBytes count the objects no root reaches
	// and their size.
	ObjectsRemoved int64 `json:"objects_removed"`
	ObjectsBytes   int64 `json:"objects_bytes"`
	// ImagesPruned and StreamsPruned count the broken links removed from
	// images/ and streams/ (their refs/ included).
	ImagesPruned  int64 `json:"images_pruned"`
	StreamsPruned int64 `json:"streams_pruned"`
	// TempsRemoved counts the temporary files left by writers that
	// died: objects/.tmp-* and the downloads under tmp/.
	TempsRemoved int64 `json:"temps_removed"`
}

// GC removes what no ref reaches. It first turns the repository's shared
// lock into an exclusive one, waiting until ctx is done for every other
// process that has the repository open (composefs-rs' included) to close
// it, and gives the shared lock back at the end; a dry run keeps the
// shared lock, removes nothing and gives the same counts, links that only
// the removal would break included. imageObjects lists a named image's
// objects; an image that cannot be read stops the collection before
// anything is removed, as does a named stream that does not parse.
func (r *Repository) GC(ctx context.Context, dryRun bool, imageObjects ImageObjectsFunc) (GCResult, error) {
	fail := func(err error) (GCResult, error) {
		return GCResult{}, fmt.Errorf("gc of repository %s: %w", r.path, err)
	}
	if imageObjects == nil {
		return fail(errors.New("no way to list an image's objects"))
	}
	fd := int(r.dir.Fd())
	if !dryRun {
		if err := flockWait(ctx, fd, unix.LOCK_EX, r.path); err != nil {
			// The failed conversion may have dropped the shared lock.
			r.lockShared()
			return fail(err)
		}
		defer r.lockShared()
	}
	live, err := r.liveObjects(imageObjects)
	if err != nil {
		return fail(err)
	}
	var res GCResult
	removed := map[string]bool{}
	if err := r.sweepObjects(live, dryRun, removed, &res); err != nil {
		return fail(err)
	}
	if res.ImagesPruned, err = r.pruneCategory("images", dryRun, removed); err != nil {
		return fail(err)
	}
	if res.StreamsPruned, err = r.pruneCategory("streams", dryRun, removed); err != nil {
		return fail(err)
	}
	if res.TempsRemoved, err = r.sweepTemps(dryRun); err != nil {
		return fail(err)
	}
	return res, nil
}

// staleTemp is how long a temporary file goes untouched before gc takes
// it for a dead writer's.
const staleTemp = time.Hour

// tempDirs are where writers keep files until they are whole: objects/
// (".tmp-*", storeObject's) and the downloads of pulls in progress
// (tmp/oci-blobs, cfsctl's).
var tempDirs = []struct{ dir, prefix string }{{"objects", ".tmp-"}, {"tmp/oci-blobs", ""}}

// sweepTemps removes the temporary files of writers that died. Under
// gc's exclusive lock no writer of ours or composefs-rs's runs (each holds
// the shared lock while it writes); a writer that holds no lock (a flat
// store's Add into objects/, a file system without flock) may, so only
// files untouched for staleTemp go. A dry run counts them.
func (r *Repository) sweepTemps(dryRun bool) (int64, error) {
	var n int64
	for _, t := range tempDirs {
		d, err := r.openDirs(t.dir, false)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return n, err
		}
		ents, err := d.ReadDir(-1)
		if err != nil {
			d.Close()
			return n, err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || !strings.HasPrefix(e.Name(), t.prefix) {
				continue
			}
			if fi, err := e.Info(); err != nil || time.Since(fi.ModTime()) < staleTemp {
				continue
			}
			n++
			if !dryRun {
				if err := unix.Unlinkat(int(d.Fd()), e.Name(), 0); err != nil && err != unix.ENOENT {
					d.Close()
					return n, fmt.Errorf("%s/%s: %w", t.dir, e.Name(), err)
				}
			}
		}
		d.Close()
	}
	return n, nil
}

// categoryLinks reads the first-level links of images/ or streams/: each
// name and the payload of the object it links to. Anything else there but
// refs/ and temporary names is an error, as in composefs-rs.
func (r *Repository) categoryLinks(category string) (map[string]string, error) {
	links := map[string]string{}
	d, err := r.openDirs(category, false)
	if errors.Is(err, fs.ErrNotExist) {
		return links, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		name := e.Name()
		if name == "refs" || strings.HasPrefix(name, ".tmp-") {
			continue
		}
		if e.Type() != fs.ModeSymlink {
			return nil, fmt.Errorf("%s/%s: not a symlink", category, name)
		}
		target, err := readlinkat(int(d.Fd()), name)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", category, name, err)
		}
		id, err := r.streamTarget(target)
		if err != nil {
			return nil, fmt.Errorf("%s/%s: %w", category, name, err)
		}
		links[name] = PayloadForDigest(id)
	}
	return links, nil
}

// refNames lists the first-level names the symlinks under
// <category>/refs/ name (the last component of each target), each with
// whether the link leads anywhere: a link to a first-level name that is
// missing is broken, one that leads elsewhere is not what gc can judge.
func (r *Repository) refNames(category string) (map[string]string, error) {
	d, err := r.openDirs(category+"/refs", false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names := map[string]string{} // ref path -> first-level name
	err = walkLinks(d, category+"/refs", 0, true, func(dir *os.File, name, rel string) error {
		target, err := readlinkat(int(dir.Fd()), name)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		names[rel] = target[strings.LastIndexByte(target, '/')+1:]
		return nil
	})
	return names, err
}

// checkRootRef makes sure that a ref naming no first-level entry is
// broken (pruned later), not a link to something gc does not know, whose
// objects it would remove.
func (r *Repository) checkRootRef(rel string) error {
	var st unix.Stat_t
	switch err := unix.Fstatat(int(r.dir.Fd()), rel, &st, 0); err {
	case unix.ENOENT:
		return nil
	case nil:
		return fmt.Errorf("%s: leads to something that is not a link of %s", rel, rel[:strings.IndexByte(rel, '/')])
	default:
		return fmt.Errorf("%s: %w", rel, err)
	}
}

// walkLinks calls fn for each symlink below d (rel names d in messages
// and, joined with "/", each link), descending into directories up to
// maxRefDepth: the one walk of refs/ trees, gc's and fsck's and the
// listings'. Another file type is an error when strict (gc must know
// every root), else passed over.
func walkLinks(d *os.File, rel string, depth int, strict bool, fn func(dir *os.File, name, rel string) error) error {
	if depth > maxRefDepth {
		return fmt.Errorf("%s: nested more than %d deep", rel, maxRefDepth)
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range ents {
		erel := rel + "/" + e.Name()
		switch {
		case e.Type() == fs.ModeSymlink:
			if err := fn(d, e.Name(), erel); err != nil {
				return err
			}
		case e.IsDir():
			fd, err := openBeneath(int(d.Fd()), e.Name(), unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
			if err != nil {
				return fmt.Errorf("%s: %w", erel, err)
			}
			sub := os.NewFile(uintptr(fd), filepath.Join(d.Name(), e.Name()))
			err = walkLinks(sub, erel, depth+1, strict, fn)
			sub.Close()
			if err != nil {
				return err
			}
		case strict:
			return fmt.Errorf("%s: neither a symlink nor a directory", erel)
		}
	}
	return nil
}

// liveObjects is the set of payloads the refs reach.
func (r *Repository) liveObjects(imageObjects ImageObjectsFunc) (map[string]bool, error) {
	live := map[string]bool{}
	images, err := r.categoryLinks("images")
	if err != nil {
		return nil, err
	}
	roots, err := r.refNames("images")
	if err != nil {
		return nil, err
	}
	for rel, name := range roots {
		payload, ok := images[name]
		if !ok {
			if err := r.checkRootRef(rel); err != nil {
				return nil, err
			}
			continue // a broken ref: pruned below
		}
		live[payload] = true
		f, err := r.Open(payload)
		if errors.Is(err, fs.ErrNotExist) {
			// Nothing of it to keep; fsck reports it.
			slog.Warn("gc: a named image's object is missing", "image", "images/"+name)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("images/%s: %w", name, err)
		}
		list, err := imageObjects(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("images/%s: listing its objects: %w", name, err)
		}
		for _, p := range list {
			live[strings.TrimPrefix(p, "/")] = true
		}
	}

	streams, err := r.categoryLinks("streams")
	if err != nil {
		return nil, err
	}
	byPayload := make(map[string]string, len(streams))
	for name, p := range streams {
		byPayload[p] = name
	}
	roots, err = r.refNames("streams")
	if err != nil {
		return nil, err
	}
	walked := map[string]bool{}
	for rel, name := range roots {
		if _, ok := streams[name]; !ok {
			if err := r.checkRootRef(rel); err != nil {
				return nil, err
			}
			continue
		}
		if err := r.walkStream(name, streams, byPayload, walked, live); err != nil {
			return nil, err
		}
	}
	return live, nil
}

// walkStream marks the stream name, its objects and the streams its
// named references name (found by object in byPayload) as live.
func (r *Repository) walkStream(name string, streams, byPayload map[string]string, walked, live map[string]bool) error {
	if walked[name] {
		return nil
	}
	walked[name] = true
	payload := streams[name]
	live[payload] = true
	s, err := r.readSplitstream(payload)
	if errors.Is(err, fs.ErrNotExist) {
		slog.Warn("gc: a named stream's object is missing", "stream", "streams/"+name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("streams/%s: %w", name, err)
	}
	for _, id := range s.ObjectRefs {
		live[PayloadForDigest(id)] = true
	}
	for _, id := range s.StreamRefs {
		live[PayloadForDigest(id)] = true
	}
	for _, id := range s.NamedRefs {
		p := PayloadForDigest(id)
		live[p] = true
		if next, ok := byPayload[p]; ok {
			if err := r.walkStream(next, streams, byPayload, walked, live); err != nil {
				return err
			}
		}
	}
	return nil
}

// maxStreamFile bounds the size of a splitstream read whole.
const maxStreamFile = 1 << 30

// readSplitstream opens the split stream stored as payload and reads its
// header and reference sections, checked: what gc and fsck need of it.
func (r *Repository) readSplitstream(payload string) (*splitstream.Reader, error) {
	f, err := r.Open(payload)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > maxStreamFile {
		return nil, fmt.Errorf("%w: larger than %d bytes", splitstream.ErrFormat, maxStreamFile)
	}
	s, err := splitstream.Open(f, st.Size(), r.alg)
	if err != nil {
		return nil, err
	}
	// The references are read; the chunks are not needed.
	s.Close()
	return s, nil
}

// objectDirs calls fn with each objects/XX/ directory and its name.
func (r *Repository) objectDirs(fn func(d *os.File, sub string) error) error {
	objects, err := r.openDirs("objects", false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer objects.Close()
	subs, err := objects.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("objects: %w", err)
	}
	for _, sub := range subs {
		if len(sub) != 2 || !isHex(sub) {
			continue // temporary files and the like
		}
		fd, err := openBeneath(int(objects.Fd()), sub, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
		if err != nil {
			return fmt.Errorf("objects/%s: %w", sub, err)
		}
		d := os.NewFile(uintptr(fd), filepath.Join(objects.Name(), sub))
		err = fn(d, sub)
		d.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// isObjectName tells whether rest, in objects/XX/, is the rest of an
// object name of the repository's algorithm.
func (r *Repository) isObjectName(rest string) bool {
	return len(rest) == 2*r.alg.Size()-2 && isHex(rest)
}

// sweepObjects removes (or, in a dry run, counts) the regular files in
// objects/XX/ whose names are object names not in live; removed gets
// their payloads. Anything else there is left alone.
func (r *Repository) sweepObjects(live map[string]bool, dryRun bool, removed map[string]bool, res *GCResult) error {
	return r.objectDirs(func(d *os.File, sub string) error {
		names, err := d.Readdirnames(-1)
		if err != nil {
			return fmt.Errorf("objects/%s: %w", sub, err)
		}
		for _, name := range names {
			payload := sub + "/" + name
			if !r.isObjectName(name) || live[payload] {
				continue
			}
			var st unix.Stat_t
			if err := unix.Fstatat(int(d.Fd()), name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("objects/%s: %w", payload, err)
			}
			if st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			if !dryRun {
				if err := unix.Unlinkat(int(d.Fd()), name, 0); err != nil {
					return fmt.Errorf("remove objects/%s: %w", payload, err)
				}
			}
			slog.Debug("gc: unreachable object", "object", "objects/"+payload, "removed", !dryRun)
			removed[payload] = true
			res.ObjectsRemoved++
			res.ObjectsBytes += st.Size
		}
		if !dryRun {
			return unix.Fsync(int(d.Fd()))
		}
		return nil
	})
}

// pruneCategory removes the broken links of images/ or streams/, then
// those of its refs/, and counts them. A link is broken when its target
// does not exist, or in a dry run when it is an object being removed or a
// first-level link being pruned.
func (r *Repository) pruneCategory(category string, dryRun bool, removed map[string]bool) (int64, error) {
	d, err := r.openDirs(category, false)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer d.Close()
	var n int64
	pruned := map[string]bool{}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", category, err)
	}
	for _, e := range ents {
		if e.Type() != fs.ModeSymlink {
			continue
		}
		broken, err := r.brokenLink(d, e.Name(), func(target string) bool {
			id, err := r.streamTarget(target)
			return err == nil && removed[PayloadForDigest(id)]
		})
		if err != nil {
			return n, fmt.Errorf("%s/%s: %w", category, e.Name(), err)
		}
		if !broken {
			continue
		}
		if !dryRun {
			if err := unix.Unlinkat(int(d.Fd()), e.Name(), 0); err != nil {
				return n, fmt.Errorf("remove %s/%s: %w", category, e.Name(), err)
			}
		}
		pruned[e.Name()] = true
		n++
	}
	if !dryRun && n > 0 {
		if err := unix.Fsync(int(d.Fd())); err != nil {
			return n, err
		}
	}
	refs, err := r.openDirs(category+"/refs", false)
	if errors.Is(err, fs.ErrNotExist) {
		return n, nil
	}
	if err != nil {
		return n, err
	}
	defer refs.Close()
	err = walkLinks(refs, category+"/refs", 0, true, func(dir *os.File, name, rel string) error {
		broken, err := r.brokenLink(dir, name, func(target string) bool {
			return pruned[target[strings.LastIndexByte(target, '/')+1:]]
		})
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		if !broken {
			return nil
		}
		if !dryRun {
			if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil {
				return fmt.Errorf("remove %s: %w", rel, err)
			}
		}
		n++
		return nil
	})
	return n, err
}

// brokenLink tells whether the symlink name in d leads nowhere, or (in a
// dry run's terms) to something gone per gone(target).
func (r *Repository) brokenLink(d *os.File, name string, gone func(target string) bool) (bool, error) {
	target, err := readlinkat(int(d.Fd()), name)
	if err != nil {
		return false, err
	}
	if gone(target) {
		return true, nil
	}
	var st unix.Stat_t
	switch err := unix.Fstatat(int(d.Fd()), name, &st, 0); err {
	case nil:
		return false, nil
	case unix.ENOENT:
		return true, nil
	default:
		return false, err
	}
}
