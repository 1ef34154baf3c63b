package fusefs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/verity"
)

// TestReadCheckedByBlocks: a large object whose block sums an earlier
// server kept is served by a new server (the next mount) block by block as
// it is read: a block rewritten under it fails the READs that cover it,
// with EIO, while the rest of the file is still served; and a server that
// keeps no trees refuses the whole file, which it hashes before serving.
func TestReadCheckedByBlocks(t *testing.T) {
	b := newBigObject(t)
	content, obj, store := b.content, b.obj, b.store
	serve := func(keep bool) *server {
		c := verity.NewCache()
		if keep {
			c.KeepTrees(b.trees)
		}
		return newServer(t, b.img, testConfig{Store: store, Cache: c, NoOpen: true, NoReadAhead: true})
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

// bigObject is an image of one large external file, its object in a
// store, and trees to keep its sums in.
type bigObject struct {
	content []byte
	obj     object
	store   dirStore
	img     *erofs.Image
	trees   *verity.Trees
}

func newBigObject(t *testing.T) *bigObject {
	rng := rand.New(rand.NewPCG(7, 8))
	b := &bigObject{content: make([]byte, 600_000), store: dirStore(t.TempDir())}
	for i := range b.content {
		b.content[i] = byte(rng.Uint32())
	}
	b.obj = newObject(b.content)
	b.obj.Put(t, string(b.store), b.content)
	b.img = imageFromDump(t, fmt.Sprintf("/ 0 40755 2 0 0 0 1000.0 - - -\n/big %d 100644 1 0 0 0 1000.0 %s - %s\n",
		len(b.content), b.obj.Payload, b.obj.Digest), 1)
	var err error
	if b.trees, err = verity.OpenTrees(filepath.Join(t.TempDir(), "trees")); err != nil {
		t.Fatal(err)
	}
	return b
}

// server serves the image with a cache of its own that keeps trees.
func (b *bigObject) server(t *testing.T) *server {
	c := verity.NewCache()
	c.KeepTrees(b.trees)
	return newServer(t, b.img, testConfig{Store: b.store, Cache: c, NoReadAhead: true})
}

// open sends OPEN for the file, as with Config.Passthrough.
func (s *server) open(node uint64) (uint64, fuse.Status) {
	in := fuse.OpenIn{InHeader: header(node, rootCaller), Flags: syscall.O_RDONLY}
	var out fuse.OpenOut
	st := s.fsys.Open(nil, &in, &out)
	return out.Fh, st
}

// An object opened (OPEN, so READs come with its handle) and checked by
// its kept sums is served through them: a rewritten block fails its READ,
// where bytes spliced from the object would go through unchecked.
func TestOpenReadCheckedByBlocks(t *testing.T) {
	b := newBigObject(t)
	first := b.server(t)
	if got, st := first.readFile("big"); !st.Ok() || !bytes.Equal(got, b.content) {
		t.Fatalf("first server: %v", st)
	}
	next := b.server(t)
	node := next.mustLookup("big").NodeId
	fh, st := next.open(node)
	if !st.Ok() {
		t.Fatal(st)
	}
	if next.fsys.heldObject(next.fsys.nidOf(node)).blocks == nil {
		t.Fatal("object checked whole, want by its kept sums")
	}
	bad := 20*verity.BlockSize + 3
	rewriteAt(t, filepath.Join(string(b.store), b.obj.Payload), []byte{b.content[bad] ^ 1}, int64(bad))
	buf := make([]byte, 64<<10)
	rr, st := next.fsys.Read(nil, &fuse.ReadIn{InHeader: header(node, rootCaller), Fh: fh, Offset: 64 << 10, Size: 64 << 10}, buf)
	if st != fuse.EIO {
		data, _ := rr.Bytes(buf)
		t.Errorf("READ over the rewritten block: %v (%d bytes), want EIO", st, len(data))
	}
	rr, st = next.fsys.Read(nil, &fuse.ReadIn{InHeader: header(node, rootCaller), Fh: fh, Offset: 256 << 10, Size: 64 << 10}, buf)
	if data, _ := rr.Bytes(buf); !st.Ok() || !bytes.Equal(data, b.content[256<<10:320<<10]) {
		t.Errorf("READ away from it: %v", st)
	}
}

// An object checked whole and held by two opens, whose metadata changes
// (its ctime moves) while sums for it are kept, is checked whole again and
// goes on serving: sums for it say nothing of the bytes reads splice.
func TestHeldObjectTouchedStaysWhole(t *testing.T) {
	b := newBigObject(t)
	s := b.server(t)
	node := s.mustLookup("big").NodeId
	for range 2 {
		if _, st := s.open(node); !st.Ok() {
			t.Fatal(st)
		}
	}
	o := s.fsys.heldObject(s.fsys.nidOf(node))
	if o.blocks != nil {
		t.Fatal("first open checked the object by sums, want whole")
	}
	path := filepath.Join(string(b.store), b.obj.Payload)
	old := time.Unix(1_000_000, 0)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if _, st := s.open(node); !st.Ok() {
		t.Fatalf("open after the object's times changed: %v, want OK", st)
	}
	if held := s.fsys.heldObject(s.fsys.nidOf(node)); held != o || held.blocks != nil {
		t.Errorf("held object replaced or checked by sums after its times changed")
	}
}

// An object read ahead (a 600 KB file, under the read-ahead's size limit)
// is checked by its kept sums, and is the object its READ takes, sums and
// all.
func TestReadAheadKeepsBlocks(t *testing.T) {
	b := newBigObject(t)
	if got, st := b.server(t).readFile("big"); !st.Ok() || !bytes.Equal(got, b.content) {
		t.Fatalf("first server: %v", st)
	}
	c := verity.NewCache()
	c.KeepTrees(b.trees)
	s := newServer(t, b.img, testConfig{Store: b.store, Cache: c, NoOpen: true})
	node := s.mustLookup("big").NodeId
	nid := s.fsys.nidOf(node)
	s.fsys.prefetchObject(nid)
	ready := s.fsys.ahead.ready[nid].o
	if ready == nil || ready.blocks == nil {
		t.Fatalf("read ahead: %v, want an object checked by its kept sums", ready)
	}
	if got, st := s.readUnopened(node, 128<<10, 128<<10); !st.Ok() || !bytes.Equal(got, b.content[128<<10:256<<10]) {
		t.Fatalf("READ: %v", st)
	}
	if held := s.fsys.heldObject(nid); held != ready || held.blocks == nil {
		t.Errorf("READ took %p (sums %v), want the object read ahead %p", held, held != nil && held.blocks != nil, ready)
	}
}

// TestReadWithinObject: a read of an object checked whole asks for no more
// than the object holds, so that a short file costs one pread, not a
// second one to find its end; an object whose state is unknown is read
// as asked.
func TestReadWithinObject(t *testing.T) {
	var s objectState
	s.Size = 98
	dest := make([]byte, 4096)
	for _, c := range []struct {
		off  uint64
		want int
	}{{0, 98}, {90, 8}, {98, 0}, {1 << 40, 0}} {
		if got := len(s.within(dest, c.off)); got != c.want {
			t.Errorf("size 98, %d bytes at %d: %d, want %d", len(dest), c.off, got, c.want)
		}
	}
	if got := len(s.within(dest[:10], 0)); got != 10 {
		t.Errorf("10 bytes at 0 of 98: %d", got)
	}
	s.statErr = true
	if got := len(s.within(dest, 0)); got != len(dest) {
		t.Errorf("state unknown: %d, want %d", got, len(dest))
	}
}
