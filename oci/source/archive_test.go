package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/internal/ocitest"
)

// tarDir returns a tar of the files in dir, with a symbolic link
// "link.json" to index.json for good measure.
func tarDir(t testing.TB, dir string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: "./" + rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Name: "link.json", Linkname: "index.json", Typeflag: tar.TypeSymlink})
	}
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// dockerArchive returns a docker save archive of one image, its layers
// stored as they are given (each named by its index; the second a
// symbolic link to the first when both are the same).
func dockerArchive(t testing.TB, tag string, layers [][]byte, diffIDs []string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	file := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	config, _ := json.Marshal(map[string]any{"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	var paths []string
	for i, l := range layers {
		p := "l" + string(rune('0'+i)) + "/layer.tar"
		paths = append(paths, p)
		if i > 0 && bytes.Equal(l, layers[0]) {
			if err := tw.WriteHeader(&tar.Header{Name: p, Linkname: "../l0/layer.tar", Typeflag: tar.TypeSymlink}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		file(p, l)
	}
	file("config.json", config)
	manifest, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{tag}, "Layers": paths}})
	file("manifest.json", manifest)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestArchives: an oci-archive written in Go ("./" names, a symlink) and a
// docker archive whose second layer is a symbolic link to the first give
// their layers back.
func TestArchives(t *testing.T) {
	layers := testLayers(t)
	dir := t.TempDir()
	lay := ocitest.BuildLayout(t, filepath.Join(dir, "layout"), layers, ocitest.WithRef("r"))
	ociArchive := filepath.Join(dir, "oci.tar")
	if err := os.WriteFile(ociArchive, tarDir(t, filepath.Join(dir, "layout")), 0o644); err != nil {
		t.Fatal(err)
	}
	same := [][]byte{layers[0], layers[0]}
	diffIDs := []string{lay.Images[0].DiffIDs[0], lay.Images[0].DiffIDs[0]}
	dockerFile := filepath.Join(dir, "docker.tar")
	if err := os.WriteFile(dockerFile, dockerArchive(t, "x/y:z", same, diffIDs), 0o644); err != nil {
		t.Fatal(err)
	}
	for source, want := range map[string][][]byte{
		"oci-archive:" + ociArchive + ":r":                  layers,
		"docker-archive:" + dockerFile:                      same,
		"docker-archive:" + dockerFile + ":docker.io/x/y:z": same,
	} {
		im := mustOpen(t, source, Options{})
		got := readLayers(t, im, t.TempDir())
		for i := range want {
			if i >= len(got) || !bytes.Equal(got[i], want[i]) {
				t.Errorf("%s: layer %d differs", source, i)
			}
		}
	}
	ref, _ := Parse("docker-archive:" + dockerFile + ":x/y:other")
	if _, err := Open(context.Background(), ref, Options{}); err == nil || !strings.Contains(err.Error(), "no image tagged x/y:other in manifest.json; it has x/y:z") {
		t.Errorf("a missing tag: %v", err)
	}
}

// FuzzOpenArchive: whatever a file holds, opening it as either kind of
// archive, fetching and reading its layers is an error or a success,
// never a panic, and a layer read to its end checked out. Each input
// writes and syncs files, so minimizing a new input takes long: fuzz with
// -fuzzminimizetime 3s.
func FuzzOpenArchive(f *testing.F) {
	layers := [][]byte{ocitest.NewTar(f).File("a", "b").Bytes()}
	dir := f.TempDir()
	lay := ocitest.BuildLayout(f, dir, layers, ocitest.WithCompression(ocitest.Uncompressed))
	f.Add(tarDir(f, dir))
	f.Add(dockerArchive(f, "a:b", layers, lay.Images[0].DiffIDs))
	f.Fuzz(func(t *testing.T, b []byte) {
		file := filepath.Join(t.TempDir(), "archive.tar")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tr := range []Transport{OCIArchive, DockerArchive} {
			im, err := Open(context.Background(), Reference{Transport: tr, Path: file}, Options{})
			if err != nil {
				continue
			}
			if err := im.Fetch(context.Background(), t.TempDir(), nil); err == nil {
				for i := range im.Layers() {
					r, err := im.OpenLayer(context.Background(), i)
					if err != nil {
						continue
					}
					_, rerr := io.Copy(io.Discard, r)
					if cerr := r.Close(); rerr == nil && cerr != nil {
						t.Fatalf("layer %d read cleanly but closed with %v", i, cerr)
					}
				}
			}
			im.Close()
		}
	})
}
