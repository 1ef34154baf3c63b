package composefs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// TestReadByKeptSums: through io/fs, a large file is read by the block
// sums an earlier view's cache kept (the next process), so a block
// rewritten since fails the reads that cover it with ErrDigestMismatch,
// and the rest of the file reads; a view whose cache keeps no trees
// refuses the file at Open.
func TestReadByKeptSums(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	obj := fixture.NewObject(content(rng, 700_000))
	dir := t.TempDir()
	obj.Put(t, dir, obj.Content)
	store, err := objects.OpenFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	image := fixture.Image(t, fmt.Sprintf("/ 0 40755 2 0 0 0 1000.0 - - -\n/big %d 100644 1 0 0 0 1000.0 %s - %s\n",
		len(obj.Content), obj.Payload, obj.Digest), 1)
	trees, err := verity.OpenTrees(filepath.Join(t.TempDir(), "trees"))
	if err != nil {
		t.Fatal(err)
	}
	view := func(keep bool) *FS {
		c := verity.NewCache()
		if keep {
			c.KeepTrees(trees)
		}
		f, err := OpenBytes(image, Config{Store: store, Cache: c})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	read := func(f *FS) []byte {
		t.Helper()
		b, err := fs.ReadFile(f, "big")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read(view(true)), obj.Content) || !bytes.Equal(read(view(true)), obj.Content) {
		t.Fatal("wrong content")
	}

	next := view(true)
	file, err := next.Open("big")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	if file.(*regFile).obj.Blocks == nil {
		t.Fatal("the next view checks the object whole, want by the sums kept")
	}
	bad := int64(90*verity.BlockSize + 1)
	w, err := os.OpenFile(filepath.Join(dir, obj.Payload), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte{obj.Content[bad] ^ 2}, bad); err != nil {
		t.Fatal(err)
	}
	w.Close()
	ra := file.(io.ReaderAt)
	if _, err := ra.ReadAt(make([]byte, 100), bad-50); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("read over the rewritten block: %v, want ErrDigestMismatch", err)
	}
	p := make([]byte, 200_000)
	if n, err := ra.ReadAt(p, 400_000); err != nil || !bytes.Equal(p[:n], obj.Content[400_000:400_000+n]) {
		t.Errorf("read away from the rewritten block: %d, %v", n, err)
	}
	if _, err := view(false).Open("big"); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("open by a view keeping no trees: %v, want ErrDigestMismatch", err)
	}
}
