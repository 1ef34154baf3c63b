package verity

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"weak"

	"github.com/composefs/composefs-go/internal/errpath"
)

// ErrMismatch is wrapped by every error reporting that a file's fs-verity
// digest is not the expected one.
var ErrMismatch = errors.New("fs-verity digest mismatch")

// MismatchError names the file and both digests; it wraps ErrMismatch.
type MismatchError struct {
	// Name, when not empty, is the file's, and starts the message; a
	// caller that names the file in words of its own leaves it empty.
	Name     string
	Alg      Algorithm
	Expected []byte
	Actual   []byte
}

func (e *MismatchError) Error() string {
	msg := fmt.Sprintf("%s: expected %s:%x, actual %s:%x", ErrMismatch, e.Alg, e.Expected, e.Alg, e.Actual)
	if e.Name == "" {
		return msg
	}
	return e.Name + ": " + msg
}

func (e *MismatchError) Unwrap() error { return ErrMismatch }

// cacheKey identifies one state of one file while it is open, or once its
// last change is settled (see Cache): any write changes mtime or ctime, but
// a freed inode number can come back at once with the same size and times.
type cacheKey struct {
	State
	alg Algorithm
}

// cacheEntry is the promise of a digest while it is being computed, so
// that concurrent callers for the same file wait instead of hashing too.
type cacheEntry struct {
	done   chan struct{}
	digest []byte
	err    error
	// cancelled: the hash stopped because its caller's context ended.
	cancelled bool
}

// knownDigest is a digest computed, kept in the map's own memory: an
// entry with a channel and a slice of its own took three allocations and
// about 300 bytes a file, most of a server's live heap after a read of
// 20,000 files.
type knownDigest struct {
	n int8
	d [maxDigestSize]byte
}

func known(digest []byte) knownDigest {
	k := knownDigest{n: int8(len(digest))}
	copy(k.d[:], digest)
	return k
}

// Cache remembers the digests of the files it has hashed, so an object
// opened again and again is hashed once per process while it is unchanged
// (once per open while its last change is recent, then once). It is safe
// for concurrent use.
//
// A digest is known by the file's stat (device, inode, size, times), which
// another file can take: a file deleted frees its inode number, and one
// made at once after it, of the same size, gets the number again and, its
// times coming from the same tick of the kernel's coarse clock, the same
// times too. Seen here 253 times in 300: a fetch's copy dropped, then
// another object of the same size fetched, was checked against the
// dropped copy's digest. So, as git does with its index, a digest is
// known by stat alone only when the file's last change (ctime) is older
// than the hash by more than the clock's grain (settled): any file made or
// changed after the hash began then has a later ctime. A digest of a file
// changed just before its hash is known only through the *os.File it was
// hashed through (recent): while that is open, its inode cannot be freed,
// and a check made again through it costs no hash.
type Cache struct {
	mu     sync.Mutex
	known  map[cacheKey]knownDigest // digests computed, of settled files
	busy   map[cacheKey]*cacheEntry // digests being computed
	recent map[weak.Pointer[os.File]]recentDigest
	// added numbers the recent digests, so that the oldest go first.
	added uint64
	max   int
	// now is the clock hashes are timed by (a test moves it on).
	now func() time.Time
	// since is when known was last emptied, with the monotonic clock's
	// reading: a wall clock set back shows against it (clockSetBack).
	since time.Time
	// trees, when set, keeps the block sums of the large files hashed
	// for VerifyReads, and gives those of files met again (keptSums).
	trees *Trees
}

// recentDigest is the digest of a file changed just before its hash, the
// state it was hashed in, and when it was added.
type recentDigest struct {
	key    cacheKey
	digest knownDigest
	seq    uint64
}

// defaultCacheEntries bounds the cache (about 150 bytes an entry).
const defaultCacheEntries = 1 << 20

// recentMax bounds the digests known only through their *os.File: files
// changed within settleTime of their hash, opened at once (fetched objects,
// a store being filled).
const recentMax = 1024

// settleTime is how much older than its hash a file's last change must be
// for its digest to be known by stat alone: more than the grain of the
// times any file system here gives (a second on ext4 with small inodes,
// two on FAT; a tick of the coarse clock on the rest).
//
// What this rests on, and where it does not hold:
//   - ctimes come from this machine's wall clock. A wall clock set back
//     by more than settleTime would let a new file get a settled one's
//     ctime: the digests known by stat are forgotten when that is seen
//     (clockSetBack). A network or FUSE file system gives its server's
//     times, and one whose clock is behind ours by more than this could
//     see a changed file as settled; FAT has no ctime of its own (it
//     shows the mtime, which utimes sets).
//   - A write in the same tick as the state was taken, on a file system
//     whose times are coarse (kernels before 6.13, NFS, FUSE), leaves the
//     key as it was: a digest known through its *os.File is then the
//     content's before the write. A content-addressed store is not
//     written in place; a store that is, is checked at its next change.
const settleTime = 3 * time.Second

// NewCache returns an empty cache.
func NewCache() *Cache {
	return &Cache{
		known:  make(map[cacheKey]knownDigest),
		busy:   make(map[cacheKey]*cacheEntry),
		recent: make(map[weak.Pointer[os.File]]recentDigest),
		max:    defaultCacheEntries,
		now:    time.Now,
		since:  time.Now(),
	}
}

// clockSetBack forgets the digests known by stat when the wall clock,
// read at now, is behind the monotonic clock by more than a second since
// they were last forgotten: set back, files made from now on could take
// the times of files hashed before.
func (c *Cache) clockSetBack(now time.Time) {
	mono := now.Sub(c.since)                   // monotonic, when both have it
	wall := now.Round(0).Sub(c.since.Round(0)) // wall clock only
	if wall < mono-time.Second {
		clear(c.known)
		c.since = now
	}
}

// settled tells whether the file in state key was last changed long
// enough before start, when its hash began, for no other file to take
// its key.
func settled(key cacheKey, start time.Time) bool {
	return time.Unix(key.Ctime.Unix()).Before(start.Add(-settleTime))
}

func keyOf(f *os.File, alg Algorithm) (cacheKey, error) {
	st, err := stateOf(f)
	if err != nil {
		return cacheKey{}, err
	}
	return cacheKey{State: st, alg: alg}, nil
}

// Digest returns f's fs-verity digest, from the cache when f is unchanged
// since it was last hashed.
func (c *Cache) Digest(f *os.File, alg Algorithm) ([]byte, error) {
	k, err := c.digest(context.Background(), f, alg)
	if err != nil {
		return nil, err
	}
	return bytes.Clone(k.d[:k.n]), nil
}

// digest is Digest returning the digest by value: a check of a file
// whose digest is known makes no copy of it on the heap. Once ctx is done it returns
// ctx's error, whether it was hashing or waiting for another caller's hash
// of the same file.
func (c *Cache) digest(ctx context.Context, f *os.File, alg Algorithm) (knownDigest, error) {
	key, start, err := c.keyNow(f, alg)
	if err != nil {
		return knownDigest{}, err
	}
	k, _, err := c.digestKeeping(ctx, f, key, start, false)
	return k, err
}

// keyNow takes f's key for alg, and start, the time just before it, which
// digestKeeping needs: a file changed after that moment has a later ctime
// than start less a tick.
func (c *Cache) keyNow(f *os.File, alg Algorithm) (cacheKey, time.Time, error) {
	if !alg.Valid() {
		return cacheKey{}, time.Time{}, errpath.New(digestOp, f.Name(), errInvalidAlgorithm(alg))
	}
	start := c.now()
	key, err := keyOf(f, alg)
	return key, start, err
}

// digestKeeping is digest for f in state key, taken at or after start (so
// that a file changed after start has a later ctime than start less a
// tick), with a valid key.alg. With keep, it also returns the block sums
// of a file it hashed here whose sums are kept (nil when the digest was
// known, another caller hashed it, or the kernel measured it). A digest it
// returns is of f's content in state key: a hash made here fails if f
// changed while it was read.
func (c *Cache) digestKeeping(ctx context.Context, f *os.File, key cacheKey, start time.Time, keep bool) (knownDigest, *BlockSums, error) {
	alg := key.alg
	file := weak.Make(f)
	c.mu.Lock()
	c.clockSetBack(start)
	for {
		if k, ok := c.known[key]; ok {
			c.mu.Unlock()
			return k, nil, nil
		}
		if r, ok := c.recent[file]; ok && r.key == key {
			c.mu.Unlock()
			return r.digest, nil, nil
		}
		e, ok := c.busy[key]
		if !ok {
			break
		}
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return knownDigest{}, nil, ctx.Err()
		}
		if e.err == nil {
			if !settled(key, start) {
				// The same state of the same inode (both files are
				// open), which this file's next check then finds.
				c.mu.Lock()
				c.keepRecentLocked(file, recentDigest{key: key, digest: known(e.digest)})
				c.mu.Unlock()
			}
			return known(e.digest), nil, nil
		}
		if !e.cancelled {
			// The hash in flight, of the same state, failed: the
			// file changed under it, or could not be read. Its
			// failure is this caller's too. Hashing again would
			// fail the same way once the file has moved on (each
			// waiter in turn, a whole hash each), and could not
			// report as checked a state the file has left.
			return knownDigest{}, nil, e.err
		}
		// The caller that was hashing gave up, which says nothing of
		// the file: hash it for this caller, through the cache (the
		// abandoned entry is gone from it).
		c.mu.Lock()
	}
	e := &cacheEntry{done: make(chan struct{})}
	c.evictLocked()
	c.busy[key] = e
	c.mu.Unlock()

	var sums *BlockSums
	e.digest, sums, e.err = digestStat(ctx, alg, f, key.State, keep)
	e.cancelled = e.err != nil && ctx.Err() != nil
	// Keep the result only if the file did not change while being read.
	after, serr := keyOf(f, alg)
	if e.err == nil && serr == nil && after != key {
		e.err = fmt.Errorf("%s changed while its fs-verity digest was computed", f.Name())
	} else if e.err == nil {
		e.err = serr
	}
	c.mu.Lock()
	if c.busy[key] == e {
		delete(c.busy, key)
	}
	if e.err == nil {
		if settled(key, start) {
			c.known[key] = known(e.digest)
		} else {
			c.keepRecentLocked(file, recentDigest{key: key, digest: known(e.digest)})
		}
	}
	c.mu.Unlock()
	close(e.done)
	if e.err != nil {
		sums = nil
	}
	return known(e.digest), sums, e.err
}

// KeepTrees makes the cache keep in t the block sums of the files it
// hashes for VerifyReads (those keepsSums takes), and look there for the
// sums of files whose digest it does not know. Call it before the cache is
// used.
func (c *Cache) KeepTrees(t *Trees) { c.trees = t }

// VerifyReads is VerifyState for a caller that reads f only through the
// sums it returns when they are not nil: those the trees keep (KeepTrees)
// for want, when f's digest is not known here already, so that f is
// checked block by block as it is read (BlockSums.ReadAt) instead of
// hashed whole before its first byte. Otherwise f is checked whole, as
// VerifyState does, and if it matches, its block sums are kept for the
// next process; the sums of a file that does not match are not. With sums,
// the state is f's when they were found, which no hash covers: every read
// is checked instead.
func (c *Cache) VerifyReads(ctx context.Context, f *os.File, alg Algorithm, want []byte) (State, *BlockSums, error) {
	return c.verify(ctx, f, alg, want, c.trees != nil)
}

// keptSums returns the sums the trees keep for f, in state key, to be
// checked as it is read to have digest want, or nil when f is to be
// checked whole: its size is not one whose sums are kept, its digest is
// known or being computed (which costs a check nothing more, or a wait),
// the kernel measures it, or no sums giving want are kept.
func (c *Cache) keptSums(f *os.File, key cacheKey, want []byte) *BlockSums {
	if !key.regular() || !keepsSums(key.Size) {
		return nil
	}
	c.mu.Lock()
	_, known := c.known[key]
	r, recent := c.recent[weak.Make(f)]
	_, busy := c.busy[key]
	c.mu.Unlock()
	if known || busy || recent && r.key == key {
		return nil
	}
	if _, measured := kernelDigest(f, key.alg, key.Dev); measured {
		return nil
	}
	b, err := c.trees.Load(key.alg, want, key.Size)
	if err != nil {
		slog.Debug("fs-verity tree not read", "file", f.Name(), "err", err.Error())
		return nil
	}
	return b
}

// evictLocked makes room when the cache is full by dropping about a
// quarter of the finished entries (which ones does not matter much: a
// dropped object is just hashed again).
func (c *Cache) evictLocked() {
	if len(c.known)+len(c.busy) < c.max {
		return
	}
	drop := c.max / 4
	for k := range c.known {
		if drop <= 0 {
			break
		}
		delete(c.known, k)
		drop--
	}
}

// keepRecentLocked knows r through file alone, making room first by
// forgetting the files collected (closed and dropped) and, if that is not
// enough, the older half: files closed but not yet collected (a server
// that dups a descriptor closes the *os.File) count until a collection.
func (c *Cache) keepRecentLocked(file weak.Pointer[os.File], r recentDigest) {
	if len(c.recent) >= recentMax {
		for p, old := range c.recent {
			if p.Value() == nil || old.seq+recentMax/2 <= c.added {
				delete(c.recent, p)
			}
		}
	}
	c.added++
	r.seq = c.added
	c.recent[file] = r
}

// Len is the number of digests cached, those known through a file closed
// since among them.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.known) + len(c.busy) + len(c.recent)
}

// Verify checks that f's fs-verity digest (of algorithm alg) is want,
// hashing f at most once while it is unchanged. A different digest gives
// a *MismatchError, which wraps ErrMismatch.
func (c *Cache) Verify(f *os.File, alg Algorithm, want []byte) error {
	return c.VerifyContext(context.Background(), f, alg, want)
}

// VerifyContext is Verify that gives up once ctx is done, returning ctx's
// error: hashing a large file takes seconds, and a FUSE request the kernel
// interrupts (its caller killed) must not keep the CPUs busy for nothing.
// Another caller waiting for the same file's digest then hashes it itself.
func (c *Cache) VerifyContext(ctx context.Context, f *os.File, alg Algorithm, want []byte) error {
	_, _, err := c.verify(ctx, f, alg, want, false)
	return err
}

// VerifyState is VerifyContext that also returns the state of f its check
// covers: f's content was found to have digest want while f was in that
// state (hashed here or by a caller this one waited for, between two
// fstats that agreed; measured by the kernel; or known for it). A caller
// holding f compares a later fstat with it to know that f is still what
// was checked, with no second check.
func (c *Cache) VerifyState(ctx context.Context, f *os.File, alg Algorithm, want []byte) (State, error) {
	st, _, err := c.verify(ctx, f, alg, want, false)
	return st, err
}

// verify checks f against want, as VerifyReads does with reads and
// VerifyState without.
func (c *Cache) verify(ctx context.Context, f *os.File, alg Algorithm, want []byte, reads bool) (State, *BlockSums, error) {
	if len(want) != alg.Size() {
		return State{}, nil, fmt.Errorf("%s: expected digest has %d bytes, %s needs %d", f.Name(), len(want), alg, alg.Size())
	}
	key, start, err := c.keyNow(f, alg)
	if err != nil {
		return State{}, nil, err
	}
	if reads {
		if b := c.keptSums(f, key, want); b != nil {
			return key.State, b, nil
		}
	}
	k, sums, err := c.digestKeeping(ctx, f, key, start, reads)
	if err != nil {
		return State{}, nil, err
	}
	if got := k.d[:k.n]; !bytes.Equal(got, want) {
		return State{}, nil, &MismatchError{Name: f.Name(), Alg: alg, Expected: bytes.Clone(want), Actual: bytes.Clone(got)}
	}
	if sums != nil {
		// Best effort: without them the next process hashes the
		// file whole, as it would have anyway.
		if err := c.trees.Save(want, sums); err != nil {
			slog.Debug("fs-verity tree not kept", "file", f.Name(), "err", err.Error())
		}
	}
	return key.State, nil, nil
}
