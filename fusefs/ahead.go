package fusefs

import (
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/erofs"
)

// Object read-ahead.
//
// Opening an external file costs the open of its object and, with verity,
// a read and hash of all of it, all inside the OPEN round trip; on a cold
// store that is disk latency the caller waits for, file after file. Programs
// that read many files (cp -r, tar, rsync, a package scan) look them up in
// directory order. When lookups in one directory move forward by name, the
// objects of the next files in that directory are opened and verified in
// the background, several at a time, so that their OPEN finds the digest
// cached and the content in the page cache. The kernel's overlayfs reads
// one file at a time; this is where a userspace server can do better.
//
// A walk that lists directories with READDIRPLUS (find, tar, ls -l, most
// walkers today) sends no LOOKUP at all: the listing answered them. Its
// OPENs are then what shows the order, so the regular files a listing
// returned are remembered with their directory and name (noteListed), and
// an OPEN of one of them counts as a lookup (noteOpen).
//
// Nothing is read ahead for random lookups, never more than aheadWindow
// files past the last one asked for, and no file over aheadMaxSize.

const (
	// aheadWindow is how many files past the current lookup are read ahead.
	aheadWindow = 32
	// aheadWorkers is how many objects are opened and hashed at once:
	// enough to keep a disk's queue busy, few enough to leave CPU to the
	// program being served.
	aheadWorkers = 4
	// aheadDirs bounds the directories whose lookup order is followed.
	aheadDirs = 64
	// aheadQueued bounds the memory of files already read ahead (about 30
	// bytes each).
	aheadQueued = 1 << 14
	// aheadSubdirs bounds the memory of directories scans went into.
	aheadSubdirs = 1 << 12
	// aheadReady bounds the objects kept open, checked and registered
	// for passthrough, waiting for their OPEN.
	aheadReady = 2 * aheadWindow
	// aheadMaxSize is the largest file read ahead. Waiting on the disk
	// matters for small files; a large file's open costs the reading of
	// all of it, not worth doing for a file that may only be looked up.
	aheadMaxSize = 1 << 20
	// aheadScanEntries bounds the directory entries one scan reads, and
	// aheadDepth how far it goes down into subdirectories and up into
	// parents: a tree of directories without files, or a damaged one
	// that loops, costs a scan little.
	aheadScanEntries = 4096
	aheadDepth       = 16
	// aheadListed bounds the files remembered from listings, waiting for
	// their OPEN: a walker lists ahead of what it opens (find piped into
	// xargs runs a few thousand names ahead of cat), and a remembered
	// file costs about 64 bytes.
	aheadListed = 1 << 13
)

// dirPlace is a position in a directory: where a scan found a file, or
// just after a subdirectory's entry (a name would cost an allocation).
type dirPlace struct {
	dir, pos uint64
}

// listedFile is where a listing showed a regular file.
type listedFile struct {
	dir  uint64
	name string
}

// dirFile is a regular file as a listing returns it.
type dirFile struct {
	nid  uint64
	name string
}

// dirStream is what is known of the lookups in one directory.
type dirStream struct {
	last string // the name looked up last
	// next is the name at which the next scan is due; "" once the
	// directory's end has been queued. scanning: a scan is in flight.
	next     string
	started  bool
	scanning bool
	// forward counts the lookups in a row that moved forward by name.
	forward int
}

// scanJob asks for the files after name in directory dir to be read ahead.
// first: name is the first lookup seen in dir; it starts a scan only if it
// is the directory's first regular file, and is read ahead itself.
type scanJob struct {
	dir   uint64
	name  string
	first bool
}

type readAhead struct {
	once  sync.Once
	scans chan scanJob
	files chan uint64
	done  chan struct{}

	mu   sync.Mutex
	dirs map[uint64]*dirStream
	// queued holds the files read ahead lately, with where the scan
	// found them: an open of one tells where the walk is, as a listing
	// would, though the listing was forgotten long ago (find feeding
	// xargs lists thousands of files ahead of cat's opens).
	queued map[uint64]dirPlace
	// subdirs holds the directories scans went down into, with the
	// position just after their entry in their parent, for the scans
	// that climb out of them.
	subdirs map[uint64]dirPlace
	// ready holds objects read ahead, by nid, for their OPEN to take,
	// numbered in arrival order so that the oldest goes first.
	ready   map[uint64]readyObject
	arrived uint64
	// listed and listedOld hold the regular files recent listings
	// returned, by nid: a file goes into listed, and when that is full
	// it becomes listedOld, whose files are forgotten. Two generations
	// rather than a ring with a delete per insert: a Go map that is
	// deleted from as much as added to fills with tombstones, which cost
	// a walk of 500,000 entries 30% of our CPU time.
	listed, listedOld map[uint64]listedFile
	// pending counts the scans and files queued and not yet done.
	pending sync.WaitGroup
	// workers counts the goroutines running, which read the image: they
	// must be gone before it is unmapped.
	workers sync.WaitGroup
	halted  atomic.Bool
}

type readyObject struct {
	o   *openObject
	seq uint64
}

func (a *readAhead) start(f *FS) {
	a.once.Do(func() {
		a.scans = make(chan scanJob, aheadDirs)
		a.files = make(chan uint64, aheadWindow*aheadWorkers)
		a.done = make(chan struct{})
		a.dirs = make(map[uint64]*dirStream)
		a.queued = make(map[uint64]dirPlace)
		a.subdirs = make(map[uint64]dirPlace)
		a.ready = make(map[uint64]readyObject)
		a.listed = make(map[uint64]listedFile, aheadListed/2)
		a.listedOld = make(map[uint64]listedFile, aheadListed/2)
		a.workers.Add(1 + aheadWorkers)
		go a.scanLoop(f)
		for range aheadWorkers {
			go a.fileLoop(f)
		}
	})
}

// stopAhead ends the background work, waits for it to be gone, and lets go
// of the objects read ahead. After it the image is no longer read here.
func (f *FS) stopAhead() {
	a := &f.ahead
	first := !a.halted.Swap(true)
	// Whether or not the read-ahead ever started, it cannot from now on,
	// and if it did, its setup is complete.
	a.once.Do(func() {})
	if first && a.done != nil {
		close(a.done)
	}
	a.workers.Wait()
	if !first {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.ready {
		f.dropObject(r.o)
	}
	clear(a.ready)
}

// dropReady lets go of the objects read ahead and not yet opened, for an
// open short of descriptors, and says how many there were.
func (a *readAhead) dropReady(f *FS) int {
	a.mu.Lock()
	ready := make([]*openObject, 0, len(a.ready))
	for _, r := range a.ready {
		ready = append(ready, r.o)
	}
	clear(a.ready)
	a.mu.Unlock()
	for _, o := range ready {
		f.dropObject(o)
	}
	return len(ready)
}

// take hands the open of nid the object read ahead for it, if any.
func (a *readAhead) take(nid uint64) *openObject {
	a.mu.Lock()
	defer a.mu.Unlock()
	r, ok := a.ready[nid]
	if !ok {
		return nil
	}
	delete(a.ready, nid)
	return r.o
}

// keepAhead makes o, the checked object of nid, ready for its open,
// dropping the oldest waiting one when there is no room; it reports false
// (and the caller drops o) when there is no need.
func (f *FS) keepAhead(nid uint64, o *openObject) bool {
	a := &f.ahead
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.ready[nid]; ok || a.halted.Load() {
		return false
	}
	f.objMu.Lock()
	_, held := f.open[nid]
	f.objMu.Unlock()
	if held {
		return false
	}
	if len(a.ready) >= aheadReady {
		oldest, first := uint64(0), true
		for n, r := range a.ready {
			if first || r.seq < a.ready[oldest].seq {
				oldest, first = n, false
			}
		}
		f.dropObject(a.ready[oldest].o)
		delete(a.ready, oldest)
	}
	a.arrived++
	a.ready[nid] = readyObject{o, a.arrived}
	return true
}

// aheadWanted reports whether reading ahead is on for f.
func (f *FS) aheadWanted() bool {
	return f.view.Config().Store != nil && !f.cfg.NoReadAhead && !f.ahead.halted.Load()
}

// noteListed remembers the regular files a listing of directory dir
// returned (nids and names in on-disk order), for noteOpen.
func (f *FS) noteListed(dir uint64, files []dirFile) {
	if len(files) == 0 || !f.aheadWanted() {
		return
	}
	a := &f.ahead
	a.start(f)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, df := range files {
		if len(a.listed) >= aheadListed/2 {
			clear(a.listedOld)
			a.listed, a.listedOld = a.listedOld, a.listed
		}
		a.listed[df.nid] = listedFile{dir: dir, name: df.name}
	}
}

// noteOpen counts the open of regular file nid as a lookup in the
// directory a listing showed it in, or the read-ahead found it in.
func (f *FS) noteOpen(nid uint64, held bool) {
	if !f.aheadWanted() {
		return
	}
	a := &f.ahead
	a.mu.Lock()
	lf, ok := a.listed[nid]
	if !ok {
		lf, ok = a.listedOld[nid]
	}
	q, queued := a.queued[nid]
	a.mu.Unlock()
	if !ok && queued {
		lf = listedFile{dir: q.dir, name: f.nameAt(q.dir, q.pos)}
		ok = lf.name != ""
	}
	if ok {
		f.followLookup(lf.dir, lf.name, held)
	}
}

// nameAt is the name of the entry at position pos of directory dir, ""
// when there is none.
func (f *FS) nameAt(dir, pos uint64) string {
	in, err := f.img.Inode(dir)
	if err != nil || !in.IsDir() {
		return ""
	}
	var name string
	f.view.ReadDirAt(&in, pos, func(d *erofs.Dirent) bool {
		name = string(d.Name)
		return false
	})
	return name
}

// noteLookup follows the order of lookups of regular files in directory
// dir and starts reading ahead at a lookup of its first file, or after
// three lookups in a row moving forward by name.
func (f *FS) noteLookup(dir uint64, name string) { f.followLookup(dir, name, false) }

// followLookup is noteLookup; held says the file's object is held already,
// which moves the directory's stream along but sends no scan: the next
// file not held sends one, if the stream is going forward by then.
func (f *FS) followLookup(dir uint64, name string, held bool) {
	if !f.aheadWanted() {
		return
	}
	a := &f.ahead
	a.start(f)
	a.mu.Lock()
	s := a.dirs[dir]
	first := s == nil
	if first {
		// A program reading a directory through starts with its first
		// file: worth a look from the scanner.
		if len(a.dirs) >= aheadDirs {
			clear(a.dirs)
		}
		s = &dirStream{last: name}
		a.dirs[dir] = s
	} else {
		if name == s.last {
			// The same file again (its dentry was dropped): no news.
			a.mu.Unlock()
			return
		}
		forward := name > s.last
		s.last = name
		if !forward {
			// Going back or jumping around: not a scan of the directory.
			s.started, s.next, s.forward = false, "", 0
			a.mu.Unlock()
			return
		}
		s.forward++
	}
	if held {
		if first {
			// A reader starting on a file still held from an
			// earlier pass, as a second walk of a tree does: its
			// first file not held starts a scan at once.
			s.forward = 2
		}
		a.mu.Unlock()
		return
	}
	due := !s.scanning && (first || !s.started && s.forward >= 2 || s.started && s.next != "" && name >= s.next)
	if due {
		s.started, s.scanning = true, true
	}
	a.mu.Unlock()
	if !due {
		return
	}
	a.pending.Add(1)
	select {
	case a.scans <- scanJob{dir, name, first}:
	default:
		a.pending.Done()
		a.mu.Lock()
		s.scanning = false
		a.mu.Unlock()
	}
}

func (a *readAhead) scanLoop(f *FS) {
	defer a.workers.Done()
	for {
		select {
		case <-a.done:
			return
		case job := <-a.scans:
			next, ok := f.scanAhead(job)
			a.mu.Lock()
			if s := a.dirs[job.dir]; s != nil {
				s.scanning, s.next, s.started = false, next, ok
				if ok && next != "" && s.last >= next {
					// The lookups passed the next scan's start while
					// this one ran: go on from where they are.
					s.scanning = true
					a.pending.Add(1)
					select {
					case a.scans <- scanJob{dir: job.dir, name: s.last}:
					default:
						s.scanning = false
						a.pending.Done()
					}
				}
			}
			a.mu.Unlock()
			a.pending.Done()
		}
	}
}

// scanAhead queues the next aheadWindow regular files after job.name in
// directory job.dir, in the order a walk of the tree in directory order
// opens them (find, tar, cp -r, rsync: depth first, each directory's
// entries in order): the rest of job.dir, going down into its
// subdirectories where they come, and at its end what follows it in its
// parent, and so on up. A walk thus finds the first files of the next
// directory ready too, which with many small directories is most of them.
// It returns the name in job.dir at which the next scan is due ("" when
// the scan went past job.dir's end); ok is false when a first lookup
// turned out not to be the directory's first file, which starts nothing.
// Damage just ends the scan: the requests that need those parts will
// report it.
func (f *FS) scanAhead(job scanJob) (next string, ok bool) {
	defer func() {
		if recover() != nil {
			next = ""
		}
	}()
	debug.SetPanicOnFault(true)
	dir, err := f.img.Inode(job.dir)
	if err != nil || !dir.IsDir() {
		return "", true
	}
	w := aheadWalk{f: f, budget: aheadScanEntries}
	var pos uint64 // where the walk goes on: just after job.name
	if job.first {
		// The looked-up file must be the directory's first, and is read
		// ahead itself.
		isFirst, more := false, true
		at := uint64(0)
		f.view.ReadDirAt(&dir, 0, func(d *erofs.Dirent) bool {
			if d.Type != erofs.FTReg {
				at = d.Next
				return true
			}
			if isFirst = string(d.Name) == job.name; isFirst {
				more, pos = w.file(d, dir.Nid, at, 0), d.Next
			}
			return false
		})
		if !isFirst {
			return "", false
		}
		if !more {
			return w.next, true
		}
	} else if pos, err = f.view.DirPosAfter(&dir, job.name); err != nil {
		return "", true
	}
	if !w.dir(&dir, pos, 0) {
		return w.next, true
	}
	// Up: what follows each directory in its parent.
	for range aheadDepth {
		if dir.Nid == f.rootNid {
			break
		}
		parentNid, _, err := f.img.Lookup(&dir, "..")
		if err != nil || parentNid == dir.Nid {
			break
		}
		parent, err := f.img.Inode(parentNid)
		if err != nil || !parent.IsDir() {
			break
		}
		var found bool
		if pos, found = w.after(&parent, dir.Nid); !found {
			break
		}
		w.climbed = true
		if !w.dir(&parent, pos, 0) {
			return w.next, true
		}
		dir = parent
	}
	return "", true
}

// after is the position in parent just after its entry for directory
// child, where a walk that has finished child goes on: remembered when a
// scan went down into child, else searched for, from parent's start,
// within the scan's budget (a parent of many directories, climbed into at
// each, would cost a scan the whole of it every time).
func (w *aheadWalk) after(parent *erofs.Inode, child uint64) (uint64, bool) {
	a := &w.f.ahead
	a.mu.Lock()
	at, ok := a.subdirs[child]
	a.mu.Unlock()
	if ok && at.dir == parent.Nid {
		return at.pos, true
	}
	var pos uint64
	found := false
	w.f.view.ReadDirAt(parent, 0, func(d *erofs.Dirent) bool {
		if w.budget--; w.budget < 0 {
			return false
		}
		if d.Nid == child && d.Type == erofs.FTDir && !erofs.IsDotOrDotDot(d.Name) {
			pos, found = d.Next, true
			return false
		}
		return true
	})
	return pos, found
}

// noteSubdir remembers that directory sub is listed in dir just before
// position next.
func (a *readAhead) noteSubdir(sub, dir, next uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.subdirs) >= aheadSubdirs {
		clear(a.subdirs)
	}
	a.subdirs[sub] = dirPlace{dir: dir, pos: next}
}

// aheadWalk is one scan's way through the tree.
type aheadWalk struct {
	f      *FS
	seen   int // regular files passed
	budget int // directory entries left to read
	// next is where the next scan is due, as a name in the scan's
	// directory: a file there, or the subdirectory the walk was beneath;
	// "" once the walk has left the directory for its parent.
	next    string
	via     string // the subdirectory of the scan's directory the walk is in
	climbed bool
}

// mark is the name in the scan's directory that stands for the walk's
// place at the entry name, depth directories beneath it.
func (w *aheadWalk) mark(name []byte, depth int) string {
	switch {
	case w.climbed:
		return ""
	case depth == 0:
		return string(name)
	}
	return w.via
}

// dir walks directory dir from pos, depth levels beneath where the scan
// started; false: the scan is over (window full, workers behind, budget
// spent).
func (w *aheadWalk) dir(dir *erofs.Inode, pos uint64, depth int) bool {
	more := true
	at := pos // of the entry at hand
	err := w.f.view.ReadDirAt(dir, pos, func(d *erofs.Dirent) bool {
		here := at
		at = d.Next
		if w.budget--; w.budget < 0 {
			w.next, more = w.mark(d.Name, depth), false
			return false
		}
		switch {
		case d.Type == erofs.FTReg:
			more = w.file(d, dir.Nid, here, depth)
		case d.Type == erofs.FTDir && depth < aheadDepth && !erofs.IsDotOrDotDot(d.Name):
			sub, err := w.f.img.Inode(d.Nid)
			if err != nil || !sub.IsDir() {
				return true
			}
			if depth == 0 {
				w.via = string(d.Name)
			}
			w.f.ahead.noteSubdir(d.Nid, dir.Nid, at)
			more = w.dir(&sub, 0, depth+1)
		}
		return more
	})
	return more && err == nil
}

// file queues the regular file d, at position pos of directory dir, depth
// levels beneath the scan's directory, unless it was already; false: the
// scan is over.
func (w *aheadWalk) file(d *erofs.Dirent, dir, pos uint64, depth int) bool {
	a := &w.f.ahead
	w.seen++
	if w.seen == aheadWindow/2 {
		w.next = w.mark(d.Name, depth)
	}
	if w.seen > aheadWindow {
		return false
	}
	if !a.markQueued(d.Nid, dir, pos) {
		return true
	}
	a.pending.Add(1)
	select {
	case a.files <- d.Nid:
		return true
	default:
		a.pending.Done()
		// The workers are behind: scan again from here when the
		// lookups get here.
		a.unmarkQueued(d.Nid)
		w.next = w.mark(d.Name, depth)
		return false
	}
}

// markQueued notes file nid, at position pos of directory dir, as read
// ahead; false if it was already.
func (a *readAhead) markQueued(nid, dir, pos uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.queued[nid]; ok {
		return false
	}
	if len(a.queued) >= aheadQueued {
		clear(a.queued)
	}
	a.queued[nid] = dirPlace{dir: dir, pos: pos}
	return true
}

func (a *readAhead) unmarkQueued(nid uint64) {
	a.mu.Lock()
	delete(a.queued, nid)
	a.mu.Unlock()
}

func (a *readAhead) fileLoop(f *FS) {
	defer a.workers.Done()
	for {
		select {
		case <-a.done:
			return
		case nid := <-a.files:
			f.prefetchObject(nid)
			a.pending.Done()
		}
	}
}

// prefetchObject opens the object of external file nid and, as its open
// will, checks its digest (which also leaves the content in the page
// cache; unchecked, or to be checked block by block as it is read, the
// kernel is asked to read the object in), then keeps it, registered for
// passthrough where it may be, for the open to take. Failures are
// silent: the open tries again and reports them.
func (f *FS) prefetchObject(nid uint64) {
	defer func() { recover() }()
	debug.SetPanicOnFault(true)
	select {
	case <-f.ahead.done:
		return
	default:
	}
	in, err := f.img.Inode(nid)
	if err != nil || !in.IsRegular() || in.Size > aheadMaxSize {
		return
	}
	if external, err := f.view.External(&in); err != nil || !external {
		return
	}
	obj, state, err := f.checkedObject(cancelContext(f.ahead.done), &in, !f.passthrough.Load())
	if err != nil {
		return
	}
	if !obj.Checked {
		unix.Fadvise(int(obj.File.Fd()), 0, 0, unix.FADV_WILLNEED)
	}
	if o := f.backObject(nid, obj, state); !f.keepAhead(nid, o) {
		f.dropObject(o)
	}
}
