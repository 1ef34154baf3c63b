package fusefs

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/erofs"
)

// dirNode is a directory of the image.
type dirNode struct {
	node
	// isRoot: overlayfs reads the root through its merging path, which
	// drops whiteouts from the listing; other directories list them (a
	// lookup of one still fails).
	isRoot bool
}

var (
	_ = (gofs.NodeLookuper)((*dirNode)(nil))
	_ = (gofs.NodeOpendirHandler)((*dirNode)(nil))
	_ = (gofs.FileReaddirenter)((*dirHandle)(nil))
	_ = (gofs.FileLookuper)((*dirHandle)(nil))
	_ = (gofs.FileSeekdirer)((*dirHandle)(nil))
	_ = (gofs.FileFsyncdirer)((*dirHandle)(nil))
)

// Lookup finds name by binary search in the directory, unless the node for
// it exists already (the bridge asks us even then).
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if ch := d.GetChild(name); ch != nil {
		if an, ok := ch.Operations().(attrNode); ok {
			an.fillAttr(&out.Attr)
			return ch, 0
		}
	}
	nid, _, err := d.fsys.img.Lookup(&d.ino, name)
	if err != nil {
		return nil, d.fsys.errno(&d.node, "lookup "+name, err)
	}
	return d.fsys.newChild(ctx, &d.node, nid, out)
}

// OpendirHandle asks the kernel to keep the listing cached across opens.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{dir: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirent is one decoded directory entry.
type dirent struct {
	name  string
	nid   uint64
	ftype uint8
}

// dirHandle is an open directory. Its entries are decoded at the first read;
// readdirplus then looks each one up by the nid just decoded instead of
// searching the directory again.
type dirHandle struct {
	dir     *dirNode
	loaded  bool
	entries []dirent
	// pos is the index of the next entry to produce: 0 is ".", 1 is "..",
	// 2+i is entries[i]. The offset the kernel sees after an entry is
	// its index + 1.
	pos int
}

func (h *dirHandle) load() syscall.Errno {
	if h.loaded {
		return 0
	}
	d := h.dir
	var entries []dirent
	err := d.fsys.img.ReadDir(&d.ino, func(name string, nid uint64, ftype uint8) error {
		if d.isRoot && ftype == erofs.FTChr && d.fsys.hiddenWhiteout(nid) {
			return nil
		}
		entries = append(entries, dirent{name: name, nid: nid, ftype: ftype})
		return nil
	})
	if err != nil {
		return d.fsys.errno(&d.node, "readdir", err)
	}
	h.entries, h.loaded = entries, true
	return 0
}

// hiddenWhiteout tells whether the root's entry at nid is a whiteout, which
// overlayfs leaves out of the root's listing. An inode that cannot be
// decoded stays listed; looking it up reports the damage.
func (f *FS) hiddenWhiteout(nid uint64) bool {
	in, err := f.img.Inode(nid)
	return err == nil && isWhiteout(&in)
}

func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	if errno := h.load(); errno != 0 {
		return nil, errno
	}
	var de fuse.DirEntry
	switch {
	case h.pos == 0:
		de = fuse.DirEntry{Name: ".", Mode: syscall.S_IFDIR, Ino: h.dir.ino.Nid}
	case h.pos == 1:
		de = fuse.DirEntry{Name: "..", Mode: syscall.S_IFDIR, Ino: h.dir.parentIno()}
	case h.pos-2 < len(h.entries):
		e := &h.entries[h.pos-2]
		de = fuse.DirEntry{Name: e.name, Mode: modeForFileType(e.ftype), Ino: e.nid}
	default:
		return nil, 0
	}
	h.pos++
	de.Off = uint64(h.pos)
	return &de, 0
}

// Lookup answers readdirplus for the entry just produced by Readdirent.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d := h.dir
	if ch := d.GetChild(name); ch != nil {
		if an, ok := ch.Operations().(attrNode); ok {
			an.fillAttr(&out.Attr)
			return ch, 0
		}
	}
	if i := h.pos - 3; i >= 0 && i < len(h.entries) && h.entries[i].name == name {
		return d.fsys.newChild(ctx, &d.node, h.entries[i].nid, out)
	}
	return d.Lookup(ctx, name, out)
}

func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	if errno := h.load(); errno != 0 {
		return errno
	}
	if off > uint64(len(h.entries)+2) {
		return syscall.EINVAL
	}
	h.pos = int(off)
	return 0
}

// Fsyncdir has nothing to do; ENOSYS makes the kernel stop asking.
func (h *dirHandle) Fsyncdir(ctx context.Context, flags uint32) syscall.Errno {
	return syscall.ENOSYS
}

// parentIno is the inode number ".." reports.
func (d *dirNode) parentIno() uint64 {
	if d.isRoot {
		return d.ino.Nid
	}
	if _, p := d.Parent(); p != nil {
		return p.StableAttr().Ino
	}
	return d.ino.Nid
}

// modeForFileType maps an EROFS dirent file type to the file type bits of a
// mode; an unknown type is 0, which the kernel reports as DT_UNKNOWN.
func modeForFileType(ft uint8) uint32 {
	switch ft {
	case erofs.FTReg:
		return syscall.S_IFREG
	case erofs.FTDir:
		return syscall.S_IFDIR
	case erofs.FTChr:
		return syscall.S_IFCHR
	case erofs.FTBlk:
		return syscall.S_IFBLK
	case erofs.FTFifo:
		return syscall.S_IFIFO
	case erofs.FTSock:
		return syscall.S_IFSOCK
	case erofs.FTSymlink:
		return syscall.S_IFLNK
	}
	return 0
}
