package fusefs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/verity"
)

// TestReadCheckedByBlocks: a large object whose block sums an earlier
// server kept is served by a new server (the next mount) block by block as
// it is read: a block rewritten under it fails the READs that cover it,
// with EIO, while the rest of the file is still served; and a server that
// keeps no trees refuses the whole file, which it hashes before serving.
func TestReadCheckedByBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	content := make([]byte, 900_000)
	for i := range content {
		content[i] = byte(rng.Uint32())
	}
	obj := newObject(content)
	store := dirStore(t.TempDir())
	obj.Put(t, string(store), content)
	var b strings.Builder
	b.WriteString("/ 0 40755 2 0 0 0 1000.0 - - -\n")
	fmt.Fprintf(&b, "/big %d 100644 1 0 0 0 1000.0 %s - %s\n", len(content), obj.Payload, obj.Digest)
	img := imageFromDump(t, b.String(), 1)
	trees, err := verity.OpenTrees(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	serve := func(keep bool) *server {
		c := verity.NewCache()
		if keep {
			c.KeepTrees(trees)
		}
		return newServer(t, img, testConfig{Store: store, Cache: c, NoOpen: true, NoReadAhead: true})
	}
	readAll := func(s *server, node uint64) ([]byte, fuse.Status) {
		var got []byte
		for off := 0; off < len(content); off += 128 << 10 {
			b, st := s.readUnopened(node, uint64(off), 128<<10)
			if !st.Ok() {
				return nil, st
			}
			got = append(got, b...)
		}
		return got, fuse.OK
	}

	// The first mount hashes the object whole, and keeps its sums.
	first := serve(true)
	got, st := readAll(first, first.mustLookup("big").NodeId)
	if !st.Ok() || !bytes.Equal(got, content) {
		t.Fatalf("first server: %v, %d bytes", st, len(got))
	}
	if first.fsys.open[first.fsys.nidOf(first.mustLookup("big").NodeId)].blocks != nil {
		t.Error("first server: object checked by blocks, want whole (no sums kept yet)")
	}

	// The next reads by the sums kept.
	next := serve(true)
	node := next.mustLookup("big").NodeId
	got, st = readAll(next, node)
	if !st.Ok() || !bytes.Equal(got, content) {
		t.Fatalf("next server: %v, %d bytes", st, len(got))
	}
	if next.fsys.open[next.fsys.nidOf(node)].blocks == nil {
		t.Fatal("next server: object checked whole, want by the sums kept")
	}

	// One block rewritten in place, under the held object.
	bad := 50*verity.BlockSize + 10
	rewriteAt(t, filepath.Join(string(store), obj.Payload), []byte{content[bad] ^ 0x80}, int64(bad))
	if _, st := next.readUnopened(node, uint64(bad&^(verity.BlockSize-1)), verity.BlockSize); st != fuse.EIO {
		t.Errorf("READ of the rewritten block: %v, want EIO", st)
	}
	if _, st := next.readUnopened(node, 128<<10, 128<<10); st != fuse.EIO {
		t.Errorf("READ of 128 KiB over the rewritten block: %v, want EIO", st)
	}
	if !strings.Contains(next.log.String(), obj.Payload) || !strings.Contains(next.log.String(), "does not match") {
		t.Errorf("log does not name the object and the mismatch:\n%s", next.log.String())
	}
	off := 300 << 10
	if b, st := next.readUnopened(node, uint64(off), 64<<10); !st.Ok() || !bytes.Equal(b, content[off:off+64<<10]) {
		t.Errorf("READ away from the rewritten block: %v, %d bytes", st, len(b))
	}

	// Without trees, the whole object is hashed first, and refused.
	whole := serve(false)
	wn := whole.mustLookup("big").NodeId
	if _, st := whole.readUnopened(wn, uint64(off), 64<<10); st != fuse.EIO {
		t.Errorf("server without trees, READ away from the rewritten block: %v, want EIO", st)
	}
}
