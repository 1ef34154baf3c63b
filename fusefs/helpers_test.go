package fusefs

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/internal/logbuf"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// dirStore is the simplest object store: payload paths below one directory.
type dirStore string

func (d dirStore) Open(payload string) (*os.File, error) {
	return os.Open(filepath.Join(string(d), strings.TrimPrefix(payload, "/")))
}

func (d dirStore) Has(payload string) (bool, error) {
	_, err := os.Stat(filepath.Join(string(d), strings.TrimPrefix(payload, "/")))
	return err == nil, nil
}

// object is the content of an external file and its place in a flat store.
type object = fixture.Object

var newObject = fixture.NewObject

// imageFromDump writes the image of a dumpfile text with the project's
// writer.
func imageFromDump(t testing.TB, dump string, version int) *erofs.Image {
	t.Helper()
	img, err := erofs.NewImage(fixture.Image(t, dump, version))
	if err != nil {
		t.Fatalf("erofs.NewImage: %v", err)
	}
	return img
}

func goldenDir(t testing.TB) string { return golden.Dir(t) }

// server drives an FS through its request methods, as the kernel would,
// without a mount.
type server struct {
	t    testing.TB
	fsys *FS
	log  *logbuf.Buffer
}

// testConfig is what a test sets of both the view and the server.
type testConfig struct {
	Store       objects.Store
	Verity      composefs.VerityMode
	Cache       *verity.Cache
	Logger      *slog.Logger
	NoReadAhead bool
	// NoOpen serves as a mount does by default, with OPEN answering
	// ENOSYS; without it, tests drive OPEN as with Config.Passthrough.
	NoOpen bool
}

// newFS serves img with the settings of tc.
func newFS(img *erofs.Image, tc testConfig) (*FS, error) {
	view, err := composefs.New(img, composefs.Config{Store: tc.Store, Verity: tc.Verity, Cache: tc.Cache})
	if err != nil {
		return nil, err
	}
	return New(view, Config{Logger: tc.Logger, NoReadAhead: tc.NoReadAhead, Passthrough: !tc.NoOpen}), nil
}

func newServer(t testing.TB, img *erofs.Image, cfg testConfig) *server {
	t.Helper()
	lb := &logbuf.Buffer{}
	if cfg.Logger == nil {
		cfg.Logger = lb.Logger()
	}
	fsys, err := newFS(img, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return &server{t: t, fsys: fsys, log: lb}
}

// Callers: root, and an unprivileged user.
var (
	rootCaller = fuse.Caller{}
	userCaller = fuse.Caller{Owner: fuse.Owner{Uid: 1000, Gid: 1000}}
)

func header(nodeID uint64, c fuse.Caller) fuse.InHeader {
	return fuse.InHeader{NodeId: nodeID, Caller: c}
}

// lookup walks a slash-separated path from the root; the root itself
// answers with its attributes. A negative entry is ENOENT.
func (s *server) lookup(path string) (fuse.EntryOut, fuse.Status) {
	out := fuse.EntryOut{NodeId: fuse.FUSE_ROOT_ID}
	var ao fuse.AttrOut
	if st := s.fsys.GetAttr(nil, &fuse.GetAttrIn{InHeader: header(fuse.FUSE_ROOT_ID, rootCaller)}, &ao); !st.Ok() {
		return out, st
	}
	out.Attr = ao.Attr
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" {
			continue
		}
		h := header(out.NodeId, rootCaller)
		out = fuse.EntryOut{}
		if st := s.fsys.Lookup(nil, &h, name, &out); !st.Ok() {
			return out, st
		}
		if out.NodeId == 0 {
			return out, fuse.ENOENT
		}
	}
	return out, fuse.OK
}

func (s *server) mustLookup(path string) fuse.EntryOut {
	s.t.Helper()
	out, st := s.lookup(path)
	if !st.Ok() {
		s.t.Fatalf("lookup %s: %v", path, st)
	}
	return out
}

// dirent is one entry of a listing, with the lookup readdirplus answered
// along with it (NodeId 0: none).
type dirent struct {
	fuse.DirEntry
	entry fuse.EntryOut
}

// readdirplus lists the directory at nodeID from offset off into a buffer
// of size bytes, as one READDIRPLUS request.
func (s *server) readdirplus(nodeID, off uint64, size int) ([]dirent, fuse.Status) {
	buf := make([]byte, size)
	l := fuse.NewDirEntryList(buf, off)
	st := s.fsys.ReadDirPlus(nil, &fuse.ReadIn{InHeader: header(nodeID, rootCaller), Offset: off, Size: uint32(size)}, l)
	if !st.Ok() {
		return nil, st
	}
	var out []dirent
	for b := l.Bytes(); len(b) > 0; {
		var d dirent
		d.entry = *(*fuse.EntryOut)(unsafe.Pointer(&b[0]))
		b = b[unsafe.Sizeof(fuse.EntryOut{}):]
		d.DirEntry, b = parseDirent(b)
		out = append(out, d)
	}
	return out, fuse.OK
}

// parseDirent decodes a FUSE dirent {ino u64, off u64, namelen u32, type
// u32, name, padding to 8 bytes} and returns what follows it.
func parseDirent(b []byte) (fuse.DirEntry, []byte) {
	n := int(binary.LittleEndian.Uint32(b[16:]))
	de := fuse.DirEntry{
		Ino:  binary.LittleEndian.Uint64(b),
		Off:  binary.LittleEndian.Uint64(b[8:]),
		Mode: binary.LittleEndian.Uint32(b[20:]) << 12,
		Name: string(b[24 : 24+n]),
	}
	return de, b[(24+n+7)&^7:]
}

// listAll lists a whole directory in requests of size bytes.
func (s *server) listAll(nodeID uint64, size int) ([]dirent, fuse.Status) {
	var all []dirent
	for off := uint64(0); ; {
		ents, st := s.readdirplus(nodeID, off, size)
		if !st.Ok() || len(ents) == 0 {
			return all, st
		}
		all = append(all, ents...)
		off = ents[len(ents)-1].Off
	}
}

// readdir lists a directory the way the kernel does, with readdirplus; it
// returns the names, and for each the status of looking it up (readdirplus'
// answer, or a LOOKUP of its own where readdirplus left it to one).
func (s *server) readdir(path string) ([]string, map[string]fuse.Status) {
	s.t.Helper()
	dir := s.mustLookup(path)
	ents, st := s.listAll(dir.NodeId, 4096)
	if !st.Ok() {
		s.t.Fatalf("readdir %s: %v", path, st)
	}
	var names []string
	lookups := map[string]fuse.Status{}
	for _, e := range ents {
		names = append(names, e.Name)
		if e.Name == "." || e.Name == ".." {
			continue
		}
		if e.entry.NodeId != 0 {
			lookups[e.Name] = fuse.OK
			continue
		}
		h := header(dir.NodeId, rootCaller)
		var out fuse.EntryOut
		st := s.fsys.Lookup(nil, &h, e.Name, &out)
		if st.Ok() && out.NodeId == 0 {
			st = fuse.ENOENT
		}
		lookups[e.Name] = st
	}
	return names, lookups
}

// readFile opens and reads a whole file through the request methods.
func (s *server) readFile(path string) ([]byte, fuse.Status) {
	e, st := s.lookup(path)
	if !st.Ok() {
		return nil, st
	}
	var oo fuse.OpenOut
	if st := s.fsys.Open(nil, &fuse.OpenIn{InHeader: header(e.NodeId, rootCaller), Flags: syscall.O_RDONLY}, &oo); !st.Ok() {
		return nil, st
	}
	defer s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: header(e.NodeId, rootCaller), Fh: oo.Fh})
	if oo.OpenFlags&(fuse.FOPEN_KEEP_CACHE|fuse.FOPEN_PASSTHROUGH) == 0 {
		s.t.Errorf("open %s: flags %#x keep no cache", path, oo.OpenFlags)
	}
	return s.readOpen(e.NodeId, oo.Fh, e.Size)
}

// readUnopened sends one READ of size bytes at off for file nodeID with no
// handle, as the kernel does when it opens files itself (no OPEN).
func (s *server) readUnopened(nodeID, off uint64, size int) ([]byte, fuse.Status) {
	buf := make([]byte, size)
	rr, st := s.fsys.Read(nil, &fuse.ReadIn{InHeader: header(nodeID, rootCaller), Offset: off, Size: uint32(size)}, buf)
	if !st.Ok() {
		return nil, st
	}
	b, st := rr.Bytes(buf)
	return bytes.Clone(b), st
}

// readOpen reads size bytes of the open file nodeID (handle fh) through
// READ requests.
func (s *server) readOpen(nodeID, fh, size uint64) ([]byte, fuse.Status) {
	var data []byte
	buf := make([]byte, 64<<10)
	for off := uint64(0); off < size; {
		res, st := s.fsys.Read(nil, &fuse.ReadIn{InHeader: header(nodeID, rootCaller), Fh: fh, Offset: off, Size: uint32(len(buf))}, buf)
		if !st.Ok() {
			return nil, st
		}
		b, st := res.Bytes(make([]byte, len(buf)))
		res.Done()
		if !st.Ok() {
			return nil, st
		}
		if len(b) == 0 {
			break
		}
		data = append(data, b...)
		off += uint64(len(b))
	}
	return data, fuse.OK
}

func (s *server) listxattr(c fuse.Caller, path string) []string {
	s.t.Helper()
	e := s.mustLookup(path)
	h := header(e.NodeId, c)
	size, st := s.fsys.ListXAttr(nil, &h, nil)
	if !st.Ok() && st != fuse.ERANGE {
		s.t.Fatalf("listxattr %s: %v", path, st)
	}
	buf := make([]byte, size)
	got, st := s.fsys.ListXAttr(nil, &h, buf)
	if !st.Ok() || got != size {
		s.t.Fatalf("listxattr %s: %d bytes, %v (size said %d)", path, got, st, size)
	}
	var names []string
	for _, name := range strings.Split(string(buf), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names
}

func (s *server) getxattr(c fuse.Caller, path, name string) (string, fuse.Status) {
	s.t.Helper()
	e := s.mustLookup(path)
	h := header(e.NodeId, c)
	buf := make([]byte, 64<<10)
	sz, st := s.fsys.GetXAttr(nil, &h, name, buf)
	if !st.Ok() {
		return "", st
	}
	return string(buf[:sz]), fuse.OK
}

// rewriteAt writes data over the file at path, at off, in place: an
// object changed under the mount without a new inode.
func rewriteAt(t *testing.T, path string, data []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// heldObject is the object held for file nid, open or idle.
func (f *FS) heldObject(nid uint64) *openObject {
	o, _ := f.heldChecked(nid)
	return o
}
