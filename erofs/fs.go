package erofs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// FS returns the image as an io/fs file system (fs.FS, fs.ReadDirFS,
// fs.StatFS, fs.ReadLinkFS). It shows the EROFS tree as stored, less the
// whiteout stubs of a V0/V1 root and names that are not UTF-8 (io/fs
// cannot name them). Symlinks are never followed: Open and
// Stat of a symlink describe the link itself, and a symlink inside a path is
// not a directory. composefs writes a regular file CHUNK_BASED exactly when
// its content is not in the image (in an object store, through
// trusted.overlay.redirect, or simply missing), as C's reader assumes: such
// files show as empty, which also keeps reading them bounded (fs.ReadFile
// allocates by size); their real size is in Sys().(*Inode).Size.
func (im *Image) FS() fs.FS { return &imageFS{im: im} }

type imageFS struct {
	im *Image
	// parents maps each directory nid met so far to the one place it
	// lives (dirPlace). A directory reached from a second place is a cycle
	// or a directory hardlink; refusing it keeps every walk of the view a
	// walk of a tree, bounded by the image's dirents.
	parents sync.Map
}

type dirPlace struct {
	parent uint64
	name   string
}

// claimDir records that directory nid is entry name of parent, or fails
// when it was met elsewhere (the root lives nowhere).
func (f *imageFS) claimDir(nid, parent uint64, name string) error {
	if nid == f.im.RootNid() {
		return fmt.Errorf("inode %d: the root directory appears as %q in directory %d: %w", nid, name, parent, ErrCorrupt)
	}
	place := dirPlace{parent, name}
	if old, loaded := f.parents.LoadOrStore(nid, place); loaded && old.(dirPlace) != place {
		p := old.(dirPlace)
		return fmt.Errorf("inode %d: directory is %q in directory %d and %q in directory %d: %w",
			nid, p.name, p.parent, name, parent, ErrCorrupt)
	}
	return nil
}

var (
	_ fs.FS         = (*imageFS)(nil)
	_ fs.ReadDirFS  = (*imageFS)(nil)
	_ fs.StatFS     = (*imageFS)(nil)
	_ fs.ReadLinkFS = (*imageFS)(nil)
)

// resolve walks name from the root by Lookup, one component at a time.
func (f *imageFS) resolve(op, name string) (Inode, error) {
	if !fs.ValidPath(name) {
		return Inode{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	im := f.im
	in, err := im.Inode(im.RootNid())
	if err != nil {
		return Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if name == "." {
		if !in.IsDir() {
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("root inode %d is not a directory: %w", in.Nid, ErrCorrupt)}
		}
		return in, nil
	}
	rest := name
	for depth := 0; rest != ""; depth++ {
		var elem string
		elem, rest, _ = strings.Cut(rest, "/")
		if !in.IsDir() {
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if depth >= maxDepth {
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("deeper than %d directories: %w", maxDepth, ErrCorrupt)}
		}
		nid, _, err := im.Lookup(&in, elem)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fs.ErrNotExist
			}
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		child, err := im.Inode(nid)
		if err != nil {
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if depth == 0 && im.hasStubs() && IsWhiteoutStub(elem, &child) {
			return Inode{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if child.IsDir() {
			if err := f.claimDir(nid, in.Nid, elem); err != nil {
				return Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
			}
		}
		in = child
	}
	return in, nil
}

func (f *imageFS) Open(name string) (fs.File, error) {
	in, err := f.resolve("open", name)
	if err != nil {
		return nil, err
	}
	info, err := f.info(baseName(name), &in)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	if in.IsDir() {
		return &fsDir{fsys: f, in: in, info: info, path: name}, nil
	}
	return &fsFile{fsys: f, in: in, info: info, path: name}, nil
}

func (f *imageFS) Stat(name string) (fs.FileInfo, error) {
	in, err := f.resolve("stat", name)
	if err != nil {
		return nil, err
	}
	info, err := f.info(baseName(name), &in)
	if err != nil {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: err}
	}
	return info, nil
}

// Lstat is Stat: the view never follows symlinks.
func (f *imageFS) Lstat(name string) (fs.FileInfo, error) {
	in, err := f.resolve("lstat", name)
	if err != nil {
		return nil, err
	}
	info, err := f.info(baseName(name), &in)
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	return info, nil
}

func (f *imageFS) ReadLink(name string) (string, error) {
	in, err := f.resolve("readlink", name)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := f.im.Readlink(&in)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}

func (f *imageFS) ReadDir(name string) ([]fs.DirEntry, error) {
	in, err := f.resolve("readdir", name)
	if err != nil {
		return nil, err
	}
	if !in.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	list, err := f.list(&in, name == ".")
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return list, nil
}

// list reads a directory's entries in name order (the on-disk order).
func (f *imageFS) list(dir *Inode, root bool) ([]fs.DirEntry, error) {
	im := f.im
	var out []fs.DirEntry
	err := im.ReadDir(dir, func(name string, nid uint64, _ uint8) error {
		in, err := im.Inode(nid)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if root && im.hasStubs() && IsWhiteoutStub(name, &in) {
			return nil
		}
		if !utf8.ValidString(name) {
			return nil // io/fs paths are UTF-8: such a name cannot be opened
		}
		if in.IsDir() {
			if err := f.claimDir(nid, dir.Nid, name); err != nil {
				return err
			}
		}
		info, err := f.info(name, &in)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		out = append(out, fs.FileInfoToDirEntry(info))
		return nil
	})
	return out, err
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// info describes an inode; external files show as empty.
func (f *imageFS) info(name string, in *Inode) (*fileInfo, error) {
	size := int64(in.Size)
	if in.IsRegular() && in.Layout == LayoutChunkBased {
		size = 0 // composefs: content not in the image
	}
	if !in.IsRegular() && !in.IsSymlink() && !in.IsDir() {
		size = 0
	}
	if size < 0 {
		return nil, fmt.Errorf("inode %d: size %d: %w", in.Nid, in.Size, ErrCorrupt)
	}
	return &fileInfo{name: name, in: *in, size: size}, nil
}

// fileInfo is fs.FileInfo over an Inode; Sys returns the *Inode.
type fileInfo struct {
	name string
	in   Inode
	size int64
}

func (fi *fileInfo) Name() string       { return fi.name }
func (fi *fileInfo) Size() int64        { return fi.size }
func (fi *fileInfo) ModTime() time.Time { return time.Unix(fi.in.MtimeSec, int64(fi.in.MtimeNsec)) }
func (fi *fileInfo) IsDir() bool        { return fi.in.IsDir() }
func (fi *fileInfo) Sys() any           { return &fi.in }
func (fi *fileInfo) Mode() fs.FileMode  { return fileMode(fi.in.Mode) }

// fileMode converts st_mode to fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & ModeFmt {
	case ModeDir:
		mode |= fs.ModeDir
	case ModeLnk:
		mode |= fs.ModeSymlink
	case ModeChr:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case ModeBlk:
		mode |= fs.ModeDevice
	case ModeFifo:
		mode |= fs.ModeNamedPipe
	case ModeSock:
		mode |= fs.ModeSocket
	}
	if m&0o4000 != 0 {
		mode |= fs.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= fs.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}

// fsFile is an open non-directory: regular files read their data; other
// types (symlinks, devices, ...) have nothing to read.
type fsFile struct {
	fsys   *imageFS
	in     Inode
	info   *fileInfo
	path   string
	off    int64
	closed bool
}

var (
	_ io.ReaderAt = (*fsFile)(nil)
	_ io.Seeker   = (*fsFile)(nil)
)

func (f *fsFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *fsFile) Close() error {
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.path, Err: fs.ErrClosed}
	}
	f.closed = true
	return nil
}

func (f *fsFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 && n == len(p) {
		err = nil
	}
	return n, err
}

func (f *fsFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrClosed}
	}
	if f.in.IsSymlink() {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	if !f.in.IsRegular() {
		return 0, io.EOF // devices, fifos, sockets: nothing stored
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	if off >= f.info.size {
		return 0, io.EOF
	}
	if rest := f.info.size - off; int64(len(p)) > rest {
		p = p[:rest]
		n, err := f.fsys.im.ReadAt(&f.in, p, off)
		if err == nil {
			err = io.EOF
		}
		return n, wrapRead(f.path, err)
	}
	n, err := f.fsys.im.ReadAt(&f.in, p, off)
	return n, wrapRead(f.path, err)
}

func wrapRead(path string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &fs.PathError{Op: "read", Path: path, Err: err}
}

func (f *fsFile) Seek(offset int64, whence int) (int64, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrClosed}
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += f.info.size
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

// fsDir is an open directory; its entries are read on the first ReadDir.
type fsDir struct {
	fsys    *imageFS
	in      Inode
	info    *fileInfo
	path    string
	entries []fs.DirEntry
	loaded  bool
	pos     int
	closed  bool
}

var _ fs.ReadDirFile = (*fsDir)(nil)

func (d *fsDir) Stat() (fs.FileInfo, error) { return d.info, nil }

func (d *fsDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *fsDir) Close() error {
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.path, Err: fs.ErrClosed}
	}
	d.closed = true
	return nil
}

func (d *fsDir) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: fs.ErrClosed}
	}
	if !d.loaded {
		list, err := d.fsys.list(&d.in, d.path == ".")
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
		}
		d.entries, d.loaded = list, true
	}
	rest := d.entries[d.pos:]
	if n <= 0 {
		d.pos = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.pos += n
	return rest[:n:n], nil
}
