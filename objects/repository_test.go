package objects

import (
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// makeRepo lays out a composefs-rs repository by hand, as cfsctl does:
// objects by digest, images/<id> and images/refs/... as relative symlinks.
func makeRepo(t *testing.T, alg verity.Algorithm, meta string) (dir string, imageID string, object []byte) {
	dir = t.TempDir()
	if meta != "" {
		mustWrite(t, filepath.Join(dir, "meta.json"), meta)
	}
	store := func(content string) string {
		d := verity.DigestBytes(alg, []byte(content))
		mustWrite(t, filepath.Join(dir, "objects", PayloadForDigest(d)), content)
		return hex.EncodeToString(d)
	}
	object = verity.DigestBytes(alg, []byte("file content"))
	store("file content")
	imageID = store("pretend this is an EROFS image")
	mustSymlink(t, "../objects/"+imageID[:2]+"/"+imageID[2:], filepath.Join(dir, "images", imageID))
	mustSymlink(t, "../../images/"+imageID, filepath.Join(dir, "images", "refs", "rootfs"))
	mustSymlink(t, "../../../../images/"+imageID, filepath.Join(dir, "images", "refs", "system", "app", "v1"))
	return dir, imageID, object
}

const sha512Meta = `{
  "version": 1,
  "algorithm": "fsverity-sha512-12",
  "features": {
    "compatible": [],
    "read-only-compatible": [
      "v1_erofs"
    ],
    "incompatible": []
  },
  "erofs_formats": {
    "default": 1
  }
}
`

func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRepositorySHA512(t *testing.T) {
	withResolvers(t, func(t *testing.T) {
		dir, id, obj := makeRepo(t, verity.SHA512, sha512Meta)
		r, err := OpenRepository(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Algorithm() != verity.SHA512 {
			t.Fatalf("algorithm %s", r.Algorithm())
		}
		if m := r.Meta(); m == nil || m.Version != 1 || m.ErofsVersion != 1 {
			t.Fatalf("meta %+v", m)
		}
		payload := PayloadForDigest(obj)
		if len(payload) != 129 {
			t.Fatalf("sha512 payload %q", payload)
		}
		for _, p := range []string{payload, "/" + payload} {
			f, err := r.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, f); got != "file content" {
				t.Fatalf("object %q", got)
			}
		}
		if ok, err := r.Has(payload); !ok || err != nil {
			t.Fatalf("Has: %v %v", ok, err)
		}
		f, err := r.OpenDigest(obj)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, f)
		if _, err := r.OpenDigest(obj[:32]); err == nil {
			t.Fatal("a sha256-sized digest accepted in a sha512 repository")
		}
		for _, name := range []string{id, "rootfs", "refs/rootfs", "system/app/v1", "refs/system/app/v1"} {
			f, err := r.OpenImage(name)
			if err != nil {
				t.Fatalf("OpenImage(%q): %v", name, err)
			}
			if got := readAll(t, f); got != "pretend this is an EROFS image" {
				t.Fatalf("OpenImage(%q) read %q", name, got)
			}
		}
		if _, err := r.OpenImage("no-such-ref"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("missing ref: %v", err)
		}
	})
}

func TestRepositoryImageSafety(t *testing.T) {
	withResolvers(t, func(t *testing.T) {
		dir, id, _ := makeRepo(t, verity.SHA256, `{"version":1,"algorithm":"fsverity-sha256-12","features":{}}`)
		outside := filepath.Join(filepath.Dir(dir), "outside-"+filepath.Base(dir))
		mustWrite(t, outside, "secret")
		t.Cleanup(func() { os.Remove(outside) })
		mustSymlink(t, outside, filepath.Join(dir, "images", "refs", "absolute"))
		mustSymlink(t, "../../../"+filepath.Base(outside), filepath.Join(dir, "images", "refs", "climbing"))
		mustSymlink(t, "/etc/passwd", filepath.Join(dir, "images", "refs", "passwd"))
		mustSymlink(t, "loop", filepath.Join(dir, "images", "refs", "loop"))
		// An id whose link points at other content must not pass as that id.
		other := strings.Repeat("ab", 32)
		mustSymlink(t, "../objects/"+id[:2]+"/"+id[2:], filepath.Join(dir, "images", other))
		if err := os.MkdirAll(filepath.Join(dir, "images", "refs", "dir"), 0o755); err != nil {
			t.Fatal(err)
		}
		r, err := OpenRepository(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		if r.Meta().ErofsVersion != 2 {
			t.Errorf("no v1_erofs flag, no erofs_formats: version %d, want 2", r.Meta().ErofsVersion)
		}
		cases := map[string]error{
			"absolute":     ErrUnsafePath,
			"climbing":     ErrUnsafePath,
			"passwd":       ErrUnsafePath,
			"loop":         ErrUnsafePath,
			"../meta.json": ErrUnsafePath,
			"/etc/passwd":  ErrUnsafePath,
			"a//b":         ErrUnsafePath,
			other:          verity.ErrMismatch,
			"dir":          ErrNotRegular,
		}
		for name, want := range cases {
			f, err := r.OpenImage(name)
			if err == nil {
				t.Errorf("OpenImage(%q) opened %q", name, readAll(t, f))
				continue
			}
			if !errors.Is(err, want) {
				t.Errorf("OpenImage(%q): %v, want %v", name, err, want)
			}
		}
		// Objects never follow symlinks, not even the images/ ones.
		mustSymlink(t, "../../images/"+id, filepath.Join(dir, "objects", "cd", "link"))
		if _, err := r.Open("cd/link"); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("object symlink: %v", err)
		}
		if _, err := r.Open("../meta.json"); !errors.Is(err, ErrUnsafePath) {
			t.Errorf("object ../meta.json: %v", err)
		}
	})
}

func TestRepositoryWithoutMeta(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		dir, _, obj := makeRepo(t, alg, "")
		r, err := OpenRepository(dir)
		if err != nil {
			t.Fatal(err)
		}
		if r.Algorithm() != alg || r.Meta() != nil {
			t.Errorf("inferred %s, want %s", r.Algorithm(), alg)
		}
		if f, err := r.OpenDigest(obj); err != nil {
			t.Error(err)
		} else {
			readAll(t, f)
		}
		r.Close()
	}
	if _, err := OpenRepository(t.TempDir()); err == nil || !strings.Contains(err.Error(), "meta.json") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestRepositoryBadMeta(t *testing.T) {
	for _, meta := range []string{
		`{"version":2,"algorithm":"fsverity-sha256-12"}`,
		`{"version":1,"algorithm":"fsverity-sha256-16"}`,
		`{"version":1,"algorithm":"sha256"}`,
		`{"version":1,"algorithm":"fsverity-md5-12"}`,
		`{"algorithm":"fsverity-sha256-12"}`,
		`{"version":1}`,
		`{"version":1,"algorithm":"fsverity-sha256-12","features":{"incompatible":["fancy-new-thing"]}}`,
		`{"version":1,"algorithm":"fsverity-sha256-12","erofs_formats":{"default":7}}`,
		`{"version":1,"algorithm":"fsverity-sha256-12","erofs_formats":{}}`,
		`not json`,
	} {
		dir := t.TempDir()
		mustWrite(t, filepath.Join(dir, "meta.json"), meta)
		r, err := OpenRepository(dir)
		if err == nil {
			r.Close()
			t.Errorf("meta.json %s accepted", meta)
			continue
		}
		if !errors.Is(err, ErrRepositoryMeta) {
			t.Errorf("meta.json %s: %v does not wrap ErrRepositoryMeta", meta, err)
		}
	}
	// What composefs-rs accepts: unknown compat and ro-compat flags, unknown
	// fields, the dual-format configuration.
	for meta, ev := range map[string]int{
		`{"version":1,"algorithm":"fsverity-sha256-12","features":{"compatible":["x"],"read-only-compatible":["y"]}}`: 2,
		`{"version":1,"algorithm":"fsverity-sha256-12","features":{},"erofs_version":2}`:                              2,
		`{"version":1,"algorithm":"fsverity-sha256-12","features":{"read-only-compatible":["v1_erofs"]}}`:             1,
		`{"version":1,"algorithm":"fsverity-sha512-12","erofs_formats":{"default":1,"extra":[2]}}`:                    1,
		`{"version":1,"algorithm":"fsverity-sha512-12","erofs_formats":{"default":0}}`:                                0,
	} {
		m, err := ParseMeta([]byte(meta))
		if err != nil {
			t.Errorf("%s: %v", meta, err)
			continue
		}
		if m.ErofsVersion != ev {
			t.Errorf("%s: EROFS version %d, want %d", meta, m.ErofsVersion, ev)
		}
	}
}

func FuzzParseMeta(f *testing.F) {
	f.Add([]byte(sha512Meta))
	f.Add([]byte(`{"version":1,"algorithm":"fsverity-sha256-12","features":{}}`))
	f.Add([]byte(`{"version":1,"algorithm":"fsverity-sha512-12","erofs_formats":{"default":1,"extra":[2]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseMeta(data)
		if err != nil {
			if !errors.Is(err, ErrRepositoryMeta) {
				t.Fatalf("error %v does not wrap ErrRepositoryMeta", err)
			}
			return
		}
		if !m.Algorithm.Valid() || m.Version > repoFormatVersion || m.ErofsVersion < 0 || m.ErofsVersion > 2 {
			t.Fatalf("accepted %+v", m)
		}
	})
}
