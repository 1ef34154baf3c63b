package tests

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/verity"
)

// writeImage writes the image of a dumpfile text with the project's writer
// and returns its path.
func writeImage(t testing.TB, dump string, version int) string {
	t.Helper()
	entries, err := dumpfile.ParseAll(strings.NewReader(dump), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatalf("dumpfile: %v", err)
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, entries, erofs.WriteOptions{MinVersion: version, MaxVersion: version}); err != nil {
		t.Fatalf("erofs.Write: %v", err)
	}
	p := filepath.Join(tempDir(t, "image"), "image.cfs")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// object is the content of an external file and where a flat store keeps
// it.
type object struct {
	content []byte
	digest  string
	payload string
}

func newObject(content []byte) object {
	d := hex.EncodeToString(verity.DigestBytes(verity.SHA256, content))
	return object{content: content, digest: d, payload: d[:2] + "/" + d[2:]}
}

// put stores content (o's own or other bytes) under o's name in dir.
func (o object) put(t testing.TB, dir string, content []byte) {
	t.Helper()
	p := filepath.Join(dir, o.payload)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
}
