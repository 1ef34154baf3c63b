package fusefs

import (
	"runtime/debug"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// OpenDir has nothing to open: listings are read by position (readDir). Where the kernel supports it, ENOSYS puts the connection in
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

// readDir lists a directory from the position the kernel hands back (the
// Next of the last entry it got: composefs.FS.ReadDirAt), so listings keep
// no state and their offsets stay valid for good.
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
	added := 0
	// The regular files listed with their lookups answered: their OPENs
	// will show the order a walker reads them in (ahead.go).
	var files []dirFile
	if plus && f.aheadWanted() {
		buf := f.listedBufs.Get().(*[]dirFile)
		defer f.listedBufs.Put(buf)
		files = (*buf)[:0]
		defer func() { *buf = files[:0] }()
	}
	err := f.view.ReadDirAt(&dir, in.Offset, func(d *erofs.Dirent) bool {
		// The name is copied into the reply right away: it may alias
		// the image instead of being allocated.
		de := fuse.DirEntry{Name: unsafe.String(&d.Name[0], len(d.Name)), Ino: d.Nid, Mode: erofs.FileTypeMode(d.Type), Off: d.Next}
		if !plus {
			if !out.AddDirEntry(de) {
				return false
			}
			added++
			return true
		}
		eo := out.AddDirLookupEntry(de)
		if eo == nil {
			return false
		}
		added++
		if !erofs.IsDotOrDotDot(d.Name) {
			f.direntPlus(d.Nid, eo)
		}
		if files != nil && d.Type == erofs.FTReg {
			files = append(files, dirFile{d.Nid, string(d.Name)})
		}
		return true
	})
	f.noteListed(dir.Nid, files)
	if err != nil {
		// What came before the damage is listed; the next read,
		// starting at it, fails.
		if added > 0 {
			return fuse.OK
		}
		return f.fail(dir.Nid, "readdir", err)
	}
	return fuse.OK
}

// direntPlus answers the lookup of a listed entry. An entry a lookup would
// not find (a whiteout, damage) keeps node id 0, which tells the kernel to
// leave it to a LOOKUP of its own, and that one reports the error.
func (f *FS) direntPlus(nid uint64, out *fuse.EntryOut) {
	in, err := f.view.Found(nid)
	if err != nil {
		*out = fuse.EntryOut{}
		return
	}
	f.fillEntry(&in, out)
}
