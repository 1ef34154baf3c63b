// Package testobj makes the objects of external files for tests: content,
// its fs-verity digest, and its path in a flat digest store.
package testobj

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/verity"
)

// Object is the content of an external file and where a flat store keeps
// it.
type Object struct {
	Content []byte
	Digest  string // sha256 fs-verity digest, hex
	Payload string // XX/REST
}

// New describes content as an object.
func New(content []byte) Object {
	d := hex.EncodeToString(verity.DigestBytes(verity.SHA256, content))
	return Object{Content: content, Digest: d, Payload: d[:2] + "/" + d[2:]}
}

// Put stores content (o's own or other bytes) under o's name in dir.
func (o Object) Put(t testing.TB, dir string, content []byte) {
	t.Helper()
	p := filepath.Join(dir, o.Payload)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
}
