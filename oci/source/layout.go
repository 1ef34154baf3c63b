package source

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// refNameAnnotation names an image in an OCI layout's index.json.
const refNameAnnotation = "org.opencontainers.image.ref.name"

// fileTree is where a layout's or an archive's files are read from: a
// directory, or the regular files of a tar.
type fileTree interface {
	// open opens the file at the slash-separated path name, relative to
	// the tree's root, and returns its size.
	open(name string) (io.ReadCloser, int64, error)
	close() error
}

// layoutStore gives the blobs of an OCI image layout.
type layoutStore struct{ tree fileTree }

func (s layoutStore) blob(ctx context.Context, d v1.Hash) (io.ReadCloser, error) {
	rc, _, err := s.tree.open("blobs/" + d.Algorithm + "/" + d.Hex)
	if err != nil {
		return nil, err
	}
	return readCloser{ctxReader{ctx, rc}, rc}, nil
}

func (s layoutStore) manifest(ctx context.Context, d v1.Hash) ([]byte, error) {
	rc, err := s.blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return readAllLimited(rc, maxManifestSize)
}

func (s layoutStore) close() error { return s.tree.close() }

// openLayout opens the image of an OCI image layout that ref names by its
// org.opencontainers.image.ref.name (or the only one, when ref is empty),
// and in an index the one for want.
func openLayout(ctx context.Context, tree fileTree, ref string, want v1.Platform) (im *Image, err error) {
	defer func() {
		if err != nil {
			tree.close()
		}
	}()
	if err := checkLayoutVersion(tree); err != nil {
		return nil, err
	}
	rc, _, err := tree.open("index.json")
	if err != nil {
		return nil, err
	}
	b, err := readAllLimited(rc, maxManifestSize)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	desc, err := chooseRef(idx.Manifests, ref)
	if err != nil {
		return nil, err
	}
	st := layoutStore{tree}
	mb, err := readManifest(ctx, st, desc)
	if err != nil {
		return nil, err
	}
	return resolve(ctx, st, mb, desc.Digest, want)
}

// checkLayoutVersion checks the oci-layout file that marks a layout.
func checkLayoutVersion(tree fileTree) error {
	rc, _, err := tree.open("oci-layout")
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("not an OCI image layout: no oci-layout file")
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := readAllLimited(rc, 4096)
	if err != nil {
		return fmt.Errorf("oci-layout: %w", err)
	}
	var l struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("oci-layout: %w", err)
	}
	if l.Version != "1.0.0" {
		return fmt.Errorf("oci-layout: imageLayoutVersion %q, want 1.0.0", l.Version)
	}
	return nil
}

// chooseRef picks the index entry named ref, or the only entry when ref
// is empty; its errors say which names there are.
func chooseRef(descs []v1.Descriptor, ref string) (v1.Descriptor, error) {
	var names []string
	var found []v1.Descriptor
	for _, d := range descs {
		n := d.Annotations[refNameAnnotation]
		if n != "" {
			names = append(names, n)
		}
		if ref != "" && n == ref {
			found = append(found, d)
		}
	}
	have := "it names none"
	if len(names) > 0 {
		have = "it has " + strings.Join(names, ", ")
	}
	switch {
	case ref == "" && len(descs) == 1:
		return descs[0], nil
	case ref == "" && len(descs) == 0:
		return v1.Descriptor{}, fmt.Errorf("index.json lists no images")
	case ref == "":
		return v1.Descriptor{}, fmt.Errorf("index.json lists %d images; name one after a colon (%s)", len(descs), have)
	case len(found) == 0:
		return v1.Descriptor{}, fmt.Errorf("no image named %q in index.json; %s", ref, have)
	case len(found) > 1:
		return v1.Descriptor{}, fmt.Errorf("%d images named %q in index.json", len(found), ref)
	}
	return found[0], nil
}

// dirTree is a directory's files, opened beneath it.
type dirTree struct{ root *os.Root }

func openDirTree(dir string) (fileTree, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return dirTree{root}, nil
}

func (t dirTree) open(name string) (io.ReadCloser, int64, error) {
	f, err := t.root.Open(name)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file", name)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func (t dirTree) close() error { return t.root.Close() }

// tarTree is the regular files of a tar file, read in place.
type tarTree struct {
	f     *os.File
	path  string
	files map[string]section
	links map[string]string // symlink → target, as in the tar
}

type section struct{ off, size int64 }

// maxTarEntries bounds the entries of an archive's index.
const maxTarEntries = 1 << 20

// openTarTree reads the headers of the tar at path, noting where each
// regular file's bytes are.
func openTarTree(path string) (fileTree, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	t := &tarTree{f: f, path: path, files: map[string]section{}, links: map[string]string{}}
	// tar.Reader reads the headers and nothing more from an io.Seeker
	// (it seeks past the contents), so the file's offset after Next is
	// where the entry's bytes start.
	tr := tar.NewReader(f)
	for n := 0; ; n++ {
		if n == maxTarEntries {
			f.Close()
			return nil, fmt.Errorf("tar: more than %d entries", maxTarEntries)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("tar: %w", err)
		}
		name := cleanTarName(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg:
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				f.Close()
				return nil, err
			}
			t.files[name] = section{off, hdr.Size}
			delete(t.links, name)
		case tar.TypeSymlink:
			t.links[name] = hdr.Linkname
			delete(t.files, name)
		case tar.TypeLink:
			if s, ok := t.files[cleanTarName(hdr.Linkname)]; ok {
				t.files[name] = s
			}
		}
	}
	return t, nil
}

func cleanTarName(name string) string {
	return strings.TrimPrefix(path.Clean("/"+name), "/")
}

// maxLinks bounds the symbolic links followed to open one file.
const maxLinks = 8

func (t *tarTree) open(name string) (io.ReadCloser, int64, error) {
	name = cleanTarName(name)
	for range maxLinks {
		if s, ok := t.files[name]; ok {
			return io.NopCloser(io.NewSectionReader(t.f, s.off, s.size)), s.size, nil
		}
		target, ok := t.links[name]
		if !ok {
			return nil, 0, &fs.PathError{Op: "open", Path: name + " in " + t.path, Err: fs.ErrNotExist}
		}
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(name), target)
		}
		name = cleanTarName(target)
	}
	return nil, 0, fmt.Errorf("%s in %s: more than %d symbolic links", name, t.path, maxLinks)
}

func (t *tarTree) close() error { return t.f.Close() }
