package composefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/composefs/composefs-go/erofs"
)

// The io/fs view: paths are slash-separated and relative to the root ("."
// is the root), symlinks are never followed (Open and Stat of a symlink
// describe the link itself, and a symlink inside a path is not a
// directory), and names that are not UTF-8 are left out of listings, since
// io/fs cannot name them. Otherwise what it shows is what the kernel's
// mount shows, contents of external files included.

var (
	_ fs.FS         = (*FS)(nil)
	_ fs.ReadDirFS  = (*FS)(nil)
	_ fs.StatFS     = (*FS)(nil)
	_ fs.ReadLinkFS = (*FS)(nil)
)

// maxDepth bounds path resolution: a damaged image can nest directories
// without end.
const maxDepth = 2048

type dirPlace struct {
	parent uint64
	name   string
}

// claimDir records that directory nid is entry name of parent, or fails
// when it was met elsewhere (the root lives nowhere).
func (f *FS) claimDir(nid, parent uint64, name string) error {
	if nid == f.rootNid {
		return fmt.Errorf("inode %d: the root directory appears as %q in directory %d: %w", nid, name, parent, erofs.ErrCorrupt)
	}
	place := dirPlace{parent, name}
	if old, loaded := f.dirs.LoadOrStore(nid, place); loaded && old.(dirPlace) != place {
		p := old.(dirPlace)
		return fmt.Errorf("inode %d: directory is %q in directory %d and %q in directory %d: %w",
			nid, p.name, p.parent, name, parent, erofs.ErrCorrupt)
	}
	return nil
}

// resolve walks name from the root, one lookup per component.
func (f *FS) resolve(op, name string) (erofs.Inode, error) {
	if !fs.ValidPath(name) {
		return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	in, err := f.img.Inode(f.rootNid)
	if err != nil {
		return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
	}
	if name == "." {
		return in, nil
	}
	rest := name
	for depth := 0; rest != ""; depth++ {
		var elem string
		elem, rest, _ = strings.Cut(rest, "/")
		if !in.IsDir() {
			return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		if depth >= maxDepth {
			return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("deeper than %d directories: %w", maxDepth, erofs.ErrCorrupt)}
		}
		child, err := f.Lookup(&in, elem)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fs.ErrNotExist
			}
			return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if child.IsDir() {
			if err := f.claimDir(child.Nid, in.Nid, elem); err != nil {
				return erofs.Inode{}, &fs.PathError{Op: op, Path: name, Err: err}
			}
		}
		in = child
	}
	return in, nil
}

func baseName(name string) string {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[i+1:]
	}
	return name
}

// Open opens the file at name. An external file's object is opened and
// checked here, as the kernel's open does: a mismatch fails the Open with
// an error wrapping ErrDigestMismatch; but a large object whose block sums
// the digest cache keeps is checked as it is read instead
// (OpenObjectToRead), and a read of a block that does not match fails
// with that error. Devices, fifos and sockets open as files with nothing
// to read, without blocking.
func (f *FS) Open(name string) (fs.File, error) {
	in, err := f.resolve("open", name)
	if err != nil {
		return nil, err
	}
	info := newFileInfo(baseName(name), &in)
	if in.IsDir() {
		return &dirFile{fsys: f, in: in, info: info, path: name}, nil
	}
	file := &regFile{fsys: f, in: in, info: info, path: name}
	if in.IsRegular() {
		external, err := f.External(&in)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		if external {
			obj, err := f.OpenObjectToRead(context.Background(), &in)
			if err != nil {
				return nil, &fs.PathError{Op: "open", Path: name, Err: err}
			}
			file.obj = &obj
		}
	}
	return file, nil
}

// Stat describes the file at name; it opens no object.
func (f *FS) Stat(name string) (fs.FileInfo, error) {
	in, err := f.resolve("stat", name)
	if err != nil {
		return nil, err
	}
	return newFileInfo(baseName(name), &in), nil
}

// Lstat is Stat: the view never follows symlinks.
func (f *FS) Lstat(name string) (fs.FileInfo, error) {
	in, err := f.resolve("lstat", name)
	if err != nil {
		return nil, err
	}
	return newFileInfo(baseName(name), &in), nil
}

// ReadLink returns the target of the symlink at name.
func (f *FS) ReadLink(name string) (string, error) {
	in, err := f.resolve("readlink", name)
	if err != nil {
		return "", err
	}
	if !in.IsSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	target, err := f.img.Readlink(&in)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return target, nil
}

// ReadDir lists the directory at name in name order, "." and ".." left
// out. An entry the kernel lists but a lookup does not find (a whiteout
// outside the root, a damaged inode) is listed, its Info failing as the
// kernel's stat of it fails.
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	in, err := f.resolve("readdir", name)
	if err != nil {
		return nil, err
	}
	if !in.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	list, err := f.list(&in)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return list, nil
}

// ListXattr lists the xattrs of the file at name as the kernel lists them
// to a caller who may see trusted.* (see XattrNames).
func (f *FS) ListXattr(name string) ([]string, error) {
	in, err := f.resolve("listxattr", name)
	if err != nil {
		return nil, err
	}
	names, err := f.XattrNames(&in)
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: name, Err: err}
	}
	return names, nil
}

// GetXattr is the value of xattr attr of the file at name (see XattrValue).
func (f *FS) GetXattr(name, attr string) ([]byte, error) {
	in, err := f.resolve("getxattr", name)
	if err != nil {
		return nil, err
	}
	v, err := f.XattrValue(&in, attr)
	if err != nil {
		return nil, &fs.PathError{Op: "getxattr", Path: name, Err: err}
	}
	return v, nil
}

func (f *FS) list(dir *erofs.Inode) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	err := f.ReadDirAt(dir, 0, func(d *erofs.Dirent) bool {
		if erofs.IsDotOrDotDot(d.Name) || !utf8.Valid(d.Name) {
			return true
		}
		e := &dirEntry{name: string(d.Name), typ: fileMode(erofs.FileTypeMode(d.Type)).Type()}
		in, err := f.Found(d.Nid)
		if err != nil {
			e.err = fmt.Errorf("%s: %w", e.name, err)
		} else {
			e.info = newFileInfo(e.name, &in)
			e.typ = e.info.Mode().Type()
		}
		out = append(out, e)
		return true
	})
	return out, err
}

// dirEntry is a listed entry; err is what a lookup of it gives.
type dirEntry struct {
	name string
	typ  fs.FileMode
	info *fileInfo
	err  error
}

func (e *dirEntry) Name() string      { return e.name }
func (e *dirEntry) IsDir() bool       { return e.typ.IsDir() }
func (e *dirEntry) Type() fs.FileMode { return e.typ }
func (e *dirEntry) String() string    { return fs.FormatDirEntry(e) }
func (e *dirEntry) Info() (fs.FileInfo, error) {
	if e.err != nil {
		return nil, e.err
	}
	return e.info, nil
}

// fileInfo is fs.FileInfo over an inode; Sys returns its *Attr.
type fileInfo struct {
	name string
	attr Attr
}

func newFileInfo(name string, in *erofs.Inode) *fileInfo {
	return &fileInfo{name: name, attr: AttrOf(in)}
}

func (fi *fileInfo) Name() string { return fi.name }

// Size is the size stat shows: for an external file its object's, for a
// symlink its target's length, for a directory its EROFS size.
func (fi *fileInfo) Size() int64 { return int64(fi.attr.Size) }
func (fi *fileInfo) ModTime() time.Time {
	return time.Unix(fi.attr.MtimeSec, int64(fi.attr.MtimeNsec))
}
func (fi *fileInfo) IsDir() bool       { return fi.attr.Mode&erofs.ModeFmt == erofs.ModeDir }
func (fi *fileInfo) Sys() any          { return &fi.attr }
func (fi *fileInfo) Mode() fs.FileMode { return fileMode(fi.attr.Mode) }
func (fi *fileInfo) String() string    { return fs.FormatFileInfo(fi) }

// fileMode converts st_mode to fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & erofs.ModeFmt {
	case erofs.ModeDir:
		mode |= fs.ModeDir
	case erofs.ModeLnk:
		mode |= fs.ModeSymlink
	case erofs.ModeChr:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case erofs.ModeBlk:
		mode |= fs.ModeDevice
	case erofs.ModeFifo:
		mode |= fs.ModeNamedPipe
	case erofs.ModeSock:
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

// regFile is an open non-directory: a regular file reads its content, from
// its object (obj) or the image; other types have nothing to read.
type regFile struct {
	fsys   *FS
	in     erofs.Inode
	info   *fileInfo
	path   string
	obj    *Object // an external file's
	off    int64
	closed bool
}

var (
	_ io.ReaderAt = (*regFile)(nil)
	_ io.Seeker   = (*regFile)(nil)
)

func (f *regFile) Stat() (fs.FileInfo, error) { return f.info, nil }

func (f *regFile) Close() error {
	if f.closed {
		return &fs.PathError{Op: "close", Path: f.path, Err: fs.ErrClosed}
	}
	f.closed = true
	if f.obj != nil {
		return f.obj.File.Close()
	}
	return nil
}

func (f *regFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	if err == io.EOF && n > 0 && n == len(p) {
		err = nil
	}
	return n, err
}

// ReadAt reads at most up to the file's size: an object longer than its
// file (possible only unchecked) shows no more than the size stat gives.
func (f *regFile) ReadAt(p []byte, off int64) (int, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrClosed}
	}
	if f.in.IsSymlink() || off < 0 {
		return 0, &fs.PathError{Op: "read", Path: f.path, Err: fs.ErrInvalid}
	}
	size := int64(f.in.Size)
	if !f.in.IsRegular() || off >= size {
		return 0, io.EOF
	}
	short := false
	if rest := size - off; int64(len(p)) > rest {
		p, short = p[:rest], true
	}
	var n int
	var err error
	if f.obj != nil {
		n, err = f.obj.ReadAt(p, off)
	} else {
		n, err = f.fsys.img.ReadAt(&f.in, p, off)
	}
	if err == nil && short {
		err = io.EOF
	}
	if err != nil && err != io.EOF {
		err = &fs.PathError{Op: "read", Path: f.path, Err: err}
	}
	return n, err
}

func (f *regFile) Seek(offset int64, whence int) (int64, error) {
	if f.closed {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrClosed}
	}
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.off
	case io.SeekEnd:
		offset += int64(f.in.Size)
	default:
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	if offset < 0 {
		return 0, &fs.PathError{Op: "seek", Path: f.path, Err: fs.ErrInvalid}
	}
	f.off = offset
	return offset, nil
}

// dirFile is an open directory; its entries are read on the first ReadDir.
type dirFile struct {
	fsys    *FS
	in      erofs.Inode
	info    *fileInfo
	path    string
	entries []fs.DirEntry
	loaded  bool
	pos     int
	closed  bool
}

var _ fs.ReadDirFile = (*dirFile)(nil)

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }

func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.path, Err: errors.New("is a directory")}
}

func (d *dirFile) Close() error {
	if d.closed {
		return &fs.PathError{Op: "close", Path: d.path, Err: fs.ErrClosed}
	}
	d.closed = true
	return nil
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if d.closed {
		return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: fs.ErrClosed}
	}
	if !d.loaded {
		list, err := d.fsys.list(&d.in)
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
