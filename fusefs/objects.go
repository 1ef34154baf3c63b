package fusefs

import (
	"context"
	"os"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/erofs"
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
// FORGET of the node. A cap bounds what is held if FORGETs are slow to
// come: idleBackedMax and idleFilesMax.
type openObject struct {
	nid uint64
	// file is the object as we read it, nil once registered as a
	// passthrough backing file: the kernel then holds the file and
	// serves reads itself, and an idle object costs no descriptor.
	file    *os.File
	backing int32 // passthrough backing id; 0 when reads come to us
	refs    int   // opens the kernel holds

	// The idle list, most recently released first.
	newer, older *openObject
}

// Bounds on idle objects. A backed object costs the kernel a struct file
// and nothing here; one we read ourselves costs a descriptor.
const idleBackedMax = 1 << 16

// idleFilesMax leaves three quarters of the descriptors we may open to
// everything else (opens in flight, read-ahead, the image).
var idleFilesMax = func() int {
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) != nil {
		return 256
	}
	return int(min(max(lim.Cur/4, 64), 1<<14))
}()

// idleObjects is the list of objects no open holds, with their count.
type idleObjects struct {
	newest, oldest *openObject
	backed, files  int
}

func (l *idleObjects) push(o *openObject) {
	o.newer, o.older = nil, l.newest
	if l.newest != nil {
		l.newest.newer = o
	} else {
		l.oldest = o
	}
	l.newest = o
	l.count(o, 1)
}

func (l *idleObjects) remove(o *openObject) {
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
	l.count(o, -1)
}

func (l *idleObjects) count(o *openObject, n int) {
	if o.file != nil {
		l.files += n
	} else {
		l.backed += n
	}
}

func (l *idleObjects) over() bool {
	return l.backed > idleBackedMax || l.files > idleFilesMax
}

// openObject returns the object of external file in: the one held (open or
// idle) if there is one, else opened and checked now.
func (f *FS) openObject(ctx context.Context, in *erofs.Inode) (*openObject, fuse.Status) {
	if o := f.holdObject(in.Nid); o != nil {
		return o, fuse.OK
	}
	// Read ahead of this open, or opened and hashed here (not under the
	// lock: that can take long).
	o := f.ahead.take(in.Nid)
	if o == nil {
		file, st := f.objectFile(ctx, in)
		if !st.Ok() {
			return nil, st
		}
		o = f.backObject(in.Nid, file)
	}

	f.objMu.Lock()
	if held := f.open[in.Nid]; held != nil {
		// A concurrent open got there first.
		f.holdLocked(held)
		f.objMu.Unlock()
		f.dropObject(o)
		return held, fuse.OK
	}
	o.refs = 1
	f.open[in.Nid] = o
	f.objMu.Unlock()
	return o, fuse.OK
}

// holdObject takes one more open of the object held for nid, if any.
func (f *FS) holdObject(nid uint64) *openObject {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	o := f.open[nid]
	if o != nil {
		f.holdLocked(o)
	}
	return o
}

func (f *FS) holdLocked(o *openObject) {
	if o.refs == 0 {
		f.idle.remove(o)
	}
	o.refs++
}

// backObject wraps the checked object of nid, registered as a passthrough
// backing file where the kernel takes one.
func (f *FS) backObject(nid uint64, file *os.File) *openObject {
	o := &openObject{nid: nid, file: file}
	if f.conn != nil && f.passthrough.Load() {
		id, errno := f.conn.RegisterBackingFd(&fuse.BackingMap{Fd: int32(file.Fd())})
		if errno != 0 {
			// Not privileged, or no passthrough here: serve reads.
			f.passthrough.Store(false)
		} else {
			// The kernel holds its own reference now.
			o.backing = id
			file.Close()
			o.file = nil
		}
	}
	return o
}

// dropObject lets go of an object no open holds.
func (f *FS) dropObject(o *openObject) {
	if o.backing != 0 {
		f.conn.UnregisterBackingFd(o.backing)
	}
	if o.file != nil {
		o.file.Close()
	}
}

// heldObject is the object of the open external file at nid.
func (f *FS) heldObject(nid uint64) *openObject {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	return f.open[nid]
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
	f.idle.push(o)
	var evicted []*openObject
	for f.idle.over() {
		old := f.idle.oldest
		f.idle.remove(old)
		delete(f.open, old.nid)
		evicted = append(evicted, old)
	}
	f.objMu.Unlock()
	for _, old := range evicted {
		f.dropObject(old)
	}
}

// forgetObject lets go of nid's idle object: the kernel has forgotten the
// inode, so no open of it is left and the next one starts with a LOOKUP.
func (f *FS) forgetObject(nid uint64) {
	f.objMu.Lock()
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
	f.idle = idleObjects{}
	f.objMu.Unlock()
	for _, o := range all {
		f.dropObject(o)
	}
}
