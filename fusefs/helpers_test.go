package fusefs

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
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

// syncBuffer collects log lines from concurrent requests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// object is content for an external file: its payload path and digest.
type object struct {
	content []byte
	digest  string
	payload string
}

func newObject(content []byte) object {
	d := hex.EncodeToString(verity.DigestBytes(verity.SHA256, content))
	return object{content: content, digest: d, payload: d[:2] + "/" + d[2:]}
}

// put stores o (or other bytes under o's name) in dir.
func (o object) put(t testing.TB, dir string, content []byte) {
	t.Helper()
	p := filepath.Join(dir, o.payload)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, content, 0o644); err != nil {
		t.Fatal(err)
	}
}

// imageFromDump writes the image of a dumpfile text with the project's
// writer.
func imageFromDump(t testing.TB, dump string, version int) *erofs.Image {
	t.Helper()
	entries, err := dumpfile.ParseAll(strings.NewReader(dump), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatalf("dumpfile: %v", err)
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, entries, erofs.WriteOptions{MinVersion: version, MaxVersion: version}); err != nil {
		t.Fatalf("erofs.Write: %v", err)
	}
	img, err := erofs.NewImage(buf.Bytes())
	if err != nil {
		t.Fatalf("erofs.NewImage: %v", err)
	}
	return img
}

func goldenDir(t testing.TB) string {
	d := filepath.Join("..", "..", "shared", "golden")
	if _, err := os.Stat(d); err != nil {
		t.Skipf("golden data absent (%s): %v", d, err)
	}
	return d
}

// server is an FS set up as go-fuse sets it up for a mount, without one.
type server struct {
	t    testing.TB
	fsys *FS
	log  *syncBuffer
}

func newServer(t testing.TB, img *erofs.Image, cfg Config) *server {
	t.Helper()
	lb := &syncBuffer{}
	if cfg.Logger == nil {
		cfg.Logger = log.New(lb, "", 0)
	}
	fsys, err := New(img, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	gofs.NewNodeFS(fsys.Root(), fsys.NodeOptions(MountOptions{Logger: cfg.Logger}))
	return &server{t: t, fsys: fsys, log: lb}
}

var rootCtx = context.Background()

// userCtx is a request from an unprivileged caller.
var userCtx = fuse.NewContext(context.Background(), &fuse.Caller{Owner: fuse.Owner{Uid: 1000, Gid: 1000}})

// lookup walks a slash-separated path from the root.
func (s *server) lookup(path string) (*gofs.Inode, fuse.EntryOut, syscall.Errno) {
	var out fuse.EntryOut
	cur := s.fsys.Root().EmbeddedInode()
	for _, name := range strings.Split(strings.Trim(path, "/"), "/") {
		if name == "" {
			continue
		}
		d, ok := cur.Operations().(gofs.NodeLookuper)
		if !ok {
			return nil, out, syscall.ENOTDIR
		}
		out = fuse.EntryOut{}
		ch, errno := d.Lookup(rootCtx, name, &out)
		if errno != 0 {
			return nil, out, errno
		}
		// As the bridge does: remember the child in the tree.
		cur.AddChild(name, ch, false)
		cur = ch
	}
	return cur, out, 0
}

func (s *server) mustLookup(path string) (*gofs.Inode, fuse.EntryOut) {
	s.t.Helper()
	n, out, errno := s.lookup(path)
	if errno != 0 {
		s.t.Fatalf("lookup %s: %v", path, errno)
	}
	return n, out
}

// readdir lists a directory the way the bridge does, with the handle's
// readdirplus lookup for every entry; it returns the names and the errno
// of each entry's lookup.
func (s *server) readdir(path string) ([]string, map[string]syscall.Errno) {
	s.t.Helper()
	n, _ := s.mustLookup(path)
	fh, flags, errno := n.Operations().(gofs.NodeOpendirHandler).OpendirHandle(rootCtx, 0)
	if errno != 0 {
		s.t.Fatalf("opendir %s: %v", path, errno)
	}
	if flags&fuse.FOPEN_CACHE_DIR == 0 || flags&fuse.FOPEN_KEEP_CACHE == 0 {
		s.t.Errorf("opendir %s: flags %#x lack CACHE_DIR|KEEP_CACHE", path, flags)
	}
	var names []string
	lookups := map[string]syscall.Errno{}
	for {
		de, errno := fh.(gofs.FileReaddirenter).Readdirent(rootCtx)
		if errno != 0 {
			s.t.Fatalf("readdir %s: %v", path, errno)
		}
		if de == nil {
			break
		}
		names = append(names, de.Name)
		if de.Name == "." || de.Name == ".." {
			continue
		}
		var out fuse.EntryOut
		_, lookups[de.Name] = fh.(gofs.FileLookuper).Lookup(rootCtx, de.Name, &out)
	}
	return names, lookups
}

// readFile opens and reads a whole file through the node methods.
func (s *server) readFile(path string) ([]byte, syscall.Errno) {
	n, out, errno := s.lookup(path)
	if errno != 0 {
		return nil, errno
	}
	f := n.Operations().(*fileNode)
	fh, flags, errno := f.Open(rootCtx, syscall.O_RDONLY)
	if errno != 0 {
		return nil, errno
	}
	if flags&fuse.FOPEN_KEEP_CACHE == 0 {
		s.t.Errorf("open %s: flags %#x lack KEEP_CACHE", path, flags)
	}
	defer func() {
		if r, ok := fh.(gofs.FileReleaser); ok {
			r.Release(rootCtx)
		}
	}()
	var data []byte
	buf := make([]byte, 64<<10)
	for off := int64(0); off < int64(out.Size); {
		res, errno := f.Read(rootCtx, fh, buf, off)
		if errno != 0 {
			return nil, errno
		}
		b, st := res.Bytes(make([]byte, len(buf)))
		res.Done()
		if !st.Ok() {
			return nil, syscall.Errno(st)
		}
		if len(b) == 0 {
			break
		}
		data = append(data, b...)
		off += int64(len(b))
	}
	return data, 0
}

func (s *server) listxattr(ctx context.Context, path string) []string {
	s.t.Helper()
	n, _ := s.mustLookup(path)
	x := n.Operations().(gofs.NodeListxattrer)
	size, errno := x.Listxattr(ctx, nil)
	if errno != 0 && errno != syscall.ERANGE {
		s.t.Fatalf("listxattr %s: %v", path, errno)
	}
	buf := make([]byte, size)
	got, errno := x.Listxattr(ctx, buf)
	if errno != 0 || got != size {
		s.t.Fatalf("listxattr %s: %d bytes, %v (size said %d)", path, got, errno, size)
	}
	var names []string
	for _, name := range strings.Split(string(buf), "\x00") {
		if name != "" {
			names = append(names, name)
		}
	}
	return names
}

func (s *server) getxattr(ctx context.Context, path, name string) (string, syscall.Errno) {
	s.t.Helper()
	n, _ := s.mustLookup(path)
	x := n.Operations().(gofs.NodeGetxattrer)
	buf := make([]byte, 64<<10)
	sz, errno := x.Getxattr(ctx, name, buf)
	if errno != 0 {
		return "", errno
	}
	return string(buf[:sz]), 0
}

func dumpLine(path string, size uint64, mode uint32, nlink int, rest string) string {
	return fmt.Sprintf("%s %d %o %d %s\n", path, size, mode, nlink, rest)
}
