package fusefs

import (
	"context"
	"os"
	"strconv"
	"strings"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/verity"
)

// openObject is the object of an external file, opened and checked, shared
// by all opens of the file: the kernel allows one backing file per inode.
//
// It outlives its last RELEASE, idle, until the kernel forgets the inode:
// a program opening the file again (a build reading a header, a second
// `cat`) gets it without an open, a hash lookup or a registration, which is
// most of what an OPEN costs us. The kernel's overlayfs pins an object the
// same way, through the lower dentry its cached inode holds, and lets go
// of it when memory pressure evicts that inode; for us the eviction is the
// FORGET of the node. A cap (FS.idleMax) bounds what is held if FORGETs
// are slow to come: past it, a released object is let go of at once. An
// idle object is taken again only if it is unchanged since it was checked
// (the same verity.State: device, inode, size, mode, mtime and ctime, one
// fstat): an object rewritten in place is opened and checked anew.
type openObject struct {
	nid uint64
	// fd is the object's descriptor, a bare one: an *os.File costs some
	// 250 bytes more, 5 MB over 20,000 idle objects.
	fd      int
	owner   *os.File    // owns fd, when it could not be taken bare
	checked objectState // the file as it was when opened and checked
	backing int32       // passthrough backing id; 0 when reads come to us
	refs    int         // opens the kernel holds
	// blocks, for an object checked as it is read rather than whole
	// (composefs.Object.Blocks), is what every read of it goes through.
	// Set once, before the object is shared.
	blocks *composefs.ObjectBlocks

	// The idle list, most recently released first.
	newer, older *openObject
}

// objectState is what changes when a file is written or replaced; statErr
// is a state that matches none, the fstat having failed.
type objectState struct {
	verity.State
	statErr bool
}

func stateOf(fd int) objectState {
	st, err := verity.StateOfFd(fd)
	if err != nil {
		return objectState{statErr: true}
	}
	return objectState{State: st}
}

// defaultIdleMax is the cap on idle objects: each holds a descriptor, and
// an eighth of the descriptors we may open (at least 256, where the limit
// leaves room for 64 idle objects beside them) is left to everything else: opens in flight, read-ahead, the image. Should held
// objects need more, an open that runs out lets go of idle ones
// (shedIdle). Half the limit, as before, made a second find | xargs cat
// of 15,554 objects open 5,497 of them again under the 20,000 a VM gave
// root. As root, composefs-fuse raises its limit first (RaiseFileLimit).
func defaultIdleMax() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 256
	}
	reserve := max(lim.Cur/8, 256)
	if lim.Cur < reserve+64 {
		return 64
	}
	return int(min(lim.Cur-reserve, 1<<16))
}

// shedIdle lets go of the objects read ahead and not yet opened, and of
// the oldest eighth of the idle objects (at least 8), for an open that ran
// out of descriptors, and says whether it let go of any. The oldest, since
// this is a shortage of descriptors, not the cap (releaseObject): what was
// released last is the likeliest to be opened again soon.
func (f *FS) shedIdle() bool {
	ready := f.ahead.dropReady(f)
	f.objMu.Lock()
	n := max(f.idle.n/8, 8)
	var shed []*openObject
	for ; n > 0 && f.idle.oldest != nil; n-- {
		o := f.idle.oldest
		f.idle.remove(o)
		delete(f.open, o.nid)
		shed = append(shed, o)
	}
	f.objMu.Unlock()
	for _, o := range shed {
		f.dropObject(o)
	}
	return ready+len(shed) > 0
}

// RaiseFileLimit raises this process's limit on open descriptors as far
// as it may (the hard limit, or fs.nr_open with the privilege to go past
// it), for the idle objects an FS keeps: call it before New.
func RaiseFileLimit() {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = n
		}
	}
	if lim.Max < want && unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: want, Max: want}) == nil {
		return
	}
	if lim.Cur < lim.Max {
		unix.Setrlimit(unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
}

// idleObjects is the list of objects no open holds, with their count and
// the memory their block sums take.
type idleObjects struct {
	newest, oldest *openObject
	n              int
	sums           int64
}

// idleSumsMax bounds the memory of the block sums idle objects keep (64
// MiB: those of 8 GiB of large files). Past it, a block-checked object
// released goes, as any object past idleMax does: its next open reads its
// sums again.
const idleSumsMax = 64 << 20

// sumsOf is the memory o's block sums take.
func sumsOf(o *openObject) int64 {
	if o.blocks == nil {
		return 0
	}
	return o.blocks.Len()
}

func (l *idleObjects) push(o *openObject) {
	l.sums += sumsOf(o)
	o.newer, o.older = nil, l.newest
	if l.newest != nil {
		l.newest.newer = o
	} else {
		l.oldest = o
	}
	l.newest = o
	l.n++
}

func (l *idleObjects) remove(o *openObject) {
	l.sums -= sumsOf(o)
	if o.newer != nil {
		o.newer.older = o.older
	} else {
		l.newest = o.older
	}
	if o.older != nil {
		o.older.newer = o.newer
	} else {
		l.oldest = o.newer
	}
	o.newer, o.older = nil, nil
	l.n--
}

// openObject returns the object of external file in: the one held (open or
// idle) if there is one and it is unchanged since it was checked, else
// opened and checked now. note says whether this is a new open of the file
// (not a later READ of one), for the read-ahead to follow. With the object
// comes the state it was checked in, as the open found it (o.checked is
// the lock's to read).
func (f *FS) openObject(ctx context.Context, in *erofs.Inode, note bool) (*openObject, objectState, fuse.Status) {
	if o, checked, changed := f.holdObject(in.Nid); o != nil {
		if note {
			// Followed by the read-ahead, which sends no scan for
			// it: one per warm open would wake a worker to find
			// nothing to do.
			f.noteOpen(in.Nid, true)
		}
		if !changed {
			return o, checked, fuse.OK
		}
		return f.recheckObject(ctx, in, o)
	}
	if note {
		f.noteOpen(in.Nid, false)
	}
	// Read ahead of this open, or opened and hashed here (not under the
	// lock: that can take long).
	o := f.ahead.take(in.Nid)
	if o != nil {
		// Checked when it was read ahead, maybe long before: an object
		// rewritten or truncated since is opened and checked anew, as
		// a held one is (holdObject).
		if now := stateOf(o.fd); now.statErr || now != o.checked {
			f.dropObject(o)
			o = nil
		}
	}
	if o == nil {
		obj, state, st := f.objectFile(ctx, in, !f.passthrough.Load())
		if !st.Ok() {
			return nil, objectState{}, st
		}
		o = f.backObject(in.Nid, obj, state)
	}
	o, checked := f.installObject(o)
	return o, checked, fuse.OK
}

// installObject makes o, just opened and checked, the held object of its
// file with one open, unless a concurrent open got there first; it returns
// the object held and the state it was checked in.
func (f *FS) installObject(o *openObject) (*openObject, objectState) {
	f.objMu.Lock()
	if held := f.open[o.nid]; held != nil {
		f.holdLocked(held)
		checked := held.checked
		f.objMu.Unlock()
		f.dropObject(o)
		return held, checked
	}
	o.refs = 1
	f.open[o.nid] = o
	checked := o.checked
	f.objMu.Unlock()
	return o, checked
}

// holdObject takes one more open of the object held for nid, if any, and
// tells the state it was checked in and whether its file changed since
// (one fstat).
func (f *FS) holdObject(nid uint64) (o *openObject, checked objectState, changed bool) {
	f.objMu.Lock()
	o = f.open[nid]
	if o == nil {
		f.objMu.Unlock()
		return nil, objectState{}, false
	}
	f.holdLocked(o)
	checked = o.checked
	f.objMu.Unlock()
	// The fstat outside the lock, which every OPEN takes: the open held
	// keeps the descriptor from closing meanwhile.
	now := stateOf(o.fd)
	return o, checked, now.statErr || now != checked
}

// recheckObject answers an open of in whose held object o (one open of it
// taken) changed since it was checked: the store's object is opened and
// checked anew. If that is o's own file (written to, or only its metadata
// touched) and it passes, o goes on serving, noted as checked as it is
// now; if it fails, so does the open. If it is another file and no other
// open holds o, it replaces o; while one does, the kernel keeps o as the
// inode's backing file, and the open fails rather than serve o unchecked.
func (f *FS) recheckObject(ctx context.Context, in *erofs.Inode, o *openObject) (*openObject, objectState, fuse.Status) {
	// Checked the way o was: a whole-checked o, which reads may splice
	// or the kernel read through passthrough, is never kept on the
	// word of block sums. A block-checked o may be kept whichever way
	// the object passes now, since its every read is checked.
	obj, now, st := f.objectFile(ctx, in, o.blocks != nil)
	if !st.Ok() {
		// Kept while other opens hold it, never taken idle again.
		f.objMu.Lock()
		o.refs--
		last := o.refs == 0
		if last {
			delete(f.open, in.Nid)
		}
		f.objMu.Unlock()
		if last {
			f.dropObject(o)
		}
		return nil, objectState{}, st
	}
	f.objMu.Lock()
	if !now.statErr && now.Ino == o.checked.Ino && now.Dev == o.checked.Dev {
		o.checked = now
		f.objMu.Unlock()
		obj.File.Close()
		return o, now, fuse.OK
	}
	if o.refs > 1 && o.blocks != nil {
		// Another file now, but o's every read is checked: it serves
		// until its last open is closed, and is replaced then.
		checked := o.checked
		f.objMu.Unlock()
		obj.File.Close()
		return o, checked, fuse.OK
	}
	if o.refs > 1 {
		o.refs--
		f.objMu.Unlock()
		obj.File.Close()
		f.cfg.Logger.Error("object changed while open, replaced in the store: refused until its last open is closed", "path", f.pathOf(in.Nid))
		return nil, objectState{}, fuse.EIO
	}
	o.refs = 0
	delete(f.open, in.Nid)
	f.objMu.Unlock()
	f.dropObject(o)
	o, checked := f.installObject(f.backObject(in.Nid, obj, now))
	return o, checked, fuse.OK
}

func (f *FS) holdLocked(o *openObject) {
	if o.refs == 0 {
		f.idle.remove(o)
	}
	o.refs++
}

// backObject wraps obj, the object of nid checked in state
// (checkedObject), registered as a passthrough backing file where the
// kernel takes one and the object needs no check as it is read.
func (f *FS) backObject(nid uint64, obj composefs.Object, state objectState) *openObject {
	blocks := obj.Blocks
	file := obj.File
	fd, err := unix.FcntlInt(file.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		// Out of descriptors: keep file, which owns its descriptor
		// (and would close it when collected).
		o := f.backFd(nid, int(file.Fd()), state, blocks)
		o.owner = file
		return o
	}
	file.Close()
	return f.backFd(nid, fd, state, blocks)
}

// backFd is backObject for a bare descriptor, which the object owns.
func (f *FS) backFd(nid uint64, fd int, state objectState, blocks *composefs.ObjectBlocks) *openObject {
	o := &openObject{nid: nid, fd: fd, checked: state, blocks: blocks}
	if f.conn != nil && f.passthrough.Load() && blocks == nil {
		id, errno := f.conn.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
		if errno != 0 {
			// Not privileged, or no passthrough here: serve reads.
			f.passthrough.Store(false)
		} else {
			o.backing = id
		}
	}
	return o
}

// dropObject lets go of an object no open holds.
func (f *FS) dropObject(o *openObject) {
	if o.backing != 0 {
		f.conn.UnregisterBackingFd(o.backing)
	}
	if o.owner != nil {
		o.owner.Close()
	} else {
		unix.Close(o.fd)
	}
}

// heldChecked is the object of the open external file at nid, with the
// state it was checked in.
func (f *FS) heldChecked(nid uint64) (*openObject, objectState) {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	o := f.open[nid]
	if o == nil {
		return nil, objectState{}
	}
	return o, o.checked
}

// releaseObject drops one open of the external file at nid; the object
// stays, idle, for the next open.
func (f *FS) releaseObject(nid uint64) {
	f.objMu.Lock()
	o := f.open[nid]
	if o == nil || o.refs == 0 {
		f.objMu.Unlock()
		return
	}
	if o.refs--; o.refs > 0 {
		f.objMu.Unlock()
		return
	}
	if f.idle.n >= f.idleMax || f.idle.sums+sumsOf(o) > idleSumsMax {
		// Full: this one goes, and those kept stay until the kernel
		// forgets their inode. Evicting the oldest instead would keep
		// nothing of a walk over more files than the cap, read again
		// in the same order (find | xargs cat, twice): every open
		// would find its object just evicted.
		delete(f.open, nid)
		f.objMu.Unlock()
		f.dropObject(o)
		return
	}
	f.idle.push(o)
	f.objMu.Unlock()
}

// forgetObject lets go of nid's idle object: the kernel has forgotten the
// inode, so no open of it is left and the next one starts with a LOOKUP.
func (f *FS) forgetObject(nid uint64) {
	f.objMu.Lock()
	delete(f.stored, nid)
	o := f.open[nid]
	if o == nil || o.refs > 0 {
		f.objMu.Unlock()
		return
	}
	f.idle.remove(o)
	delete(f.open, nid)
	f.objMu.Unlock()
	f.dropObject(o)
}

// dropObjects lets go of every object held: the mount is gone, and no
// RELEASE is to come.
func (f *FS) dropObjects() {
	f.objMu.Lock()
	all := make([]*openObject, 0, len(f.open))
	for _, o := range f.open {
		all = append(all, o)
	}
	clear(f.open)
	clear(f.stored)
	f.idle = idleObjects{}
	f.objMu.Unlock()
	for _, o := range all {
		f.dropObject(o)
	}
}
