package verity

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// treeSizes are file sizes around the edges of blocks, chunks and the
// tree's levels, from TreeMinSize up.
var treeSizes = []int64{
	TreeMinSize, TreeMinSize + 1, TreeMinSize + BlockSize - 1,
	chunkSize*5 + 7, 128 * BlockSize, 128*BlockSize + 1, 3<<20 + 4095,
}

// sumsOf hashes f whole, keeping its block sums.
func sumsOf(t *testing.T, alg Algorithm, f *os.File, size int64) ([]byte, *BlockSums) {
	t.Helper()
	d, b, err := computeSized(context.Background(), alg, f, size, 3, true)
	if err != nil {
		t.Fatal(err)
	}
	if b == nil {
		t.Fatalf("no block sums kept for %d bytes", size)
	}
	return d, b
}

func TestBlockSumsGiveTheDigest(t *testing.T) {
	for _, alg := range []Algorithm{SHA256, SHA512} {
		for _, size := range treeSizes {
			data := randomBytes(size, uint64(size))
			f := fileOfBytes(t, data)
			d, b := sumsOf(t, alg, f, size)
			if want := DigestBytes(alg, data); !bytes.Equal(d, want) {
				t.Fatalf("%s %d bytes: digest %x, want %x", alg, size, d, want)
			}
			if got := b.Digest(); !bytes.Equal(got, d) {
				t.Errorf("%s %d bytes: sums give %x, the file's digest is %x", alg, size, got, d)
			}
			if int64(len(b.sums)) != sumsLen(alg, size) || b.size != size {
				t.Errorf("%s %d bytes: %d bytes of sums for size %d", alg, size, len(b.sums), b.size)
			}
		}
	}
	if keepsSums(TreeMinSize-1) || !keepsSums(TreeMinSize) || !keepsSums(TreeMaxSize) || keepsSums(TreeMaxSize+1) {
		t.Error("keepsSums does not take exactly TreeMinSize to TreeMaxSize")
	}
	// Below TreeMinSize nothing is kept.
	f := fileOfBytes(t, randomBytes(TreeMinSize-1, 1))
	if _, b, err := computeSized(context.Background(), SHA256, f, TreeMinSize-1, 2, true); err != nil || b != nil {
		t.Errorf("under TreeMinSize: sums %v, err %v; want none", b != nil, err)
	}
}

func TestBlockSumsReadAt(t *testing.T) {
	size := int64(3<<20 + 1234)
	data := randomBytes(size, 7)
	f := fileOfBytes(t, data)
	_, b := sumsOf(t, SHA256, f, size)
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(off int64, n int) {
		t.Helper()
		p := make([]byte, n)
		got, err := b.ReadAt(f, p, off)
		want := max(0, min(int64(n), size-off))
		if int64(got) != want {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v; want %d bytes", n, off, got, err, want)
		}
		if want < int64(n) && err != io.EOF || want == int64(n) && err != nil {
			t.Fatalf("ReadAt(%d bytes at %d): err %v", n, off, err)
		}
		if !bytes.Equal(p[:got], data[off:off+want]) {
			t.Fatalf("ReadAt(%d bytes at %d): wrong bytes", n, off)
		}
	}
	// Aligned and not, within a block, across blocks, to the end and past.
	check(0, BlockSize)
	check(0, 128<<10)
	check(1, 10)
	check(BlockSize-3, 6)
	check(size-5, 100)
	check(size-BlockSize, BlockSize)
	check(size&^(BlockSize-1), 2*BlockSize)
	check(0, int(size)+10)
	for range 200 {
		off := rng.Int64N(size)
		check(off, 1+rng.IntN(300<<10))
	}
	if n, err := b.ReadAt(f, nil, 5); n != 0 || err != nil {
		t.Errorf("ReadAt of nothing = %d, %v; want 0, nil", n, err)
	}
	if n, err := b.ReadAt(f, make([]byte, 10), size); n != 0 || err != io.EOF {
		t.Errorf("ReadAt at the end = %d, %v; want 0, EOF", n, err)
	}
	if _, err := b.ReadAt(f, make([]byte, 10), -1); err == nil {
		t.Error("ReadAt at a negative offset: no error")
	}
}

func TestBlockSumsRefuseChangedBytes(t *testing.T) {
	size := int64(1<<20 + 100)
	data := randomBytes(size, 9)
	f := fileOfBytes(t, data)
	_, b := sumsOf(t, SHA256, f, size)
	// One byte changed in block 100, written under the sums.
	bad := int64(100*BlockSize + 17)
	w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt([]byte{data[bad] ^ 1}, bad); err != nil {
		t.Fatal(err)
	}
	w.Close()
	for _, r := range []struct{ off, n int64 }{
		{bad, 1}, {100 * BlockSize, BlockSize}, {99 * BlockSize, 2 * BlockSize},
		{98 * BlockSize, 4 * BlockSize}, {bad - 5, 10}, {0, size},
	} {
		p := make([]byte, r.n)
		n, err := b.ReadAt(f, p, r.off)
		var me *BlockMismatchError
		if !errors.As(err, &me) || !errors.Is(err, ErrMismatch) || me.Offset != 100*BlockSize || n != 0 {
			t.Errorf("read of %d bytes at %d over the changed block: %d, %v; want a mismatch at %d", r.n, r.off, n, err, 100*BlockSize)
		}
		if bytes.ContainsFunc(p, func(r rune) bool { return r != 0 }) {
			t.Errorf("read of %d bytes at %d: bytes left in the buffer after a mismatch", r.n, r.off)
		}
	}
	// The blocks around it are still served.
	p := make([]byte, 2*BlockSize)
	if n, err := b.ReadAt(f, p, 101*BlockSize); err != nil || n != len(p) || !bytes.Equal(p, data[101*BlockSize:103*BlockSize]) {
		t.Errorf("read after the changed block: %d, %v", n, err)
	}
	// A file cut short under its sums: an error, no bytes.
	if err := os.Truncate(f.Name(), size-BlockSize); err != nil {
		t.Fatal(err)
	}
	if n, err := b.ReadAt(f, make([]byte, 10), size-5); n != 0 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("read past a truncated end: %d, %v; want ErrUnexpectedEOF", n, err)
	}
}

func TestTreesKeepAndCheck(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "trees")
	trees, err := OpenTrees(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("trees directory: %v, %v; want mode 0700", st.Mode(), err)
	}
	size := int64(600 << 10)
	data := randomBytes(size, 3)
	f := fileOfBytes(t, data)
	d, b := sumsOf(t, SHA256, f, size)
	if got, err := trees.Load(SHA256, d, size); got != nil || err != nil {
		t.Fatalf("Load before Save: %v, %v", got != nil, err)
	}
	if err := trees.Save(d, b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(trees.Dir(), name(SHA256, d))
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("tree file: %v, %v; want mode 0600", st, err)
	}
	got, err := trees.Load(SHA256, d, size)
	if err != nil || got == nil || !bytes.Equal(got.sums, b.sums) {
		t.Fatalf("Load after Save: %v, %v", got != nil, err)
	}
	// Asked for another size, another digest or algorithm: not these.
	other := bytes.Clone(d)
	other[0] ^= 1
	for _, tc := range []struct {
		name string
		alg  Algorithm
		d    []byte
		size int64
	}{{"size", SHA256, d, size + 1}, {"digest", SHA256, other, size}, {"algorithm", SHA512, append(bytes.Clone(d), d...), size}} {
		if got, err := trees.Load(tc.alg, tc.d, tc.size); got != nil || err != nil {
			t.Errorf("Load with another %s: %v, %v; want none", tc.name, got != nil, err)
		}
	}
	// Sums that do not give the digest are never kept, nor used.
	if err := trees.Save(other, b); err == nil {
		t.Error("Save under another digest: no error")
	}
	damaged := bytes.Clone(b.sums)
	damaged[40] ^= 1
	if err := os.WriteFile(path, damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := trees.Load(SHA256, d, size); got != nil || err != nil {
		t.Errorf("Load of damaged sums: %v, %v; want none", got != nil, err)
	}
	if err := os.WriteFile(path, b.sums[:len(b.sums)-1], 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := trees.Load(SHA256, d, size); got != nil || err != nil {
		t.Errorf("Load of short sums: %v, %v; want none", got != nil, err)
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".new-*"))
	if len(left) != 0 {
		t.Errorf("files left aside: %v", left)
	}
}

// A cache that keeps trees keeps the sums of the large files VerifyReads
// hashes, and another cache (the next mount) checks the same file by them
// without hashing it; a file whose digest the cache knows is checked
// whole.
func TestCacheKeepsTrees(t *testing.T) {
	trees, err := OpenTrees(filepath.Join(t.TempDir(), "trees"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	size := int64(2<<20 + 5)
	data := randomBytes(size, 11)
	f := fileOfBytes(t, data)
	want := DigestBytes(SHA256, data)
	first := NewCache()
	first.KeepTrees(trees)
	// Each check reports the file's state, which it covers: hashed,
	// known since, or read by kept sums.
	now, err := StateOfFd(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	if st, b, err := first.VerifyReads(ctx, f, SHA256, want); b != nil || err != nil || st != now {
		t.Fatalf("VerifyReads before any hash: %v, %v, state %+v; want checked whole, state %+v", b != nil, err, st, now)
	}
	if st, err := first.VerifyState(ctx, f, SHA256, want); err != nil || st != now {
		t.Fatalf("VerifyState of a file hashed: %v, state %+v; want %+v", err, st, now)
	}
	if b := first.keptSums(f, mustKey(t, f), want); b != nil {
		t.Error("sums of a file whose digest the cache knows: want none (checked whole)")
	}
	next := NewCache()
	next.KeepTrees(trees)
	before := computed.Load()
	st, b, err := next.VerifyReads(ctx, f, SHA256, want)
	if b == nil || err != nil || st != now {
		t.Fatalf("VerifyReads in the next cache: %v, %v, state %+v; want the sums kept, state %+v", b != nil, err, st, now)
	}
	p := make([]byte, 200<<10)
	if n, err := b.ReadAt(f, p, 1<<20); err != nil || !bytes.Equal(p[:n], data[1<<20:1<<20+n]) {
		t.Errorf("read by the kept sums: %d, %v", n, err)
	}
	if computed.Load() != before {
		t.Error("the file was hashed to read it by its kept sums")
	}
	// Another digest wanted: no sums give it.
	other := bytes.Clone(want)
	other[3] ^= 1
	if b := next.keptSums(f, mustKey(t, f), other); b != nil {
		t.Error("sums for another digest")
	}
	// No trees, or a small file: none.
	if _, b, err := NewCache().VerifyReads(ctx, f, SHA256, want); b != nil || err != nil {
		t.Errorf("VerifyReads without trees: %v, %v", b != nil, err)
	}
	small := randomBytes(TreeMinSize-1, 12)
	sf := fileOfBytes(t, small)
	if _, _, err := first.VerifyReads(ctx, sf, SHA256, DigestBytes(SHA256, small)); err != nil {
		t.Fatal(err)
	}
	if b := next.keptSums(sf, mustKey(t, sf), DigestBytes(SHA256, small)); b != nil {
		t.Error("sums of a file under TreeMinSize")
	}
}

// randomBytes is size bytes drawn from seed: no two blocks alike, unlike
// a repeating pattern whose blocks could stand for each other.
func randomBytes(size int64, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, size)
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// FuzzTreesLoad: whatever a tree file holds, Load never fails in a way
// that serves it: it gives sums only when they give the digest asked for,
// and reads by them return only bytes that hash to them.
func FuzzTreesLoad(f *testing.F) {
	good := randomBytes(TreeMinSize+5000, 4)
	d, b, err := computeSized(context.Background(), SHA256, fileOfBytes(f, good), int64(len(good)), 2, true)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b.sums, int64(len(good)), false)
	f.Add(b.sums[:len(b.sums)-1], int64(len(good)), false)
	f.Add([]byte{}, int64(TreeMinSize), true)
	f.Fuzz(func(t *testing.T, sums []byte, size int64, otherDigest bool) {
		size = TreeMinSize + (size%(1<<20)+(1<<20))%(1<<20)
		trees, err := OpenTrees(filepath.Join(t.TempDir(), "trees"))
		if err != nil {
			t.Fatal(err)
		}
		want := d
		if otherDigest {
			want = DigestBytes(SHA256, sums)
		}
		path := filepath.Join(trees.Dir(), name(SHA256, want))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, sums, 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := trees.Load(SHA256, want, size)
		if err != nil || got == nil {
			return
		}
		if !bytes.Equal(got.Digest(), want) {
			t.Fatalf("Load gave sums of digest %x for %x", got.Digest(), want)
		}
		if size == int64(len(good)) && bytes.Equal(want, d) {
			p := make([]byte, 10000)
			if n, err := got.ReadAt(bytes.NewReader(good), p, 1000); err != nil || !bytes.Equal(p[:n], good[1000:1000+n]) {
				t.Fatalf("read by the sums of the file: %d, %v", n, err)
			}
		}
	})
}

// fileOfBytes writes data to a file in a test's directory and opens it.
func fileOfBytes(tb testing.TB, data []byte) *os.File {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "data")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// The last block, short, is checked with its zero padding: a change in
// it fails, and bytes a file gained past the size its sums give are
// never read, checked or not.
func TestBlockSumsLastBlock(t *testing.T) {
	for _, alg := range []Algorithm{SHA256, SHA512} {
		size := int64(TreeMinSize + 1000)
		data := randomBytes(size, 21)
		f := fileOfBytes(t, data)
		_, b := sumsOf(t, alg, f, size)
		w, err := os.OpenFile(f.Name(), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("more bytes past the end")); err != nil {
			t.Fatal(err)
		}
		p := make([]byte, 4000)
		n, err := b.ReadAt(f, p, size-900)
		if n != 900 || err != io.EOF || !bytes.Equal(p[:n], data[size-900:]) {
			t.Errorf("%s: read at the end of a grown file: %d, %v; want the 900 bytes of the sums' size", alg, n, err)
		}
		w.Close()
		if w, err = os.OpenFile(f.Name(), os.O_WRONLY, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := w.WriteAt([]byte{data[size-1] ^ 1}, size-1); err != nil {
			t.Fatal(err)
		}
		w.Close()
		var me *BlockMismatchError
		if _, err := b.ReadAt(f, p, size-10); !errors.As(err, &me) || me.Offset != size&^(BlockSize-1) {
			t.Errorf("%s: read of the changed last block: %v, want a mismatch at %d", alg, err, size&^(BlockSize-1))
		}
	}
}

// Trees refuse what is not theirs: a directory others may read, and at a
// tree's place a link, a fifo (which must not block) or a directory.
func TestTreesRefuseStrangeFiles(t *testing.T) {
	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenTrees(open); err == nil {
		t.Error("OpenTrees of a 0755 directory: no error")
	}
	dir := filepath.Join(t.TempDir(), "trees")
	trees, err := OpenTrees(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer trees.Close()
	size := int64(TreeMinSize + 3*BlockSize)
	data := randomBytes(size, 22)
	d, b := sumsOf(t, SHA256, fileOfBytes(t, data), size)
	at := filepath.Join(dir, name(SHA256, d))
	if err := os.MkdirAll(filepath.Dir(at), 0o700); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(t.TempDir(), "good")
	if err := os.WriteFile(good, b.sums, 0o600); err != nil {
		t.Fatal(err)
	}
	for what, plant := range map[string]func() error{
		"link to good sums": func() error { return os.Symlink(good, at) },
		"link within the directory to good sums": func() error {
			if err := os.WriteFile(at+".copy", b.sums, 0o600); err != nil {
				return err
			}
			return os.Symlink(filepath.Base(at)+".copy", at)
		},
		"fifo":      func() error { return syscall.Mkfifo(at, 0o600) },
		"directory": func() error { return os.Mkdir(at, 0o700) },
	} {
		os.RemoveAll(at)
		if err := plant(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			if got, _ := trees.Load(SHA256, d, size); got != nil {
				t.Errorf("Load through a %s: sums, want none", what)
			}
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Load through a %s: still blocked after 5s", what)
		}
	}
	os.RemoveAll(at)
	if err := trees.Save(d, b); err != nil {
		t.Fatal(err)
	}
	if got, err := trees.Load(SHA256, d, size); got == nil || err != nil {
		t.Errorf("Load after Save over the planted files: %v, %v", got != nil, err)
	}
}

// Only the sums of a file that matched are kept.
func TestCacheKeepsNoTreeOfMismatch(t *testing.T) {
	trees, err := OpenTrees(filepath.Join(t.TempDir(), "trees"))
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(TreeMinSize+10, 23)
	f := fileOfBytes(t, data)
	c := NewCache()
	c.KeepTrees(trees)
	other := bytes.Clone(DigestBytes(SHA256, data))
	other[0] ^= 1
	if _, b, err := c.VerifyReads(context.Background(), f, SHA256, other); b != nil || !errors.Is(err, ErrMismatch) {
		t.Fatalf("VerifyReads with a wrong digest: %v, %v", b != nil, err)
	}
	kept, _ := filepath.Glob(filepath.Join(trees.Dir(), "*", "*", "*"))
	if len(kept) != 0 {
		t.Errorf("sums kept of a file that did not match: %v", kept)
	}
	// Checked by another cache against its digest, it has its sums kept.
	want := DigestBytes(SHA256, data)
	c = NewCache()
	c.KeepTrees(trees)
	if _, b, err := c.VerifyReads(context.Background(), f, SHA256, want); b != nil || err != nil {
		t.Fatalf("VerifyReads with the right digest: %v, %v", b != nil, err)
	}
	next := NewCache()
	next.KeepTrees(trees)
	if _, b, err := next.VerifyReads(context.Background(), f, SHA256, want); b == nil || err != nil {
		t.Errorf("VerifyReads in the next cache: %v, %v; want the sums kept", b != nil, err)
	}
}

// mustKey is f's cache key for SHA256 now.
func mustKey(t *testing.T, f *os.File) cacheKey {
	t.Helper()
	key, err := keyOf(f, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
