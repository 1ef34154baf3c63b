package source

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/internal/ocitest"
)

// flipByte inverts the byte at off in file.
func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// freePort returns 127.0.0.1:PORT where nothing listens.
func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// rewriteDiffID gives the only image of the layout in dir a config whose
// diff_id i is diffID.
func rewriteDiffID(t *testing.T, dir string, i int, diffID string) {
	rewriteConfig(t, dir, func(config map[string]any) {
		config["rootfs"].(map[string]any)["diff_ids"].([]any)[i] = diffID
	})
}

// rewriteConfig changes the config of the only image of the layout in dir
// with edit, writing the new config and manifest blobs and index.json.
func rewriteConfig(t *testing.T, dir string, edit func(map[string]any)) {
	t.Helper()
	readJSON := func(path string) (map[string]any, []byte) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var v map[string]any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		return v, b
	}
	writeBlob := func(v any) (string, int) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		d := sha256Digest(b)
		if err := os.WriteFile(ocitest.BlobPath(dir, d), b, 0o644); err != nil {
			t.Fatal(err)
		}
		return d, len(b)
	}
	index, _ := readJSON(filepath.Join(dir, "index.json"))
	top := index["manifests"].([]any)[0].(map[string]any)
	manifest, _ := readJSON(ocitest.BlobPath(dir, top["digest"].(string)))
	cdesc := manifest["config"].(map[string]any)
	config, _ := readJSON(ocitest.BlobPath(dir, cdesc["digest"].(string)))
	edit(config)
	cdesc["digest"], cdesc["size"] = writeBlob(config)
	top["digest"], top["size"] = writeBlob(manifest)
	b, err := json.Marshal(index)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "index.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
