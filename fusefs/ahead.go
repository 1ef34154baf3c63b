package fusefs

import (
	"bytes"
	"runtime/debug"
	"sync"

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
// Nothing is read ahead for random lookups, and never more than
// aheadWindow files past the last one asked for.

const (
	// aheadWindow is how many files past the current lookup are read ahead.
	aheadWindow = 32
	// aheadWorkers is how many objects are opened and hashed at once:
	// enough to keep a disk's queue busy, few enough to leave CPU to the
	// program being served.
	aheadWorkers = 4
	// aheadDirs bounds the directories whose lookup order is followed.
	aheadDirs = 64
	// aheadQueued bounds the memory of files already read ahead.
	aheadQueued = 1 << 16
)

// dirStream is what is known of the lookups in one directory.
type dirStream struct {
	last string // the name looked up last
	// next is the name at which the next scan is due; "" once the
	// directory's end has been queued. scanning: a scan is in flight.
	next     string
	started  bool
	scanning bool
}

// scanJob asks for the files after name in directory dir to be read ahead.
type scanJob struct {
	dir  uint64
	name string
}

type readAhead struct {
	once  sync.Once
	scans chan scanJob
	files chan uint64
	done  chan struct{}

	mu     sync.Mutex
	dirs   map[uint64]*dirStream
	queued map[uint64]struct{}
}

func (a *readAhead) start(f *FS) {
	a.once.Do(func() {
		a.scans = make(chan scanJob, aheadDirs)
		a.files = make(chan uint64, aheadWindow*aheadWorkers)
		a.done = make(chan struct{})
		a.dirs = make(map[uint64]*dirStream)
		a.queued = make(map[uint64]struct{})
		go a.scanLoop(f)
		for range aheadWorkers {
			go a.fileLoop(f)
		}
	})
}

// stop ends the background work (at unmount).
func (a *readAhead) stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done != nil {
		select {
		case <-a.done:
		default:
			close(a.done)
		}
	}
}

// noteLookup follows the order of lookups of regular files in directory
// dir and starts reading ahead once two of them move forward by name.
func (f *FS) noteLookup(dir uint64, name string) {
	if f.cfg.Store == nil || f.server == nil {
		return
	}
	a := &f.ahead
	a.start(f)
	a.mu.Lock()
	s := a.dirs[dir]
	if s == nil {
		if len(a.dirs) >= aheadDirs {
			clear(a.dirs)
		}
		a.dirs[dir] = &dirStream{last: name}
		a.mu.Unlock()
		return
	}
	forward := name > s.last
	s.last = name
	if !forward {
		// Going back or jumping around: not a scan of the directory.
		s.started, s.next = false, ""
		a.mu.Unlock()
		return
	}
	due := !s.scanning && (!s.started || s.next != "" && name >= s.next)
	if due {
		s.started, s.scanning = true, true
	}
	a.mu.Unlock()
	if !due {
		return
	}
	select {
	case a.scans <- scanJob{dir, name}:
	default:
		a.mu.Lock()
		s.scanning = false
		a.mu.Unlock()
	}
}

func (a *readAhead) scanLoop(f *FS) {
	for {
		select {
		case <-a.done:
			return
		case job := <-a.scans:
			next := f.scanAhead(job.dir, job.name)
			a.mu.Lock()
			if s := a.dirs[job.dir]; s != nil {
				s.scanning, s.next = false, next
			}
			a.mu.Unlock()
		}
	}
}

// scanAhead queues the next aheadWindow regular files after name in
// directory dir and returns the name at which the next scan is due ("" at
// the directory's end). Damage just ends the scan: the requests that need
// those parts will report it.
func (f *FS) scanAhead(dirNid uint64, name string) (next string) {
	defer func() {
		if recover() != nil {
			next = ""
		}
	}()
	debug.SetPanicOnFault(true)
	dir, err := f.img.Inode(dirNid)
	if err != nil || !dir.IsDir() {
		return ""
	}
	var blk dirBlock
	b, i, err := findAfter(f.img, &dir, name, &blk)
	if err != nil {
		return ""
	}
	a := &f.ahead
	seen := 0
	for ; ; b, i = b+1, 0 {
		more, err := blk.load(f.img, &dir, b)
		if err != nil || !more {
			return ""
		}
		for ; i < blk.count; i++ {
			ename, nid, ft, err := blk.entry(i)
			if err != nil {
				return ""
			}
			if ft != erofs.FTReg {
				continue
			}
			seen++
			if seen == aheadWindow/2 {
				next = string(ename)
			}
			if seen > aheadWindow {
				return next
			}
			if !a.markQueued(nid) {
				continue
			}
			select {
			case a.files <- nid:
			default:
				// The workers are behind: scan again from here when
				// the lookups get here.
				a.unmarkQueued(nid)
				return string(ename)
			}
		}
	}
}

// findAfter positions blk at the first entry of dir whose name sorts after
// name: the block is found by binary search on the blocks' first names, as
// a lookup does.
func findAfter(img *erofs.Image, dir *erofs.Inode, name string, blk *dirBlock) (uint64, int, error) {
	nblocks := (dir.Size + erofs.BlockSize - 1) / erofs.BlockSize
	key := []byte(name)
	lo, hi := uint64(0), nblocks // the answer block lies in [lo, hi)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if _, err := blk.load(img, dir, mid); err != nil {
			return 0, 0, err
		}
		first, _, _, err := blk.entry(0)
		if err != nil {
			return 0, 0, err
		}
		if bytes.Compare(first, key) <= 0 {
			lo = mid
		} else {
			hi = mid
		}
	}
	more, err := blk.load(img, dir, lo)
	if err != nil || !more {
		return nblocks, 0, err
	}
	for i := 0; i < blk.count; i++ {
		ename, _, _, err := blk.entry(i)
		if err != nil {
			return 0, 0, err
		}
		if bytes.Compare(ename, key) > 0 {
			return lo, i, nil
		}
	}
	return lo + 1, 0, nil
}

func (a *readAhead) markQueued(nid uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.queued[nid]; ok {
		return false
	}
	if len(a.queued) >= aheadQueued {
		clear(a.queued)
	}
	a.queued[nid] = struct{}{}
	return true
}

func (a *readAhead) unmarkQueued(nid uint64) {
	a.mu.Lock()
	delete(a.queued, nid)
	a.mu.Unlock()
}

func (a *readAhead) fileLoop(f *FS) {
	for {
		select {
		case <-a.done:
			return
		case nid := <-a.files:
			f.prefetchObject(nid)
		}
	}
}

// prefetchObject opens the object of external file nid and, as its open
// will, checks its digest (which leaves the digest in the verity cache and
// the content in the page cache); with verity off it asks the kernel to
// read the object in. Failures are silent: the open reports them.
func (f *FS) prefetchObject(nid uint64) {
	defer func() { recover() }()
	debug.SetPanicOnFault(true)
	in, err := f.img.Inode(nid)
	if err != nil || !in.IsRegular() {
		return
	}
	alg, digest, external, err := f.img.Metacopy(&in)
	if err != nil || !external {
		return
	}
	payload, ok, err := f.img.Redirect(&in)
	if err != nil || !ok {
		return
	}
	obj, err := f.cfg.Store.Open(payload)
	if err != nil {
		return
	}
	defer obj.Close()
	if digest != nil && f.cfg.Verity != VerityOff {
		f.cfg.Cache.Verify(obj, alg, digest)
		return
	}
	unix.Fadvise(int(obj.Fd()), 0, 0, unix.FADV_WILLNEED)
}
