package fusefs

import (
	"context"
	"errors"
	"io"
	"math"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
)

// fhObject marks an open external file: its content comes from the object
// held in FS.open under its nid. Files whose data sits in the image have
// file handle 0.
const fhObject = 1

// Open refuses writing, and for an external file opens and (per the verity
// policy) checks its object before anything is read (or, a large object
// whose block sums are kept, sets it to be checked as it is read). The object is handed
// to the kernel for passthrough where it can be; otherwise reads come here.
// Contents never change, so the kernel keeps its page cache across opens.
func (f *FS) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	debug.SetPanicOnFault(true)
	if in.Flags&syscall.O_ACCMODE != syscall.O_RDONLY || in.Flags&syscall.O_TRUNC != 0 {
		return fuse.EROFS
	}
	if f.noOpen {
		// From now on the kernel opens files itself, keeping their
		// page cache; the first READ opens the object (readObject).
		return fuse.ENOSYS
	}
	ino, st := f.inode(in.NodeId)
	if !st.Ok() {
		return st
	}
	if !ino.IsRegular() {
		return fuse.EINVAL
	}
	external, err := f.view.External(&ino)
	if err != nil {
		return f.fail(ino.Nid, "metacopy", err)
	}
	if !external {
		out.Fh, out.OpenFlags = 0, fuse.FOPEN_KEEP_CACHE
		f.storeSmall(in.NodeId, &ino)
		return fuse.OK
	}
	o, _, st := f.openObject(cancelContext(cancel), &ino, true)
	if !st.Ok() {
		return st
	}
	out.Fh = fhObject
	if o.backing != 0 {
		out.OpenFlags, out.BackingID = fuse.FOPEN_PASSTHROUGH, o.backing
	} else {
		out.OpenFlags = fuse.FOPEN_KEEP_CACHE
	}
	return fuse.OK
}

// storeMax is the largest file whose data in the image is pushed into the
// kernel's page cache at open.
const storeMax = 64 << 10

// storeSmall hands the kernel the content of a small file whose data sits
// in the image (composefs inlines files of up to 64 bytes), before the open
// is answered: the read that follows is then served from the page cache,
// which saves it a round trip. Best effort: on any failure the kernel just
// sends READ. Once per inode the kernel knows (FS.stored).
func (f *FS) storeSmall(nodeID uint64, in *erofs.Inode) {
	if f.conn == nil || in.Size == 0 || in.Size > storeMax {
		return
	}
	f.objMu.Lock()
	_, done := f.stored[in.Nid]
	f.stored[in.Nid] = struct{}{}
	f.objMu.Unlock()
	if done {
		return
	}
	pushed := false
	defer func() {
		if !pushed {
			// Not in the kernel's cache: the next open tries again.
			f.objMu.Lock()
			delete(f.stored, in.Nid)
			f.objMu.Unlock()
		}
	}()
	var small [128]byte
	buf := small[:]
	if in.Size > uint64(len(small)) {
		buf = make([]byte, in.Size)
	}
	n, err := f.img.ReadAt(in, buf[:in.Size], 0)
	if err != nil && err != io.EOF || uint64(n) != in.Size {
		return
	}
	pushed = f.conn.InodeNotifyStoreCache(nodeID, 0, buf[:n]).Ok()
}

// objectFile opens the object of external file in and checks it as the
// verity policy says (composefs.FS.OpenObject), and returns it with the
// state that check covers (checkedObject). Failures are logged, naming the
// file and the object; a missing object is ENOENT, as overlayfs answers for
// a missing data-only lower file. Out of descriptors, it lets go of idle
// objects and tries once more.
func (f *FS) objectFile(ctx context.Context, in *erofs.Inode, byBlocks bool) (composefs.Object, objectState, fuse.Status) {
	// Checking a large object takes long, as may fetching any.
	if f.fetches || in.Size >= longCheckSize {
		f.aboutToWait()
	}
	obj, state, err := f.checkedObject(ctx, in, byBlocks)
	if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && f.shedIdle() {
		obj, state, err = f.checkedObject(ctx, in, byBlocks)
	}
	if err != nil {
		if ctx.Err() != nil {
			return composefs.Object{}, objectState{}, fuse.EINTR
		}
		// Logged even when the object is missing: unlike a missing
		// name, that is a broken image or store.
		f.cfg.Logger.Error("open failed", "path", f.pathOf(in.Nid), "err", err)
		return composefs.Object{}, objectState{}, fuse.Status(composefs.Errno(err))
	}
	return obj, state, fuse.OK
}

// longCheckSize is the size from which an object's open and check waits
// long enough for the requests behind it to want another reader: 256 KiB
// is a quarter to a half of a millisecond to hash here, more from a cold
// disk.
const longCheckSize = 256 << 10

// errChangedSinceCheck is an object rewritten while a file held it open.
var errChangedSinceCheck = errors.New("object changed since it was checked at the file's open")

// checkedObject opens and checks the object of external file in, and
// returns the state later opens compare with to know it unchanged
// (holdObject): for an object checked, the state its check covers
// (composefs.Object.State), so that a rewrite that came just after the
// hash shows as a change; for one not checked (verity off, or no digest),
// its state now.
//
// With byBlocks, for an object the kernel will not read itself (no
// passthrough), a large object may come back to be checked block by block
// as it is read (Blocks set, composefs.FS.OpenObjectToRead): every read of
// it must then go through readChecked. Each read checks the very bytes it
// serves, so its state only says when to look for its sums again.
func (f *FS) checkedObject(ctx context.Context, in *erofs.Inode, byBlocks bool) (composefs.Object, objectState, error) {
	open := f.view.OpenObject
	if byBlocks {
		open = f.view.OpenObjectToRead
	}
	obj, err := open(ctx, in)
	if err != nil {
		return composefs.Object{}, objectState{}, err
	}
	if obj.Checked || obj.Blocks != nil {
		return obj, objectState{State: obj.State}, nil
	}
	return obj, stateOf(int(obj.File.Fd())), nil
}

// cancelContext is a context whose Done is a request's cancel channel
// (closed when the kernel interrupts the request): a cheap one, with no
// goroutine, since every open makes one.
type cancelContext <-chan struct{}

func (c cancelContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c cancelContext) Done() <-chan struct{}       { return c }
func (c cancelContext) Value(any) any               { return nil }
func (c cancelContext) Err() error {
	if c == nil {
		return nil
	}
	select {
	case <-c:
		return context.Canceled
	default:
		return nil
	}
}

// Read serves an external file from its object (when passthrough is not in
// use), and any other file from the image.
func (f *FS) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	debug.SetPanicOnFault(true)
	dest := buf[:min(len(buf), int(in.Size))]
	if in.Fh == fhObject {
		o, checked := f.heldChecked(f.nidOf(in.NodeId))
		if o == nil {
			return nil, fuse.EBADF
		}
		if o.blocks != nil {
			return f.readChecked(o, in.Offset, dest)
		}
		// Checked whole at its open: served only while unchanged since
		// (one fstat), as a READ with no OPEN serves (holdObject). An
		// object written in place under an open file is refused, not
		// spliced unchecked; its next open checks it anew.
		if now := stateOf(o.fd); now.statErr || now != checked {
			return nil, f.fail(o.nid, "read", errChangedSinceCheck)
		}
		// A reference to the object's bytes, which go-fuse splices to
		// the kernel without copying them through our memory.
		return fuse.ReadResultFd(uintptr(o.fd), int64(in.Offset), len(dest)), fuse.OK
	}
	ino, st := f.inode(in.NodeId)
	if !st.Ok() {
		return nil, st
	}
	if f.noOpen {
		external, err := f.view.External(&ino)
		if err != nil {
			return nil, f.fail(ino.Nid, "metacopy", err)
		}
		if external {
			return f.readObject(cancel, &ino, in.Offset, dest)
		}
	}
	n, err := f.img.ReadAt(&ino, dest, int64(in.Offset))
	if err != nil && err != io.EOF {
		return nil, f.fail(ino.Nid, "read", err)
	}
	return fuse.ReadResultData(dest[:n]), fuse.OK
}

// readObject serves a READ of external file in with no OPEN before it
// (no Config.Passthrough): its object is held for the read, opened and checked
// first if no read before has, and stays idle after it until the kernel
// forgets the inode. The bytes are copied here rather than spliced from
// the object, since it may be let go of once this returns.
func (f *FS) readObject(cancel <-chan struct{}, in *erofs.Inode, off uint64, dest []byte) (fuse.ReadResult, fuse.Status) {
	if st, failed := f.failedRecently(in.Nid); failed {
		return nil, st
	}
	o, checked, st := f.openObject(cancelContext(cancel), in, off == 0)
	if !st.Ok() {
		if st != fuse.EINTR {
			f.noteFailure(in.Nid, st)
		}
		return nil, st
	}
	defer f.releaseObject(in.Nid)
	if o.blocks != nil {
		return f.readChecked(o, off, dest)
	}
	n, err := preadFull(o.fd, checked.within(dest, off), int64(off))
	if err != nil {
		return nil, f.fail(in.Nid, "read", err)
	}
	return fuse.ReadResultData(dest[:n]), fuse.OK
}

// within is the part of dest, to be read at off, that a file in state s
// holds: the kernel asks for whole pages, and a read past the end would
// cost a second pread, to learn that it is the end.
func (s objectState) within(dest []byte, off uint64) []byte {
	size := s.Size
	if s.statErr || size < 0 {
		return dest
	}
	if off >= uint64(size) {
		return dest[:0]
	}
	return dest[:min(uint64(len(dest)), uint64(size)-off)]
}

// readChecked serves a READ of o, an object checked block by block as it
// is read: the bytes are read into dest and served only once the blocks
// they come from match their sums. A READ that meets a block that does not
// is EIO, logged; the blocks that match are served, as the kernel's
// fs-verity serves the pages that pass.
func (f *FS) readChecked(o *openObject, off uint64, dest []byte) (fuse.ReadResult, fuse.Status) {
	if off > math.MaxInt64 {
		return fuse.ReadResultData(nil), fuse.OK
	}
	n, err := o.blocks.ReadAt(fdReader(o.fd), dest, int64(off))
	if err != nil && err != io.EOF {
		return nil, f.fail(o.nid, "read", err)
	}
	return fuse.ReadResultData(dest[:n]), fuse.OK
}

// fdReader reads a bare descriptor as io.ReaderAt (an *os.File would cost
// an allocation and a finalizer per READ).
type fdReader int

func (fd fdReader) ReadAt(p []byte, off int64) (int, error) {
	n, err := preadFull(int(fd), p, off)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}

// Release lets go of the object of an external file.
func (f *FS) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	if in.Fh == fhObject {
		f.releaseObject(f.nidOf(in.NodeId))
	}
}

// Flush has nothing to do; ENOSYS makes the kernel stop sending FLUSH on
// every close.
func (f *FS) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

// Fsync has nothing to do; ENOSYS makes the kernel answer it itself.
func (f *FS) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return fuse.ENOSYS
}

// preadFull reads dest from fd at off, short only at the end of the file.
func preadFull(fd int, dest []byte, off int64) (int, error) {
	n := 0
	for n < len(dest) {
		m, err := unix.Pread(fd, dest[n:], off+int64(n))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return n, nil
}

// readFailure is how and when the object of a file failed at a READ.
type readFailure struct {
	st fuse.Status
	at time.Time
}

// failAgainFor is how long a failed READ's answer stands for the next of
// the same file. One read(2) of a file whose object is missing or
// tampered sends two READs, the kernel's read-ahead and then the read
// itself: without it, the second would search, fetch or hash the object
// again (four more tries from a URL store) and log the failure twice.
// Short, so that a user who mends the store and reads again is served.
const failAgainFor = time.Second

// failedRecently answers a READ of file nid whose object failed within
// failAgainFor, as it failed then.
func (f *FS) failedRecently(nid uint64) (fuse.Status, bool) {
	f.failMu.Lock()
	defer f.failMu.Unlock()
	r, ok := f.failed[nid]
	if !ok {
		return fuse.OK, false
	}
	if time.Since(r.at) >= failAgainFor {
		delete(f.failed, nid)
		return fuse.OK, false
	}
	return r.st, true
}

// failedMax bounds the failures remembered: a store gone bad under a
// walk fails thousands of files a second, and past this many the rest
// just try again.
const failedMax = 256

// noteFailure remembers that file nid's object failed with st, when st
// says something of the object itself: missing (ENOENT) or not what its
// digest says, unreadable or unfetchable (EIO). A shortage of descriptors
// or memory says nothing of the file, and the next READ tries again.
func (f *FS) noteFailure(nid uint64, st fuse.Status) {
	if st != fuse.ENOENT && st != fuse.EIO {
		return
	}
	now := time.Now()
	f.failMu.Lock()
	defer f.failMu.Unlock()
	if len(f.failed) >= failedMax {
		for n, r := range f.failed {
			if now.Sub(r.at) >= failAgainFor {
				delete(f.failed, n)
			}
		}
		if len(f.failed) >= failedMax {
			return
		}
	}
	f.failed[nid] = readFailure{st: st, at: now}
}
