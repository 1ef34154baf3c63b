package verity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestCacheHashesOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obj")
	data := mod251(3 << 20)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	want := DigestBytes(SHA256, data)
	c := NewCache()
	// Checked long after it was written: its digest is known by stat.
	c.now = func() time.Time { return time.Now().Add(2 * settleTime) }
	before := computed.Load()
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			f, err := os.Open(path)
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			errs <- c.Verify(f, SHA256, want)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := computed.Load() - before; n != 1 {
		t.Fatalf("16 concurrent verifications hashed %d times, want 1", n)
	}
	// Another algorithm is another digest.
	f, _ := os.Open(path)
	defer f.Close()
	if err := c.Verify(f, SHA512, DigestBytes(SHA512, data)); err != nil {
		t.Fatal(err)
	}
	if n := computed.Load() - before; n != 2 {
		t.Fatalf("hashed %d times, want 2", n)
	}
	if c.Len() != 2 {
		t.Fatalf("Len %d, want 2", c.Len())
	}
}

func TestCacheMismatchAndChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obj")
	if err := os.WriteFile(path, []byte("hello world"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := DigestBytes(SHA256, []byte("hello world"))
	c := NewCache()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := c.Verify(f, SHA256, good); err != nil {
		t.Fatal(err)
	}
	bad := bytes.Repeat([]byte{1}, 32)
	err = c.Verify(f, SHA256, bad)
	var me *MismatchError
	if !errors.Is(err, ErrMismatch) || !errors.As(err, &me) {
		t.Fatalf("Verify with a wrong digest: %v", err)
	}
	msg := err.Error()
	for _, s := range []string{path, "0101010101", "1e2eaa4202d750a4"} {
		if !strings.Contains(msg, s) {
			t.Errorf("mismatch message %q lacks %q", msg, s)
		}
	}
	if !bytes.Equal(me.Actual, good) || !bytes.Equal(me.Expected, bad) {
		t.Errorf("MismatchError %+v", me)
	}
	// Without a name, for a caller that names the file itself.
	me.Name = ""
	if want := fmt.Sprintf("fs-verity digest mismatch: expected sha256:%x, actual sha256:%x", bad, good); me.Error() != want {
		t.Errorf("nameless mismatch message %q, want %q", me.Error(), want)
	}
	if err := c.Verify(f, SHA256, good[:31]); err == nil || errors.Is(err, ErrMismatch) {
		t.Errorf("a 31-byte expected digest: %v", err)
	}

	// Rewriting the object (new mtime/ctime) must be noticed.
	time.Sleep(10 * time.Millisecond)
	if err := os.WriteFile(path, []byte("hello World"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Verify(f, SHA256, good); !errors.Is(err, ErrMismatch) {
		t.Fatalf("changed object still verified: %v", err)
	}
	if err := c.Verify(f, SHA256, DigestBytes(SHA256, []byte("hello World"))); err != nil {
		t.Fatal(err)
	}
	d, err := c.Digest(f, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	d[0] ^= 0xff // must not damage the cache
	if err := c.Verify(f, SHA256, DigestBytes(SHA256, []byte("hello World"))); err != nil {
		t.Fatal(err)
	}
}

func TestCacheEvicts(t *testing.T) {
	dir := t.TempDir()
	c := NewCache()
	c.max = 8
	c.now = func() time.Time { return time.Now().Add(2 * settleTime) } // all settled
	for i := range 20 {
		p := filepath.Join(dir, string(rune('a'+i)))
		os.WriteFile(p, []byte{byte(i)}, 0o644)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Verify(f, SHA256, DigestBytes(SHA256, []byte{byte(i)})); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if c.Len() > 8 {
		t.Fatalf("cache grew to %d entries, bound 8", c.Len())
	}
}

// failingReaderAt fails at a given offset.
type failingReaderAt struct {
	data []byte
	at   int64
}

var errInjected = errors.New("injected read error")

func (r failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.at {
		return 0, errInjected
	}
	return copy(p, r.data[off:]), nil
}

func TestPipelineErrors(t *testing.T) {
	data := mod251(8 << 20)
	for _, w := range []int{1, 2, 7} {
		_, _, err := digestAt(context.Background(), SHA256, failingReaderAt{data, 5 << 20}, int64(len(data)), w, false)
		if !errors.Is(err, errInjected) {
			t.Errorf("workers %d: error %v", w, err)
		}
		// A source shorter than announced: the file shrank.
		_, _, err = digestAt(context.Background(), SHA256, bytes.NewReader(data[:3<<20]), int64(len(data)), w, false)
		if err == nil || !strings.Contains(err.Error(), "shrank") {
			t.Errorf("workers %d: shrinking source: %v", w, err)
		}
		d, _, err := digestAt(context.Background(), SHA512, bytes.NewReader(data), int64(len(data)), w, false)
		if err != nil || !bytes.Equal(d, DigestBytes(SHA512, data)) {
			t.Errorf("workers %d: %x %v", w, d, err)
		}
	}
	_, err := DigestReader(SHA256, &errAfterReader{data: data, n: 3 << 20})
	if !errors.Is(err, errInjected) {
		t.Errorf("DigestReader: %v", err)
	}
	for _, n := range []int{0, 100, chunkSize, chunkSize + 1, 5*chunkSize - 3} {
		for _, w := range []int{1, 2, 7} {
			got, err := digestStream(SHA256, bytes.NewReader(data[:n]), w)
			if err != nil || !bytes.Equal(got, DigestBytes(SHA256, data[:n])) {
				t.Errorf("digestStream %d bytes, %d workers: %x %v", n, w, got, err)
			}
		}
	}
}

type errAfterReader struct {
	data []byte
	n    int
	off  int
}

func (r *errAfterReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, errInjected
	}
	n := copy(p, r.data[r.off:r.n])
	r.off += n
	return n, nil
}

// TestNoKernelVerityRemembered: once a file system answers that it has no
// fs-verity at all, files there are hashed without asking the kernel again.
func TestNoKernelVerityRemembered(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("remember me"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	_, kerr := MeasureVerity(f, SHA256)
	if !errors.Is(kerr, unix.ENOTTY) && !errors.Is(kerr, unix.EOPNOTSUPP) {
		t.Skipf("the file system of %s has fs-verity (measure: %v): nothing to remember", p, kerr)
	}
	want := DigestBytes(SHA256, []byte("remember me"))
	for range 2 {
		got, err := DigestFile(SHA256, f)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("DigestFile: %x, %v", got, err)
		}
		if _, ok := noKernelVerity.Load(uint64(st.Dev)); !ok {
			t.Fatalf("device %d not remembered after %v", st.Dev, kerr)
		}
	}
}

// TestVerifyContextStops: a verification whose context ends stops hashing
// (a 4 GiB sparse file, far longer to hash than the test waits), leaves
// nothing in the cache, and a caller that was waiting for the same digest
// hashes the file itself rather than failing with the other's error.
func TestVerifyContextStops(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(4 << 30); err != nil {
		t.Fatal(err)
	}
	c := NewCache()
	want := make([]byte, SHA256.Size())

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.VerifyContext(ctx, f, SHA256, want) }()
	time.Sleep(50 * time.Millisecond)
	waiterCtx, waiterCancel := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	go func() { waiter <- c.VerifyContext(waiterCtx, f, SHA256, want) }()
	time.Sleep(20 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled verification: %v, want context.Canceled", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("stopped %v after the cancel", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("verification went on after its context ended")
	}
	// The waiter took over the hash; end it too.
	select {
	case err := <-waiter:
		t.Fatalf("waiter ended with the other's cancellation: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	waiterCancel()
	if err := <-waiter; !errors.Is(err, context.Canceled) {
		t.Errorf("waiter: %v, want context.Canceled", err)
	}
	if n := c.Len(); n != 0 {
		t.Errorf("%d entries cached from cancelled hashes", n)
	}
}

// TestCacheInodeTakenAgain: a file hashed just after it was written and
// deleted (a fetch's copy that lost the race to place it) frees its inode
// number when closed; a file of the same size made at once takes it and,
// on this kernel, its times too. Its check must hash it, not answer the
// deleted file's digest.
func TestCacheInodeTakenAgain(t *testing.T) {
	dir := t.TempDir()
	c := NewCache()
	const size = 9000
	writeOpen := func(name string, data []byte) *os.File {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		os.Remove(path) // freed at its close
		return f
	}
	sameKey := 0
	for try := range 100 {
		old := bytes.Repeat([]byte{byte(try)}, size)
		f := writeOpen(fmt.Sprintf("old%d", try), old)
		if err := c.Verify(f, SHA256, DigestBytes(SHA256, old)); err != nil {
			t.Fatal(err)
		}
		oldKey, err := keyOf(f, SHA256)
		if err != nil {
			t.Fatal(err)
		}
		f.Close()

		next := bytes.Repeat([]byte{byte(try + 1)}, size)
		g := writeOpen(fmt.Sprintf("next%d", try), next)
		if k, err := keyOf(g, SHA256); err == nil && k == oldKey {
			sameKey++
		}
		if err := c.Verify(g, SHA256, DigestBytes(SHA256, next)); err != nil {
			t.Fatalf("try %d: a new file that took a deleted one's inode: %v", try, err)
		}
		g.Close()
	}
	if sameKey == 0 {
		// tmpfs, say, numbers inodes from a counter: nothing shown.
		t.Skip("no new file took a deleted one's inode, size and times on this file system")
	}
	t.Logf("%d of 100 new files had the deleted one's inode, size and times", sameKey)
}

// justWritten writes a file and returns it with its digest and the time
// of its last change, and a cache whose clock reads a moment after that,
// however slow the machine.
func justWritten(t *testing.T) (c *Cache, path string, digest []byte, changed time.Time) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "obj")
	data := mod251(100000)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	changed = time.Unix(st.Ctim.Unix())
	c = NewCache()
	c.now = func() time.Time { return changed.Add(time.Millisecond) }
	return c, path, DigestBytes(SHA256, data), changed
}

// TestCacheRecentWaiter: an open that waited for another's hash of a file
// changed just before it knows the digest through its own file too.
func TestCacheRecentWaiter(t *testing.T) {
	c, path, want, _ := justWritten(t)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	key := mustKey(t, f)
	// Another open's hash of the same state, which this one finds in
	// flight and waits for (ended already: the wait is not what is
	// tested, what it keeps is).
	e := &cacheEntry{done: make(chan struct{}), digest: want}
	close(e.done)
	c.busy[key] = e
	before := computed.Load()
	if err := c.Verify(f, SHA256, want); err != nil {
		t.Fatal(err)
	}
	delete(c.busy, key)
	if err := c.Verify(f, SHA256, want); err != nil {
		t.Fatal(err)
	}
	if n := computed.Load() - before; n != 0 {
		t.Fatalf("hashed %d times, want 0: the waiter's own file was hashed again", n)
	}
}

// TestCacheRecentKnownThroughFile: a file changed just before its hash is
// not hashed again through the same *os.File, but is through another
// open of it until it is settled; then its digest is known by its stat.
func TestCacheRecentKnownThroughFile(t *testing.T) {
	c, path, want, changed := justWritten(t)
	verify := func(f *os.File) int64 {
		t.Helper()
		before := computed.Load()
		if err := c.Verify(f, SHA256, want); err != nil {
			t.Fatal(err)
		}
		return computed.Load() - before
	}
	f, _ := os.Open(path)
	defer f.Close()
	g, _ := os.Open(path)
	defer g.Close()
	if n := verify(f); n != 1 {
		t.Fatalf("first check hashed %d times", n)
	}
	if n := verify(f); n != 0 {
		t.Fatalf("the same file checked again hashed %d times, want 0", n)
	}
	if n := verify(g); n != 1 {
		t.Fatalf("another open of a file changed just before its hash hashed %d times, want 1", n)
	}
	// Later: its last change is older than the hash by more than
	// settleTime, and any open of it is known by stat.
	c.now = func() time.Time { return changed.Add(settleTime + time.Millisecond) }
	h, _ := os.Open(path)
	defer h.Close()
	if n := verify(h); n != 1 {
		t.Fatalf("a settled file's first check hashed %d times, want 1", n)
	}
	i, _ := os.Open(path)
	defer i.Close()
	if n := verify(i); n != 0 {
		t.Fatalf("a settled file opened again hashed %d times, want 0", n)
	}
}

// TestCacheWaiterAfterFailedHash: checks that find a hash of the same
// state in flight, which then fails (the file changed under it, here
// rewritten back to its old content with other times), fail too: they do
// not hash again, one after the other, and none reports the state it
// started from as checked, since the file has left it.
func TestCacheWaiterAfterFailedHash(t *testing.T) {
	data := randomBytes(64<<10, 21)
	f := fileOfBytes(t, data)
	path := f.Name()
	c := NewCache()
	key, start, err := c.keyNow(f, SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, bytes.Repeat([]byte{1}, len(data)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, time.Unix(1_000_000, 0), time.Unix(1_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	// The hash in flight for key, ended in failure. (A hasher takes its
	// entry out before it closes done; left in, it is met for sure.)
	e := &cacheEntry{done: make(chan struct{}), err: errors.New("changed while its digest was computed")}
	close(e.done)
	c.busy[key] = e
	before := computed.Load()
	const waiters = 4
	errs := make(chan error, waiters)
	for range waiters {
		go func() {
			_, _, err := c.digestKeeping(context.Background(), f, key, start, false)
			errs <- err
		}()
	}
	for range waiters {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a check of a state the file has left succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a waiter did not return")
		}
	}
	if n := computed.Load() - before; n != 0 {
		t.Errorf("the waiters hashed %d times, want 0: the failure in flight was theirs", n)
	}
}
