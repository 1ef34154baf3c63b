package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/verity"
)

// readAheadTree is an image with a directory /d of 40 external files, one
// of whose objects (f20) is damaged, a directory /a of 10, and /b holding
// a file too large to read ahead (f00) and a small one.
func readAheadTree(t *testing.T) (dump string, store dirStore, objs map[string]object) {
	dir := t.TempDir()
	objs = map[string]object{}
	var b strings.Builder
	b.WriteString("/ 0 40755 5 0 0 0 0.0 - - -\n")
	for _, d := range []struct {
		name string
		n    int
	}{{"a", 10}, {"b", 2}, {"d", 40}} {
		fmt.Fprintf(&b, "/%s 0 40755 2 0 0 0 0.0 - - -\n", d.name)
		for i := range d.n {
			p := fmt.Sprintf("%s/f%02d", d.name, i)
			content := bytes.Repeat([]byte(p), 100+i)
			if p == "b/f00" {
				content = make([]byte, aheadMaxSize+1)
			}
			o := newObject(content)
			stored := content
			if p == "d/f20" {
				stored = bytes.Clone(content)
				stored[7] ^= 1
			}
			o.Put(t, dir, stored)
			objs[p] = o
			fmt.Fprintf(&b, "/%s %d 100644 1 0 0 0 0.0 %s - %s\n", p, len(content), o.Payload, o.Digest)
		}
	}
	return b.String(), dirStore(dir), objs
}

// TestReadAhead: lookups walking a directory in order have the objects of
// the next files opened and checked in the background, and their opens
// take them; a damaged object is not taken and its open still fails.
func TestReadAhead(t *testing.T) {
	dump, store, objs := readAheadTree(t)
	cache := verity.NewCache()
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: cache})
	a := &s.fsys.ahead

	// A lookup of the directory's first file starts the read-ahead, for
	// that file and the window after it; f20's object fails its check.
	s.mustLookup("d/f00")
	a.pending.Wait()
	if n := readyCount(a); n != aheadWindow-1 {
		t.Fatalf("after the first lookup, %d objects ready, want %d", n, aheadWindow-1)
	}
	for i := range aheadWindow {
		nid := s.fsys.nidOf(s.mustLookup(fmt.Sprintf("d/f%02d", i)).NodeId)
		if ready := isReady(a, nid); ready == (i == 20) {
			t.Errorf("f%02d: ready %v", i, ready)
		}
	}
	a.pending.Wait()

	// Reading every file in order: contents right, f20 refused, and the
	// opens take what was read ahead.
	for i := range 40 {
		p := fmt.Sprintf("d/f%02d", i)
		nid := s.fsys.nidOf(s.mustLookup(p).NodeId)
		a.pending.Wait()
		wasReady := isReady(a, nid)
		got, st := s.readFile(p)
		if i == 20 {
			if st != fuse.EIO {
				t.Errorf("%s (damaged object): %v, want EIO", p, st)
			}
			continue
		}
		if !st.Ok() || !bytes.Equal(got, objs[p].Content) {
			t.Errorf("%s: %v, %d bytes", p, st, len(got))
		}
		if !wasReady {
			t.Errorf("%s: not read ahead of its open", p)
		}
		if isReady(a, nid) {
			t.Errorf("%s: its open did not take the object read ahead", p)
		}
	}
	if !strings.Contains(s.log.String(), "/d/f20") {
		t.Errorf("the damaged object's open was not logged:\n%s", s.log.String())
	}

	// Lookups out of order read nothing ahead.
	before := cache.Len()
	for _, p := range []string{"a/f05", "a/f02", "a/f07", "a/f01", "a/f03", "a/f00"} {
		s.mustLookup(p)
	}
	a.pending.Wait()
	if got := cache.Len(); got != before {
		t.Errorf("random lookups hashed %d objects", got-before)
	}
	// Three in a row moving forward (a/f00, then these) start it.
	s.mustLookup("a/f02")
	a.pending.Wait()
	if got := cache.Len(); got != before {
		t.Errorf("two forward lookups hashed %d objects", got-before)
	}
	s.mustLookup("a/f04")
	a.pending.Wait()
	// The 5 after a/f04, then on into the next directory: b/f01 (b/f00
	// is too large); d's were read ahead already.
	if got := cache.Len() - before; got != 6 {
		t.Errorf("after three forward lookups, %d objects hashed, want the 5 after a/f04 and b/f01", got)
	}
	// A large file is not read ahead; the small one after it is.
	s.mustLookup("b/f00")
	a.pending.Wait()
	if isReady(a, s.fsys.nidOf(s.mustLookup("b/f00").NodeId)) || !isReady(a, s.fsys.nidOf(s.mustLookup("b/f01").NodeId)) {
		t.Errorf("read ahead: the %d-byte file %v, the small one %v", aheadMaxSize+1,
			isReady(a, s.fsys.nidOf(s.mustLookup("b/f00").NodeId)), isReady(a, s.fsys.nidOf(s.mustLookup("b/f01").NodeId)))
	}

	s.fsys.OnUnmount()
	if readyCount(a) != 0 {
		t.Errorf("%d objects still held after unmount", len(a.ready))
	}
}

func isReady(a *readAhead, nid uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.ready[nid]
	return ok
}

func readyCount(a *readAhead) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ready)
}

// TestNoReadAhead: with read-ahead off, lookups in order open nothing
// ahead, and files still read.
func TestNoReadAhead(t *testing.T) {
	dump, store, objs := readAheadTree(t)
	cache := verity.NewCache()
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Cache: cache, NoReadAhead: true})
	for i := range 5 {
		s.mustLookup(fmt.Sprintf("d/f%02d", i))
	}
	s.fsys.ahead.pending.Wait()
	if n := cache.Len(); n != 0 || readyCount(&s.fsys.ahead) != 0 {
		t.Errorf("read-ahead off, yet %d objects hashed and %d ready", n, readyCount(&s.fsys.ahead))
	}
	if got, st := s.readFile("d/f03"); !st.Ok() || !bytes.Equal(got, objs["d/f03"].Content) {
		t.Errorf("d/f03: %v, %d bytes", st, len(got))
	}
}

// TestReadyEvictsOldest: when aheadReady objects wait, keeping one more
// lets go of the oldest waiting (its file closed), not of a newer one.
func TestReadyEvictsOldest(t *testing.T) {
	dump, store, _ := readAheadTree(t)
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store})
	a := &s.fsys.ahead
	a.start(s.fsys)
	defer s.fsys.Close()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var fds []int
	for i := range aheadReady + 1 {
		fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		if !s.fsys.keepAhead(uint64(1000+i), &openObject{fd: fd}) {
			t.Fatalf("object %d not kept", i)
		}
	}
	if n := readyCount(a); n != aheadReady {
		t.Errorf("%d objects ready, want %d", n, aheadReady)
	}
	if isReady(a, 1000) || !isReady(a, 1001) || !isReady(a, uint64(1000+aheadReady)) {
		t.Errorf("the oldest was not the one let go")
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the oldest object's descriptor is still open (%v)", err)
	}
}

// TestReadAheadFromListing: a walk that lists a directory with READDIRPLUS
// sends no LOOKUP; its OPENs in listing order start the read-ahead, which
// the next opens take.
func TestReadAheadFromListing(t *testing.T) {
	dump, store, objs := readAheadTree(t)
	cache := verity.NewCache()
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: cache})
	a := &s.fsys.ahead
	dir := s.mustLookup("d")
	ents, st := s.listAll(dir.NodeId, 4096)
	if !st.Ok() {
		t.Fatalf("listing d: %v", st)
	}
	if cache.Len() != 0 || readyCount(a) != 0 {
		t.Fatalf("a listing alone hashed %d objects, made %d ready", cache.Len(), readyCount(a))
	}
	taken := 0
	for _, e := range ents {
		if e.Name == "." || e.Name == ".." || e.Name == "f20" {
			continue
		}
		wasReady := isReady(a, e.Ino)
		var oo fuse.OpenOut
		h := header(e.entry.NodeId, rootCaller)
		if st := s.fsys.Open(nil, &fuse.OpenIn{InHeader: h, Flags: syscall.O_RDONLY}, &oo); !st.Ok() {
			t.Fatalf("open d/%s: %v", e.Name, st)
		}
		got, st := s.readOpen(e.entry.NodeId, oo.Fh, e.entry.Attr.Size)
		s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: h, Fh: oo.Fh})
		if !st.Ok() || !bytes.Equal(got, objs["d/"+e.Name].Content) {
			t.Errorf("d/%s: %v, %d bytes", e.Name, st, len(got))
		}
		if wasReady {
			taken++
		}
		a.pending.Wait()
	}
	// The first open starts a scan of the window after it; every later
	// file but the damaged one is then ready before its open.
	if taken < 35 {
		t.Errorf("%d of 39 opens took an object read ahead, want at least 35", taken)
	}
}

// TestReadAheadAfterHeld: a reader going through a directory whose first
// files are still held from an earlier pass has the files after them read
// ahead from its first open of one not held, as a cold pass would.
func TestReadAheadAfterHeld(t *testing.T) {
	dump, store, _ := readAheadTree(t)
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: verity.NewCache()})
	a := &s.fsys.ahead
	// The node ids, looked up now: the kernel has them from the first
	// pass, and sends no LOOKUP in the second.
	var ids []uint64
	for i := range 12 {
		ids = append(ids, s.mustLookup(fmt.Sprintf("d/f%02d", i)).NodeId)
	}
	a.pending.Wait()
	a.dropReady(s.fsys)
	// f00 to f04 held and idle, opened without a word to the read-ahead.
	for i := range 5 {
		nid := s.fsys.nidOf(ids[i])
		ino, err := s.fsys.img.Inode(nid)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, st := s.fsys.openObject(context.Background(), &ino, false); !st.Ok() {
			t.Fatalf("f%02d: %v", i, st)
		}
		s.fsys.releaseObject(nid)
	}
	a.dropReady(s.fsys)
	clear(a.dirs)
	clear(a.queued)

	// The walk again: one listing, then the opens in order.
	if _, st := s.listAll(s.mustLookup("d").NodeId, 1<<16); !st.Ok() {
		t.Fatalf("listing /d: %v", st)
	}
	cold := 0
	for i, id := range ids {
		a.pending.Wait()
		if i >= 5 && !isReady(a, s.fsys.nidOf(id)) {
			cold++
		}
		in := fuse.OpenIn{InHeader: header(id, rootCaller), Flags: syscall.O_RDONLY}
		var out fuse.OpenOut
		if st := s.fsys.Open(nil, &in, &out); !st.Ok() {
			t.Fatalf("open f%02d: %v", i, st)
		}
		s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
	}
	if cold > 1 {
		t.Errorf("%d of f05..f11 opened cold, want at most the first", cold)
	}
}

// TestReadAheadCrossesDirectories: the read-ahead follows a depth-first
// walk in directory order, as find and tar go: the first lookup in a
// directory has the rest of it read ahead, its subdirectories where they
// come, and then what follows it in its parent and on up; nothing before
// where the walk started.
func TestReadAheadCrossesDirectories(t *testing.T) {
	dir := t.TempDir()
	store := dirStore(dir)
	var b strings.Builder
	b.WriteString("/ 0 40755 4 0 0 0 0.0 - - -\n")
	dirs := []string{"/s", "/t", "/t/a", "/t/b", "/t/b/c", "/t/d", "/u"}
	for _, d := range dirs {
		fmt.Fprintf(&b, "%s 0 40755 2 0 0 0 0.0 - - -\n", d)
	}
	// In the order a walk meets them; t/b/c comes before t/b's files.
	order := []string{"t/a/f00", "t/a/f01", "t/a/f02", "t/b/c/f00", "t/b/c/f01", "t/b/f00", "t/b/f01", "t/d/f00", "u/f00"}
	before := []string{"s/f00", "s/f01"}
	var lines []string
	for _, p := range append(slices.Clone(before), order...) {
		content := bytes.Repeat([]byte(p), 50)
		o := newObject(content)
		o.Put(t, dir, content)
		lines = append(lines, fmt.Sprintf("/%s %d 100644 1 0 0 0 0.0 %s - %s\n", p, len(content), o.Payload, o.Digest))
	}
	// A dumpfile lists a directory before what it holds.
	slices.Sort(lines)
	for _, l := range lines {
		b.WriteString(l)
	}
	s := newServer(t, imageFromDump(t, b.String(), 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: verity.NewCache()})
	a := &s.fsys.ahead

	s.mustLookup("t/a/f00")
	a.pending.Wait()
	nidOf := func(p string) uint64 { return imageNid(t, s, p) }
	for _, p := range order[1:] {
		if !isReady(a, nidOf(p)) {
			t.Errorf("%s: not read ahead after the first lookup in t/a", p)
		}
	}
	for _, p := range before {
		if isReady(a, nidOf(p)) {
			t.Errorf("%s, before where the walk started: read ahead", p)
		}
	}
	// Each file queued is found again where the scan says it was.
	a.mu.Lock()
	queued := maps.Clone(a.queued)
	a.mu.Unlock()
	if len(queued) != len(order) {
		t.Errorf("%d files queued, want %d", len(queued), len(order))
	}
	for nid, q := range queued {
		dir, err := s.fsys.img.Inode(q.dir)
		if err != nil {
			t.Fatal(err)
		}
		name := s.fsys.nameAt(q.dir, q.pos)
		if got, _, err := s.fsys.img.Lookup(&dir, name); err != nil || got != nid {
			t.Errorf("queued inode %d: position %d of directory %d names %q, which is inode %d (%v)", nid, q.pos, q.dir, name, got, err)
		}
	}
}

// TestReadAheadFollowsQueuedOpens: the opens of files the read-ahead
// queued carry it along when their listing has been forgotten, as find
// feeding xargs cat lists thousands of files before cat opens them.
func TestReadAheadFollowsQueuedOpens(t *testing.T) {
	dump, store, _ := readAheadTree(t)
	s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: verity.NewCache()})
	a := &s.fsys.ahead
	ents, st := s.listAll(s.mustLookup("d").NodeId, 1<<16)
	if !st.Ok() {
		t.Fatalf("listing /d: %v", st)
	}
	open := func(e dirent) {
		in := fuse.OpenIn{InHeader: header(e.entry.NodeId, rootCaller), Flags: syscall.O_RDONLY}
		var out fuse.OpenOut
		if st := s.fsys.Open(nil, &in, &out); !st.Ok() && e.Name != "f20" {
			t.Fatalf("open d/%s: %v", e.Name, st)
		}
		s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
	}
	var files []dirent
	for _, e := range ents {
		if e.Name != "." && e.Name != ".." {
			files = append(files, e)
		}
	}
	// The first open, of a listed file, starts the read-ahead; then the
	// listing is forgotten.
	open(files[0])
	a.pending.Wait()
	a.mu.Lock()
	clear(a.listed)
	clear(a.listedOld)
	a.mu.Unlock()
	cold := 0
	for _, e := range files[1:] {
		a.pending.Wait()
		if e.Name != "f20" && !isReady(a, e.Ino) {
			cold++
		}
		open(e)
	}
	if cold > 0 {
		t.Errorf("%d of d's 39 later files opened cold, past the first window", cold)
	}
}

// TestReadAheadClimbsWithinBudget: a scan that climbs out of a directory
// goes on after it in its parent: at once where a scan went down into it
// before, else after a search of the parent that stops at the scan's
// budget, so that a parent of thousands of directories, climbed into at
// each of them, does not cost every scan the whole of it.
func TestReadAheadClimbsWithinBudget(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/w 0 40755 5002 0 0 0 0.0 - - -\n")
	content := []byte("the same object for every file")
	o := newObject(content)
	o.Put(t, dir, content)
	file := func(p string) {
		fmt.Fprintf(&b, "%s %d 100644 1 0 0 0 0.0 %s - %s\n", p, len(content), o.Payload, o.Digest)
	}
	file("/w/a")
	const subdirs = 5000
	for i := range subdirs {
		fmt.Fprintf(&b, "/w/d%04d 0 40755 2 0 0 0 0.0 - - -\n", i)
		file(fmt.Sprintf("/w/d%04d/f", i))
	}
	s := newServer(t, imageFromDump(t, b.String(), 1), testConfig{Store: dirStore(dir), Verity: composefs.VerityOn, Cache: verity.NewCache()})
	a := &s.fsys.ahead
	queued := func(p string) bool {
		nid := imageNid(t, s, p)
		a.mu.Lock()
		defer a.mu.Unlock()
		_, ok := a.queued[nid]
		return ok
	}

	// A walk from w's first file goes down into the first directories,
	// and remembers where each is in w.
	s.mustLookup("w/a")
	a.pending.Wait()
	w, err := s.fsys.img.Inode(imageNid(t, s, "w"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		sub := imageNid(t, s, fmt.Sprintf("w/d%04d", i))
		a.mu.Lock()
		at, ok := a.subdirs[sub]
		a.mu.Unlock()
		if want := fmt.Sprintf("d%04d", i+1); !ok || at.dir != w.Nid || s.fsys.nameAt(w.Nid, at.pos) != want {
			t.Errorf("d%04d: remembered %v %+v, want the position of %s in w", i, ok, at, want)
		}
	}
	// A scan from d0005 climbs into w after it, from what was remembered.
	a.mu.Lock()
	clear(a.queued)
	a.mu.Unlock()
	s.mustLookup("w/d0005/f")
	a.pending.Wait()
	if !queued("w/d0036/f") {
		t.Error("a scan from w/d0005/f did not go on into w/d0036")
	}
	// Near the end of w, with nothing remembered, the search stops at
	// the budget: nothing after d4990 is read ahead.
	s.mustLookup("w/d4990/f")
	a.pending.Wait()
	if queued("w/d4991/f") {
		t.Errorf("a scan from w/d4990/f searched w past its budget of %d entries", aheadScanEntries)
	}
}

// imageNid finds the inode at path p in the server's image, without a
// lookup, which would start scans of its own.
func imageNid(t *testing.T, s *server, p string) uint64 {
	t.Helper()
	nid := s.fsys.rootNid
	for _, name := range strings.Split(p, "/") {
		in, err := s.fsys.img.Inode(nid)
		if err != nil {
			t.Fatal(err)
		}
		if nid, _, err = s.fsys.img.Lookup(&in, name); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
	}
	return nid
}

// TestReadAheadObjectChangedBeforeOpen: an object read ahead and then
// rewritten in place in the store before its file is opened (with
// Passthrough) or first read (without) is not served as checked: it is
// checked anew, and refused.
func TestReadAheadObjectChangedBeforeOpen(t *testing.T) {
	for _, noOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("noOpen=%v", noOpen), func(t *testing.T) {
			dump, store, objs := readAheadTree(t)
			s := newServer(t, imageFromDump(t, dump, 1), testConfig{Store: store, Verity: composefs.VerityOn, Cache: verity.NewCache(), NoOpen: noOpen})
			a := &s.fsys.ahead
			s.mustLookup("d/f00")
			a.pending.Wait()
			e := s.mustLookup("d/f05")
			a.pending.Wait()
			if !isReady(a, s.fsys.nidOf(e.NodeId)) {
				t.Fatal("d/f05 was not read ahead")
			}
			path := filepath.Join(string(store), objs["d/f05"].Payload)
			rewriteAt(t, path, []byte("changed"), 3)
			// Its times as the test sets them, unlike any it had when
			// checked, however coarsely the clock ticks.
			old := time.Unix(1_000_000, 0)
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
			var got []byte
			var st fuse.Status
			if noOpen {
				got, st = s.readUnopened(e.NodeId, 0, 4096)
			} else {
				got, st = s.readFile("d/f05")
			}
			if st != fuse.EIO {
				t.Errorf("d/f05 rewritten after it was read ahead: %v, %d bytes (%q), want EIO", st, len(got), got[:min(len(got), 12)])
			}
		})
	}
}
