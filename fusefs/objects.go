package fusefs

import (
	"context"
	"os"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// openObject is the object of an external file the kernel holds open,
// shared by all its opens: the kernel allows one backing file per inode.
type openObject struct {
	file    *os.File
	backing int32 // passthrough backing id; 0 when reads come to us
	refs    int
}

// openObject returns the object of external file in, opened and checked at
// the first open and held until the last release.
func (f *FS) openObject(ctx context.Context, in *erofs.Inode) (*openObject, fuse.Status) {
	f.objMu.Lock()
	if o := f.open[in.Nid]; o != nil {
		o.refs++
		f.objMu.Unlock()
		return o, fuse.OK
	}
	f.objMu.Unlock()

	// Read ahead of this open, or opened and hashed here (not under the
	// lock: that can take long).
	o := f.ahead.take(in.Nid)
	if o == nil {
		file, st := f.objectFile(ctx, in)
		if !st.Ok() {
			return nil, st
		}
		o = f.backObject(file)
	}

	f.objMu.Lock()
	defer f.objMu.Unlock()
	if held := f.open[in.Nid]; held != nil {
		// A concurrent open got there first.
		held.refs++
		f.dropObject(o)
		return held, fuse.OK
	}
	o.refs = 1
	f.open[in.Nid] = o
	return o, fuse.OK
}

// backObject wraps a checked object, registered as a passthrough backing
// file where the kernel takes one.
func (f *FS) backObject(file *os.File) *openObject {
	o := &openObject{file: file}
	if f.conn != nil && f.passthrough.Load() {
		id, errno := f.conn.RegisterBackingFd(&fuse.BackingMap{Fd: int32(file.Fd())})
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
	o.file.Close()
}

// heldObject is the object of the open external file at nid.
func (f *FS) heldObject(nid uint64) *openObject {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	return f.open[nid]
}

// releaseObject drops one open of the external file at nid.
func (f *FS) releaseObject(nid uint64) {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	o := f.open[nid]
	if o == nil {
		return
	}
	if o.refs--; o.refs > 0 {
		return
	}
	delete(f.open, nid)
	f.dropObject(o)
}
