package objects

import (
	"cmp"
	"container/list"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/internal/errpath"
)

// Cache is a flat store (XX/REST) that remote stores fetch objects into.
// Objects enter it whole and checked, under a temporary name renamed into
// place without replacing anything, so several processes may share one
// cache directory. With a size bound the objects used least recently are
// removed when a new one would pass it, except those some process has
// open.
type Cache struct {
	flat *FlatStore
	dir  string
	max  int64

	mu    sync.Mutex
	total int64
	lru   *list.List               // of *cachedObject, most recent first
	byKey map[string]*list.Element // payload -> element of lru
	subs  map[string]int           // fan-out directories held open
}

type cachedObject struct {
	payload string
	size    int64
}

// OpenCache opens the cache directory dir, making it (0700, parents as
// mkdir -p) when missing. maxBytes > 0 bounds the bytes of the objects
// kept (the directory is walked once to learn what it holds); 0 keeps
// everything.
func OpenCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes < 0 {
		return nil, fmt.Errorf("object cache %s: negative size bound %d", dir, maxBytes)
	}
	flat, err := CreateFlat(dir)
	if err != nil {
		return nil, err
	}
	c := &Cache{flat: flat, dir: dir, max: maxBytes, lru: list.New(), byKey: map[string]*list.Element{}, subs: map[string]int{}}
	if maxBytes > 0 {
		if err := c.scan(); err != nil {
			flat.Close()
			return nil, errpath.New("object cache", dir, err)
		}
	}
	return c, nil
}

// Dir is the cache's directory.
func (c *Cache) Dir() string { return c.dir }

// Close releases the directory.
func (c *Cache) Close() error {
	c.mu.Lock()
	for _, fd := range c.subs {
		unix.Close(fd)
	}
	c.subs = nil
	c.mu.Unlock()
	return c.flat.Close()
}

// Size is the bytes of the objects the cache knows it holds: all of them
// with a size bound, those this process put there without.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// scan learns the objects already in the directory, the least recently
// used (by access time) last.
func (c *Cache) scan() error {
	type found struct {
		cachedObject
		atime int64
	}
	var all []found
	subs, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, sub := range subs {
		if !sub.IsDir() || len(sub.Name()) != 2 {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(c.dir, sub.Name()))
		if err != nil {
			return err
		}
		for _, e := range ents {
			if !e.Type().IsRegular() || e.Name()[0] == '.' {
				continue
			}
			var st unix.Stat_t
			if unix.Lstat(filepath.Join(c.dir, sub.Name(), e.Name()), &st) != nil {
				continue
			}
			all = append(all, found{cachedObject{sub.Name() + "/" + e.Name(), st.Size}, st.Atim.Nano()})
		}
	}
	// Most recent first, as lru keeps them.
	slices.SortFunc(all, func(a, b found) int { return cmp.Compare(b.atime, a.atime) })
	for _, f := range all {
		c.byKey[f.payload] = c.lru.PushBack(&cachedObject{f.payload, f.size})
		c.total += f.size
	}
	return nil
}

// open opens the cached object rel ("xx/rest", already clean), marking
// it used. A missing object wraps fs.ErrNotExist.
func (c *Cache) open(rel string) (*os.File, error) {
	f, err := c.flat.Open(rel)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if e, ok := c.byKey[rel]; ok {
		c.lru.MoveToFront(e)
	}
	c.mu.Unlock()
	// No access time is set here for the next process that scans the
	// cache: setting it changes the ctime, and an object whose ctime
	// changes while it is hashed counts as changed (verity.Cache). The
	// reads set it, as the mount's relatime allows.
	return f, nil
}

// present tells whether the cache holds a regular file named rel, as
// open would find it, without opening it.
func (c *Cache) present(rel string) bool {
	ok, err := c.flat.Has(rel)
	return ok && err == nil
}

// remove deletes the cached object rel, found bad.
func (c *Cache) remove(rel string) {
	if len(c.flat.roots) == 0 {
		return // closed: a fetch that ends after the mount did
	}
	unix.Unlinkat(int(c.flat.roots[0].dir.Fd()), rel, 0)
	c.mu.Lock()
	if e, ok := c.byKey[rel]; ok {
		c.total -= e.Value.(*cachedObject).size
		c.lru.Remove(e)
		delete(c.byKey, rel)
	}
	c.mu.Unlock()
}

// tempFile makes a temporary file in the fan-out directory of rel, to
// be filled, checked and then placed (or dropped).
func (c *Cache) tempFile(rel string) (*cacheTemp, error) {
	if len(c.flat.roots) == 0 {
		return nil, errors.New("object cache is closed")
	}
	sub, name, ok := cutPayload(rel)
	if !ok {
		return nil, fmt.Errorf("object %q: not XX/REST", rel)
	}
	dirfd, err := c.subdir(sub)
	if err != nil {
		return nil, err
	}
	tmp, err := tempName()
	if err != nil {
		return nil, err
	}
	fd, err := unix.Openat(dirfd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create temporary file in %s: %w", filepath.Join(c.dir, sub), err)
	}
	unix.Fchmod(fd, 0o644)
	return &cacheTemp{
		File: os.NewFile(uintptr(fd), filepath.Join(c.dir, sub, tmp)),
		c:    c, dirfd: dirfd, tmp: tmp, name: name, rel: rel,
	}, nil
}

// subdir is the fan-out directory sub, made when missing, opened beneath
// the root once and held (256 of them at most) while the cache is open.
func (c *Cache) subdir(sub string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if fd, ok := c.subs[sub]; ok {
		return fd, nil
	}
	if len(c.flat.roots) == 0 {
		return -1, errors.New("object cache is closed")
	}
	rootfd := int(c.flat.roots[0].dir.Fd())
	switch err := unix.Mkdirat(rootfd, sub, 0o755); err {
	case nil, unix.EEXIST:
	default:
		return -1, fmt.Errorf("mkdir %s: %w", filepath.Join(c.dir, sub), err)
	}
	fd, err := openBeneath(rootfd, sub, unix.O_RDONLY|unix.O_DIRECTORY, noSymlinks)
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", filepath.Join(c.dir, sub), err)
	}
	// Searchable by all whatever the umask, as in a flat store: whether
	// others reach the objects is the top directory's mode's business.
	unix.Fchmod(fd, 0o755)
	c.subs[sub] = fd
	return fd, nil
}

// cacheTemp is an object being fetched into the cache.
type cacheTemp struct {
	*os.File
	c              *Cache
	dirfd          int
	tmp, name, rel string
}

// place renames the filled and checked temporary file, of size bytes,
// into the cache, and leaves it open for the caller to read (and close);
// placed says it is there now. An object placed meanwhile by someone
// else is kept, and this copy removed (closed and unlinked): placed is
// false, and the caller opens the one in place. On an error the file is
// closed and removed.
func (t *cacheTemp) place(size int64) (placed bool, err error) {
	err = renameNoReplace(t.dirfd, t.tmp, t.dirfd, t.name)
	switch {
	case err == unix.EEXIST:
		t.drop()
		return false, nil
	case err == nil:
		t.c.added(t.rel, size)
		return true, nil
	default:
		t.drop()
		return false, fmt.Errorf("rename into %s: %w", filepath.Join(t.c.dir, t.rel), err)
	}
}

// drop removes the temporary file: nothing enters the cache.
func (t *cacheTemp) drop() {
	t.File.Close()
	unix.Unlinkat(t.dirfd, t.tmp, 0)
}

// added notes a new object, and evicts what the size bound says must go.
func (c *Cache) added(rel string, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byKey[rel]; ok {
		return
	}
	c.byKey[rel] = c.lru.PushFront(&cachedObject{rel, size})
	c.total += size
	if c.max <= 0 {
		return
	}
	e := c.lru.Back()
	for c.total > c.max && e != nil {
		prev := e.Prev()
		o := e.Value.(*cachedObject)
		if o.payload != rel && c.evict(o.payload) {
			c.total -= o.size
			c.lru.Remove(e)
			delete(c.byKey, o.payload)
		}
		e = prev
	}
}

// evict removes the object rel unless it is open, here or in another
// process: a write lease is granted only on a file nobody else has open.
// Where leases are not to be had the object goes anyway (a reader that
// has it open keeps reading it).
func (c *Cache) evict(rel string) bool {
	if len(c.flat.roots) == 0 {
		return false
	}
	rootfd := int(c.flat.roots[0].dir.Fd())
	fd, err := openBeneath(rootfd, rel, unix.O_WRONLY|unix.O_NONBLOCK, noSymlinks)
	if errors.Is(err, fs.ErrNotExist) {
		return true // gone already
	}
	if err == nil {
		defer unix.Close(fd)
		_, lerr := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK)
		if lerr == unix.EAGAIN || lerr == unix.EBUSY {
			return false
		}
		if lerr == nil {
			defer unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
		}
	}
	err = unix.Unlinkat(rootfd, rel, 0)
	return err == nil || err == unix.ENOENT
}

// cutPayload splits a clean "xx/rest" into its fan-out directory and name.
func cutPayload(rel string) (sub, name string, ok bool) {
	if len(rel) < 4 || rel[2] != '/' {
		return "", "", false
	}
	return rel[:2], rel[3:], true
}
