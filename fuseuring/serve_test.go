//go:build linux

package fuseuring

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"log"
	"testing"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Opcodes the tests send, from include/uapi/linux/fuse.h.
const (
	opLookup      = 1
	opGetattr     = 3
	opSymlink     = 6
	opRead        = 15
	opSetxattr    = 21
	opGetxattr    = 22
	opListxattr   = 23
	opGetlk       = 31
	opReaddirplus = 44
)

// fakeFS answers a few requests with recognizable values and records the
// names it was given.
type fakeFS struct {
	fuse.RawFileSystem
	names []string
}

func (f *fakeFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	f.names = append(f.names, name)
	if name == "missing" {
		return fuse.ENOENT
	}
	out.NodeId = 42 + h.NodeId
	out.EntryValid = 7
	out.Attr.Ino = 42
	out.Attr.Mode = fuse.S_IFREG | 0o644
	return fuse.OK
}

func (f *fakeFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	panic("damaged")
}

func (f *fakeFS) GetXAttr(_ <-chan struct{}, h *fuse.InHeader, attr string, dest []byte) (uint32, fuse.Status) {
	v := []byte("value-of-" + attr)
	if len(dest) < len(v) {
		return uint32(len(v)), fuse.ERANGE
	}
	return uint32(copy(dest, v)), fuse.OK
}

func (f *fakeFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	return fuse.ReadResultData(bytes.Repeat([]byte{'x'}, int(in.Size)/2)), fuse.OK
}

func (f *fakeFS) ReadDirPlus(_ <-chan struct{}, in *fuse.ReadIn, l *fuse.DirEntryList) fuse.Status {
	for i, name := range []string{"a", "bb", "ccc"} {
		e := l.AddDirLookupEntry(fuse.DirEntry{Name: name, Ino: uint64(10 + i), Mode: fuse.S_IFREG})
		if e == nil {
			break
		}
		e.NodeId = uint64(10 + i)
	}
	return fuse.OK
}

func (f *fakeFS) Symlink(_ <-chan struct{}, h *fuse.InHeader, target, name string, out *fuse.EntryOut) fuse.Status {
	f.names = append(f.names, name, target)
	return fuse.EROFS
}

// request puts a request into e's buffers as the kernel would.
func request(e *entry, op uint32, node, unique uint64, opIn, payload []byte) {
	clear(e.hdr)
	binary.LittleEndian.PutUint32(e.hdr[hdrInOut:], uint32(SizeOfInHeader+len(opIn)+len(payload)))
	binary.LittleEndian.PutUint32(e.hdr[hdrInOut+4:], op)
	binary.LittleEndian.PutUint64(e.hdr[hdrInOut+8:], unique)
	binary.LittleEndian.PutUint64(e.hdr[hdrInOut+16:], node)
	copy(e.hdr[hdrOpIn:], opIn)
	binary.LittleEndian.PutUint64(e.hdr[entCommitID:], unique)
	binary.LittleEndian.PutUint32(e.hdr[entPayloadSz:], uint32(len(payload)))
	copy(e.payload, payload)
}

type reply struct {
	commit  uint64
	length  uint32
	errno   int32
	unique  uint64
	payload []byte
}

func serveOne(t *testing.T, tr *Transport, e *entry, op uint32, node uint64, opIn, payload []byte) reply {
	t.Helper()
	request(e, op, node, 77, opIn, payload)
	var r reply
	r.commit = tr.serve(e)
	r.length = binary.LittleEndian.Uint32(e.hdr[hdrInOut:])
	r.errno = int32(binary.LittleEndian.Uint32(e.hdr[hdrInOut+4:]))
	r.unique = binary.LittleEndian.Uint64(e.hdr[hdrInOut+8:])
	n := binary.LittleEndian.Uint32(e.hdr[entPayloadSz:])
	r.payload = append([]byte(nil), e.payload[:n]...)
	if r.commit != 77 || r.unique != 77 {
		t.Errorf("op %d: commit %d unique %d, want 77", op, r.commit, r.unique)
	}
	if r.length != 16+n {
		t.Errorf("op %d: out header len %d with %d payload bytes", op, r.length, n)
	}
	if r.errno != 0 && n != 0 {
		t.Errorf("op %d: error %d with %d payload bytes", op, r.errno, n)
	}
	return r
}

func u32s(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

// newHandler is the ProtocolServer a connection would have for fs, its
// log (the panic handler's) dropped.
func newHandler(fs fuse.RawFileSystem) Handler {
	return fuse.NewProtocolServer(fs, &fuse.MountOptions{Logger: log.New(io.Discard, "", 0)})
}

func newTestTransport(t *testing.T, fs fuse.RawFileSystem) (*Transport, *entry) {
	tr := &Transport{h: newHandler(fs), payload: 64 << 10}
	e, err := tr.newEntry(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.free)
	return tr, e
}

func TestServeLookup(t *testing.T) {
	fs := &fakeFS{RawFileSystem: fuse.NewDefaultRawFileSystem()}
	tr, e := newTestTransport(t, fs)

	r := serveOne(t, tr, e, opLookup, 5, nil, []byte("hello\x00"))
	if r.errno != 0 || len(r.payload) != int(unsafe.Sizeof(fuse.EntryOut{})) {
		t.Fatalf("lookup: errno %d, %d bytes", r.errno, len(r.payload))
	}
	// The reply is written where the name was: the name must have been
	// taken out first.
	if len(fs.names) != 1 || fs.names[0] != "hello" {
		t.Errorf("file system was asked for %q, want [hello]", fs.names)
	}
	out := (*fuse.EntryOut)(unsafe.Pointer(&r.payload[0]))
	if out.NodeId != 47 || out.EntryValid != 7 || out.Attr.Ino != 42 {
		t.Errorf("entry: node %d valid %d ino %d", out.NodeId, out.EntryValid, out.Attr.Ino)
	}

	if r := serveOne(t, tr, e, opLookup, 5, nil, []byte("missing\x00")); r.errno != -int32(fuse.ENOENT) {
		t.Errorf("missing: errno %d, want %d", r.errno, -int32(fuse.ENOENT))
	}
}

func TestServeXattr(t *testing.T) {
	tr, e := newTestTransport(t, &fakeFS{RawFileSystem: fuse.NewDefaultRawFileSystem()})
	want := "value-of-user.x"

	r := serveOne(t, tr, e, opGetxattr, 5, u32s(0, 0), []byte("user.x\x00"))
	if r.errno != 0 || len(r.payload) != 8 || binary.LittleEndian.Uint32(r.payload) != uint32(len(want)) {
		t.Errorf("size query: errno %d payload %x", r.errno, r.payload)
	}
	r = serveOne(t, tr, e, opGetxattr, 5, u32s(100, 0), []byte("user.x\x00"))
	if r.errno != 0 || string(r.payload) != want {
		t.Errorf("value: errno %d payload %q", r.errno, r.payload)
	}
	r = serveOne(t, tr, e, opGetxattr, 5, u32s(3, 0), []byte("user.x\x00"))
	if r.errno != -int32(fuse.ERANGE) {
		t.Errorf("short buffer: errno %d, want ERANGE", r.errno)
	}
	// The default ListXAttr answers ENOSYS, which the kernel remembers.
	if r := serveOne(t, tr, e, opListxattr, 5, u32s(100, 0), nil); r.errno != -int32(fuse.ENOSYS) {
		t.Errorf("listxattr: errno %d, want ENOSYS", r.errno)
	}
}

func TestServeReadAndReaddir(t *testing.T) {
	tr, e := newTestTransport(t, &fakeFS{RawFileSystem: fuse.NewDefaultRawFileSystem()})
	// struct fuse_read_in: fh, offset, size, read_flags, lock_owner, flags.
	readIn := make([]byte, 40)
	binary.LittleEndian.PutUint32(readIn[16:], 100)
	r := serveOne(t, tr, e, opRead, 5, readIn, nil)
	if r.errno != 0 || string(r.payload) != string(bytes.Repeat([]byte{'x'}, 50)) {
		t.Errorf("read: errno %d payload %q", r.errno, r.payload)
	}

	binary.LittleEndian.PutUint32(readIn[16:], 4096)
	r = serveOne(t, tr, e, opReaddirplus, 5, readIn, nil)
	ents, outs, err := fuse.ParseDirLookupEntries(r.payload)
	if r.errno != 0 || err != nil || len(ents) != 3 || ents[2].Name != "ccc" || outs[1].NodeId != 11 {
		t.Errorf("readdirplus: errno %d, %v, %v", r.errno, err, ents)
	}
}

func TestServeNamesAndFailures(t *testing.T) {
	fs := &fakeFS{RawFileSystem: fuse.NewDefaultRawFileSystem()}
	tr, e := newTestTransport(t, fs)
	if r := serveOne(t, tr, e, opSymlink, 5, nil, []byte("link\x00target\x00")); r.errno != -int32(fuse.EROFS) {
		t.Errorf("symlink: errno %d, want EROFS", r.errno)
	}
	if len(fs.names) != 2 || fs.names[0] != "link" || fs.names[1] != "target" {
		t.Errorf("symlink names %q, want [link target]", fs.names)
	}
	// A panic is an EIO answer, not a dead server.
	if r := serveOne(t, tr, e, opGetattr, 5, make([]byte, 16), nil); r.errno != -int32(fuse.EIO) {
		t.Errorf("panicking getattr: errno %d, want EIO", r.errno)
	}
	// Opcodes the file system does not implement are what go-fuse's
	// defaults say: ENOSYS.
	if r := serveOne(t, tr, e, opGetlk, 5, make([]byte, 48), nil); r.errno != -int32(fuse.ENOSYS) {
		t.Errorf("getlk: errno %d, want ENOSYS", r.errno)
	}
}

func TestParseCPUs(t *testing.T) {
	for list, want := range map[string]string{"0": "[0]", "0-1": "[0 1]", "0-2,8-9": "[0 1 2 8 9]", "0,2,4": "[0 2 4]"} {
		if cpus, err := parseCPUs(list); err != nil || fmt.Sprint(cpus) != want {
			t.Errorf("parseCPUs(%q) = %v, %v; want %s", list, cpus, err, want)
		}
	}
	for _, bad := range []string{"", "x", "3-1", "0-", "-1", "0-99999999"} {
		if cpus, err := parseCPUs(bad); err == nil {
			t.Errorf("parseCPUs(%q) = %v, want an error", bad, cpus)
		}
	}
}

// FuzzServe feeds arbitrary requests through an entry: whatever the opcode,
// headers and variable part, it must answer (never panic) with a
// well-formed reply.
func FuzzServe(f *testing.F) {
	f.Add(uint32(opLookup), uint64(1), []byte{}, []byte("name\x00"))
	f.Add(uint32(opGetxattr), uint64(5), u32s(0, 0), []byte("user.x\x00"))
	f.Add(uint32(opRead), uint64(5), make([]byte, 40), []byte{})
	f.Add(uint32(opSymlink), uint64(1), []byte{}, []byte("a\x00b"))
	f.Add(uint32(opSetxattr), uint64(1), u32s(9, 0), []byte("user.y\x00vv"))
	f.Fuzz(func(t *testing.T, op uint32, node uint64, opIn, payload []byte) {
		tr := &Transport{h: newHandler(&boundedFS{fakeFS{RawFileSystem: fuse.NewDefaultRawFileSystem()}}), payload: 16 << 10}
		e, err := tr.newEntry(0)
		if err != nil {
			t.Fatal(err)
		}
		defer e.free()
		request(e, op, node, 9, opIn[:min(len(opIn), opInSize)], payload[:min(len(payload), len(e.payload))])
		if tr.serve(e) != 9 {
			t.Fatal("commit id not echoed")
		}
		length := binary.LittleEndian.Uint32(e.hdr[hdrInOut:])
		errno := int32(binary.LittleEndian.Uint32(e.hdr[hdrInOut+4:]))
		n := binary.LittleEndian.Uint32(e.hdr[entPayloadSz:])
		if length != 16+n || int(n) > len(e.payload) || errno > 0 || (errno != 0 && n != 0) {
			t.Fatalf("reply: len %d errno %d payload %d", length, errno, n)
		}
	})
}

// boundedFS is fakeFS with reads kept to the buffer the kernel gave, as a
// real file system's are.
type boundedFS struct{ fakeFS }

func (b *boundedFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	return fuse.ReadResultData(bytes.Repeat([]byte{'x'}, len(buf)/2)), fuse.OK
}

// TestPlanThreads: few CPUs get maxPerQueue threads each; many share
// maxThreads in all, every queue has exactly one entry per thread serving
// it, and the queues of offline CPUs share one unpinned thread.
func TestPlanThreads(t *testing.T) {
	cpus := func(n int) []int {
		c := make([]int, n)
		for i := range c {
			c[i] = i
		}
		return c
	}
	onlineUpTo := func(n int) map[int]bool {
		m := map[int]bool{}
		for i := range n {
			m[i] = true
		}
		return m
	}
	for _, tc := range []struct {
		possible, online int
		threads, entries int
	}{
		{2, 2, 16, 16},
		{8, 4, 33, 36},
		{64, 64, 64, 64},
		{65, 65, 64, 65},
		{192, 192, 64, 192},
		{256, 2, 17, 270},
	} {
		plans := planThreads(cpus(tc.possible), onlineUpTo(tc.online))
		entries := 0
		perQueue := map[int]int{}
		for _, p := range plans {
			entries += len(p.queues)
			for _, q := range p.queues {
				perQueue[q]++
			}
			for _, c := range p.cpus {
				if c >= tc.online {
					t.Errorf("%d/%d: a thread pinned to offline cpu %d", tc.online, tc.possible, c)
				}
			}
		}
		if len(plans) != tc.threads || entries != tc.entries || len(perQueue) != tc.possible {
			t.Errorf("%d online of %d: %d threads, %d entries, %d queues served; want %d, %d, %d",
				tc.online, tc.possible, len(plans), entries, len(perQueue), tc.threads, tc.entries, tc.possible)
		}
		if len(plans) > maxThreads {
			t.Errorf("%d online of %d: %d threads", tc.online, tc.possible, len(plans))
		}
	}
}
