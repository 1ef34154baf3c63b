package objects

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// Fsck checks a repository as composefs-rs' fsck does: meta.json, every
// object's fs-verity digest against its name, every link of streams/ and
// images/ (and their refs/) against what it should lead to, every stream
// and image parsed and the objects they name present. It changes nothing.

// FsckProblem is one thing wrong: the path (relative to the repository),
// a kind in composefs-rs' words ("object-digest-mismatch",
// "broken-symlink", ...) and what, in detail.
type FsckProblem struct {
	Path   string `json:"path"`
	Kind   string `json:"kind"`
	Detail string `json:"detail,omitempty"`
}

func (p FsckProblem) String() string {
	if p.Detail == "" {
		return p.Kind + ": " + p.Path
	}
	return p.Kind + ": " + p.Path + ": " + p.Detail
}

// FsckResult counts what Fsck checked and lists what is wrong.
type FsckResult struct {
	HasMetadata      bool          `json:"has_metadata"`
	ObjectsChecked   int64         `json:"objects_checked"`
	ObjectsCorrupted int64         `json:"objects_corrupted"`
	StreamsChecked   int64         `json:"streams_checked"`
	StreamsCorrupted int64         `json:"streams_corrupted"`
	ImagesChecked    int64         `json:"images_checked"`
	ImagesCorrupted  int64         `json:"images_corrupted"`
	BrokenLinks      int64         `json:"broken_links"`
	MissingObjects   int64         `json:"missing_objects"`
	Problems         []FsckProblem `json:"problems"`
}

// OK tells whether nothing was found wrong.
func (res *FsckResult) OK() bool { return len(res.Problems) == 0 }

func (res *FsckResult) add(path, kind, format string, args ...any) {
	res.Problems = append(res.Problems, FsckProblem{Path: path, Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// Fsck checks the repository. checkObjects asks for every object's digest
// to be computed (by fs-verity where the object has it, else by reading
// it, which a repository requiring fs-verity reports instead); without
// it, only the structure is checked. imageObjects lists an image's objects
// (its error is the image's problem); nil skips that check. The error is
// for a repository Fsck could not walk; what it found is in the result.
func (r *Repository) Fsck(checkObjects bool, imageObjects ImageObjectsFunc) (*FsckResult, error) {
	res := &FsckResult{Problems: []FsckProblem{}}
	r.fsckMeta(res)
	if checkObjects {
		if err := r.fsckObjects(res); err != nil {
			return res, fmt.Errorf("fsck of repository %s: %w", r.path, err)
		}
	}
	for _, category := range []string{"streams", "images"} {
		if err := r.fsckCategory(category, imageObjects, res); err != nil {
			return res, fmt.Errorf("fsck of repository %s: %w", r.path, err)
		}
	}
	return res, nil
}

// fsckMeta reads meta.json again and checks it against the open
// repository.
func (r *Repository) fsckMeta(res *FsckResult) {
	mf, err := openRegular(int(r.dir.Fd()), "meta.json", "meta.json", noSymlinks)
	if errors.Is(err, fs.ErrNotExist) && r.meta == nil {
		return // a repository from before meta.json
	}
	if err != nil {
		res.add("meta.json", "metadata-parse-failed", "%v", err)
		return
	}
	defer mf.Close()
	res.HasMetadata = true
	data, err := io.ReadAll(io.LimitReader(mf, maxMetaSize+1))
	if err == nil && len(data) > maxMetaSize {
		err = fmt.Errorf("larger than %d bytes", maxMetaSize)
	}
	var m *Meta
	if err == nil {
		m, err = ParseMeta(data)
	}
	if err != nil {
		res.add("meta.json", "metadata-parse-failed", "%v", err)
		return
	}
	if m.Algorithm != r.alg {
		res.add("meta.json", "metadata-algorithm-mismatch", "it says %s, the repository was opened as %s", m.Algorithm, r.alg)
	}
}

// fsckObjects checks each objects/XX/REST against its name.
func (r *Repository) fsckObjects(res *FsckResult) error {
	return r.objectDirs(func(d *os.File, sub string) error {
		names, err := d.Readdirnames(-1)
		if err != nil {
			return fmt.Errorf("objects/%s: %w", sub, err)
		}
		for _, name := range names {
			path := "objects/" + sub + "/" + name
			res.ObjectsChecked++
			if !r.isObjectName(name) {
				res.ObjectsCorrupted++
				res.add(path, "object-invalid-name", "not a %s object name", r.alg)
				continue
			}
			want, _ := r.parseID(sub + name)
			if kind, detail := r.checkObject(d, name, want); kind != "" {
				res.ObjectsCorrupted++
				res.add(path, kind, "%s", detail)
			}
		}
		return nil
	})
}

// checkObject measures one object and gives the kind of its problem and
// the detail, or "" when its digest is its name.
func (r *Repository) checkObject(d *os.File, name string, want []byte) (kind, detail string) {
	f, err := openRegular(int(d.Fd()), name, name, noSymlinks)
	if err != nil {
		return "object-open-failed", err.Error()
	}
	defer f.Close()
	var got []byte
	if r.secure {
		if got, err = verity.MeasureVerity(f, r.alg); err != nil {
			return "object-verity-missing", "the repository requires fs-verity: " + err.Error()
		}
	} else if got, err = verity.DigestFile(r.alg, f); err != nil {
		// DigestFile takes the kernel's measurement where there is one.
		return "object-verity-failed", err.Error()
	}
	if !bytes.Equal(got, want) {
		return "object-digest-mismatch", fmt.Sprintf("measured %x", got)
	}
	return "", ""
}

// fsckCategory checks the first-level links of streams/ or images/ and
// what they lead to, then the links of its refs/.
func (r *Repository) fsckCategory(category string, imageObjects ImageObjectsFunc, res *FsckResult) error {
	d, err := r.openDirs(category, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer d.Close()
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", category, err)
	}
	streams := category == "streams"
	for _, e := range ents {
		name := e.Name()
		if name == "refs" && e.IsDir() || strings.HasPrefix(name, ".tmp-") {
			continue
		}
		path := category + "/" + name
		corrupt := func() {
			if streams {
				res.StreamsCorrupted++
			} else {
				res.ImagesCorrupted++
			}
		}
		if streams {
			res.StreamsChecked++
		} else {
			res.ImagesChecked++
		}
		if e.Type() != fs.ModeSymlink {
			corrupt()
			res.add(path, "entry-not-symlink", "")
			continue
		}
		target, err := readlinkat(int(d.Fd()), name)
		if err != nil {
			corrupt()
			res.add(path, "stat-failed", "%v", err)
			continue
		}
		id, err := r.streamTarget(target)
		if err != nil {
			corrupt()
			res.add(path, "invalid-link", "%v", err)
			continue
		}
		payload := PayloadForDigest(id)
		ok, err := r.Has(payload)
		if err != nil {
			corrupt()
			res.add(path, "stat-failed", "%v", err)
			continue
		}
		if !ok {
			corrupt()
			res.BrokenLinks++
			res.add(path, "broken-symlink", "no object %s", payload)
			continue
		}
		if streams {
			r.fsckStream(path, payload, res)
		} else if imageObjects != nil {
			r.fsckImage(path, payload, imageObjects, res)
		}
	}
	refs, err := r.openDirs(category+"/refs", false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer refs.Close()
	return r.fsckRefs(refs, category+"/refs", 0, res)
}

// fsckRefs checks that each ref below d resolves, staying beneath the
// repository, to a regular file.
func (r *Repository) fsckRefs(d *os.File, rel string, depth int, res *FsckResult) error {
	if depth > maxRefDepth {
		res.add(rel, "unexpected-file-type", "nested more than %d deep", maxRefDepth)
		return nil
	}
	ents, err := d.ReadDir(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	for _, e := range ents {
		path := rel + "/" + e.Name()
		switch {
		case e.IsDir():
			fd, err := openBeneath(int(d.Fd()), e.Name(), unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
			if err != nil {
				res.add(path, "stat-failed", "%v", err)
				continue
			}
			sub := os.NewFile(uintptr(fd), path)
			err = r.fsckRefs(sub, path, depth+1, res)
			sub.Close()
			if err != nil {
				return err
			}
		case e.Type() == fs.ModeSymlink:
			ok, err := statRegular(int(r.dir.Fd()), path, symlinksBeneath)
			switch {
			case err != nil && !errors.Is(err, fs.ErrNotExist):
				res.add(path, "stat-failed", "%v", err)
			case !ok:
				res.BrokenLinks++
				res.add(path, "broken-symlink", "")
			}
		default:
			res.add(path, "unexpected-file-type", "%v", e.Type())
		}
	}
	return nil
}

// fsckStream parses the stream stored as payload and checks that the
// objects and streams it names exist.
func (r *Repository) fsckStream(path, payload string, res *FsckResult) {
	s, err := r.readSplitstream(payload)
	if err != nil {
		res.StreamsCorrupted++
		res.add(path, "stream-read-failed", "%v", err)
		return
	}
	for _, id := range s.ObjectRefs {
		r.fsckPresent(path, "missing-object-ref", PayloadForDigest(id), "", res)
	}
	for name, id := range s.NamedRefs {
		r.fsckPresent(path, "missing-named-ref", PayloadForDigest(id), "ref "+name+": ", res)
	}
}

// fsckImage lists the image's objects and checks that they exist.
func (r *Repository) fsckImage(path, payload string, imageObjects ImageObjectsFunc, res *FsckResult) {
	f, err := r.Open(payload)
	if err != nil {
		res.ImagesCorrupted++
		res.add(path, "image-open-failed", "%v", err)
		return
	}
	list, err := imageObjects(f)
	f.Close()
	if err != nil {
		res.ImagesCorrupted++
		res.add(path, "image-invalid", "%v", err)
		return
	}
	for _, p := range list {
		r.fsckPresent(path, "image-missing-object", strings.TrimPrefix(p, "/"), "", res)
	}
}

// fsckPresent reports payload, named from path, if it is not an object
// of the repository.
func (r *Repository) fsckPresent(path, kind, payload, prefix string, res *FsckResult) {
	ok, err := r.Has(payload)
	switch {
	case err != nil:
		res.add(path, "object-check-failed", "%s%s: %v", prefix, payload, err)
	case !ok:
		res.MissingObjects++
		res.add(path, kind, "%s%s", prefix, payload)
	}
}
