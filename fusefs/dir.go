package fusefs

import (
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// OpenDir has nothing to open: listings are read by position (see
// dirblock.go). Where the kernel supports it, ENOSYS puts the connection in
// no-opendir mode: no OPENDIR or RELEASEDIR round trips at all, and the
// kernel then caches listings as FOPEN_CACHE_DIR|FOPEN_KEEP_CACHE asks.
func (f *FS) OpenDir(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	if f.noOpendir {
		return fuse.ENOSYS
	}
	out.OpenFlags = fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE
	return fuse.OK
}

func (f *FS) ReleaseDir(in *fuse.ReleaseIn) {}

// ReadDir lists a directory from the position in.Offset, in on-disk order.
func (f *FS) ReadDir(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.readDir(in, out, false)
}

// ReadDirPlus lists a directory with each entry's lookup answered too, so
// that a walk needs no LOOKUP or GETATTR of its own.
func (f *FS) ReadDirPlus(cancel <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	return f.readDir(in, out, true)
}

// dirBlocks keeps the 4 KiB block buffers of listings in progress.
var dirBlocks = sync.Pool{New: func() any { return new(dirBlock) }}

func (f *FS) readDir(in *fuse.ReadIn, out *fuse.DirEntryList, plus bool) fuse.Status {
	debug.SetPanicOnFault(true)
	dir, st := f.inode(in.NodeId)
	if !st.Ok() {
		return st
	}
	if !dir.IsDir() {
		return fuse.ENOTDIR
	}
	f.recent.note(dir.Nid)
	// overlayfs reads the root through its merging path, which drops
	// whiteouts from the listing; other directories list them (a lookup
	// of one still fails).
	isRoot := dir.Nid == f.rootNid
	added := 0
	blk := dirBlocks.Get().(*dirBlock)
	defer dirBlocks.Put(blk)
	for b, i := in.Offset>>cookieBits, int(in.Offset&cookieMask); ; b, i = b+1, 0 {
		more, err := blk.load(f.img, &dir, b)
		if err == nil && !more {
			return fuse.OK
		}
		for ; err == nil && i < blk.count; i++ {
			var name []byte
			var nid uint64
			var ft uint8
			name, nid, ft, err = blk.entry(i)
			if err != nil {
				break
			}
			if isRoot && ft == erofs.FTChr && f.isWhiteoutNid(nid) {
				continue
			}
			// The name is copied into the reply right away: it may
			// alias the block instead of being allocated.
			de := fuse.DirEntry{Name: unsafe.String(&name[0], len(name)), Ino: nid, Mode: erofs.FileTypeMode(ft), Off: b<<cookieBits | uint64(i+1)}
			if !plus {
				if !out.AddDirEntry(de) {
					return fuse.OK
				}
				added++
				continue
			}
			eo := out.AddDirLookupEntry(de)
			if eo == nil {
				return fuse.OK
			}
			added++
			if !isDotOrDotDot(name) {
				f.direntPlus(nid, eo)
			}
		}
		if err != nil {
			// What came before the damage is listed; the next read,
			// starting at it, fails.
			if added > 0 {
				return fuse.OK
			}
			return f.fail(dir.Nid, "readdir", err)
		}
	}
}

// direntPlus answers the lookup of a listed entry. An entry a lookup would
// not find (a whiteout, damage) keeps node id 0, which tells the kernel to
// leave it to a LOOKUP of its own, and that one reports the error.
func (f *FS) direntPlus(nid uint64, out *fuse.EntryOut) {
	if nid == 0 {
		return
	}
	in, err := f.img.Inode(nid)
	if err != nil || f.fillEntry(nid, &in, out) != nil {
		*out = fuse.EntryOut{}
	}
}

// isWhiteoutNid tells whether the root's entry at nid is a whiteout, which
// overlayfs leaves out of the root's listing. An inode that cannot be
// decoded stays listed; looking it up reports the damage.
func (f *FS) isWhiteoutNid(nid uint64) bool {
	in, err := f.img.Inode(nid)
	return err == nil && isWhiteout(&in)
}

// FsyncDir has nothing to do; ENOSYS makes the kernel stop asking.
func (f *FS) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return fuse.ENOSYS
}
