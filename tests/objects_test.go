package tests

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
)

// fillObjects creates, under dir, an object for every redirect of the image
// (whose objects do not exist anywhere): pseudo-random bytes of the file's
// size, sparse past the first MiB so that 12 GB files cost nothing. It
// returns how many it made.
func fillObjects(t testing.TB, image, dir string) int {
	t.Helper()
	img, err := erofs.Open(image)
	if err != nil {
		t.Fatalf("%s: %v", image, err)
	}
	defer img.Close()
	sizes := map[string]uint64{}
	err = img.Walk(func(e *dumpfile.Entry) error {
		if e.Hardlink == "" && e.IsRegular() && e.Payload != "" {
			sizes[e.Payload] = max(sizes[e.Payload], e.Size)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: walk: %v", image, err)
	}
	made := 0
	for payload, size := range sizes {
		if !safePayload(payload) {
			continue
		}
		writeObject(t, filepath.Join(dir, payload), payload, size)
		made++
	}
	return made
}

// safePayload: a relative path that stays below the store.
func safePayload(p string) bool {
	p = strings.TrimPrefix(p, "/")
	if p == "" || strings.ContainsRune(p, 0) {
		return false
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." {
			return false
		}
	}
	return true
}

func writeObject(t testing.TB, path, seed string, size uint64) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	var s uint64
	for _, c := range seed {
		s = s*31 + uint64(c)
	}
	rng := rand.New(rand.NewPCG(s, size))
	head := make([]byte, min(size, 1<<20))
	for i := range head {
		head[i] = byte(rng.Uint32())
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(head); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
}
