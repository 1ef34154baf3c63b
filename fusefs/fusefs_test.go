package fusefs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/composefs"
)

// testTree is a small tree with every kind of entry, its objects, and a
// store holding them (bad: same size, one byte flipped; missing: absent).
type testTree struct {
	dump                   string
	ext, nodigest, bad, ms object
	store                  dirStore
}

func newTestTree(t testing.TB) *testTree {
	rng := rand.New(rand.NewPCG(1, 2))
	content := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	tt := &testTree{
		ext:      newObject(content(100_000)),
		nodigest: newObject(content(5000)),
		bad:      newObject(content(9000)),
		ms:       newObject(content(10)),
		store:    dirStore(t.TempDir()),
	}
	tt.ext.Put(t, string(tt.store), tt.ext.Content)
	tt.nodigest.Put(t, string(tt.store), tt.nodigest.Content)
	flipped := bytes.Clone(tt.bad.Content)
	flipped[4321] ^= 0x40
	tt.bad.Put(t, string(tt.store), flipped)

	var b strings.Builder
	b.WriteString("/ 0 40755 4 0 0 0 1000.5 - - - user.root=1\n")
	b.WriteString("/dir 0 40750 2 1 2 0 2000.123456789 - - - user.a=1 trusted.overlay.custom=2 security.x=s\n")
	b.WriteString("/dir/inline 5 100644 2 0 0 0 1000.0 - hello -\n")
	b.WriteString("/dir/hl 0 @100644 0 0 0 0 0.0 /dir/inline - -\n")
	fmt.Fprintf(&b, "/dir/ext %d 100640 1 3 4 0 1000.0 %s - %s\n", len(tt.ext.Content), tt.ext.Payload, tt.ext.Digest)
	fmt.Fprintf(&b, "/dir/nodigest %d 100644 1 0 0 0 1000.0 %s - -\n", len(tt.nodigest.Content), tt.nodigest.Payload)
	fmt.Fprintf(&b, "/dir/bad %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tt.bad.Content), tt.bad.Payload, tt.bad.Digest)
	fmt.Fprintf(&b, "/dir/missing %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tt.ms.Content), tt.ms.Payload, tt.ms.Digest)
	b.WriteString("/dir/link 6 120777 1 0 0 0 1000.0 target - -\n")
	b.WriteString("/wdir 0 40755 2 0 0 0 1000.0 - - -\n")
	b.WriteString("/wdir/wh 0 20000 1 0 0 0 1000.0 - - -\n")
	b.WriteString("/wdir/f 0 100644 1 0 0 0 1000.0 - - -\n")
	b.WriteString("/dev 0 20644 1 0 0 259 1000.0 - - -\n")
	b.WriteString("/fifo 0 10644 1 0 0 0 1000.0 - - -\n")
	tt.dump = b.String()
	return tt
}

func TestAttributes(t *testing.T) {
	tt := newTestTree(t)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			s := newServer(t, imageFromDump(t, tt.dump, v), testConfig{Store: tt.store})
			dir := s.mustLookup("dir")
			if dir.Mode != syscall.S_IFDIR|0o750 || dir.Uid != 1 || dir.Gid != 2 {
				t.Errorf("dir: mode %o uid %d gid %d", dir.Mode, dir.Uid, dir.Gid)
			}
			if dir.EntryTimeout() < 24*3600e9 || dir.AttrTimeout() < 24*3600e9 {
				t.Errorf("dir: cached for %v and %v only", dir.EntryTimeout(), dir.AttrTimeout())
			}
			// composefs-rs' V2 layout keeps no nanoseconds.
			nsec := uint32(123456789)
			if v == 2 {
				nsec = 0
			}
			if dir.Mtime != 2000 || dir.Mtimensec != nsec || dir.Ctime != 2000 || dir.Atimensec != nsec {
				t.Errorf("dir: mtime %d.%d ctime %d", dir.Mtime, dir.Mtimensec, dir.Ctime)
			}
			ext := s.mustLookup("dir/ext")
			if ext.Mode != syscall.S_IFREG|0o640 || ext.Size != uint64(len(tt.ext.Content)) || ext.Uid != 3 || ext.Gid != 4 {
				t.Errorf("ext: mode %o size %d uid %d gid %d", ext.Mode, ext.Size, ext.Uid, ext.Gid)
			}
			if ext.Blocks != (ext.Size+4095)/4096*8 || ext.Blksize != 4096 {
				t.Errorf("ext: blocks %d blksize %d", ext.Blocks, ext.Blksize)
			}
			// Hardlinks share the nid: one node id, one inode number.
			inl, hl := s.mustLookup("dir/inline"), s.mustLookup("dir/hl")
			if inl.NodeId != hl.NodeId || inl.Ino != hl.Ino || inl.Nlink != 2 {
				t.Errorf("hardlinks: node %d and %d, ino %d and %d, nlink %d", inl.NodeId, hl.NodeId, inl.Ino, hl.Ino, inl.Nlink)
			}
			dev := s.mustLookup("dev")
			if dev.Mode != syscall.S_IFCHR|0o644 || dev.Rdev != 259 {
				t.Errorf("dev: mode %o rdev %d", dev.Mode, dev.Rdev)
			}
			if fifo := s.mustLookup("fifo"); fifo.Mode != syscall.S_IFIFO|0o644 {
				t.Errorf("fifo: mode %o", fifo.Mode)
			}
			ln := s.mustLookup("dir/link")
			h := header(ln.NodeId, rootCaller)
			target, st := s.fsys.Readlink(nil, &h)
			if !st.Ok() || string(target) != "target" || ln.Size != 6 {
				t.Errorf("link: %q %v size %d", target, st, ln.Size)
			}
			// The inode number is the nid, as the kernel's EROFS reports it;
			// the root is FUSE's root node.
			root := s.mustLookup("")
			if root.Ino != s.fsys.img.RootNid() || root.Mtime != 1000 || root.Mtimensec != 5 && v != 2 {
				t.Errorf("root: ino %d (root nid %d) mtime %d.%d", root.Ino, s.fsys.img.RootNid(), root.Mtime, root.Mtimensec)
			}
			if dir.Ino+1 != dir.NodeId {
				t.Errorf("dir: node id %d for nid %d", dir.NodeId, dir.Ino)
			}
			var ga fuse.AttrOut
			if st := s.fsys.GetAttr(nil, &fuse.GetAttrIn{InHeader: header(ext.NodeId, rootCaller)}, &ga); !st.Ok() || ga.Attr != ext.Attr || ga.Timeout() < 24*3600e9 {
				t.Errorf("getattr ext: %v %+v, timeout %v", st, ga.Attr, ga.Timeout())
			}
			missing, st := s.lookup("dir/nonexistent")
			if !st.Ok() && st != fuse.ENOENT || missing.NodeId != 0 || missing.EntryTimeout() < 24*3600e9 {
				t.Errorf("lookup of a missing name: %v node %d, cached %v; want a negative entry cached for good", st, missing.NodeId, missing.EntryTimeout())
			}
			if _, st := s.lookup("fifo/x"); st != fuse.ENOTDIR {
				t.Errorf("lookup below a fifo: %v", st)
			}
		})
	}
}

func TestWhiteouts(t *testing.T) {
	tt := newTestTree(t)
	// V0/V1: the root holds 256 stubs, hidden; the user's whiteout is
	// escaped into an empty regular file with its xattrs unescaped.
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	names, _ := s.readdir("")
	if want := []string{".", "..", "dev", "dir", "fifo", "wdir"}; !slices.Equal(sorted(names), want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
	if _, st := s.lookup("00"); st != fuse.ENOENT {
		t.Errorf("lookup of stub 00: %v, want ENOENT", st)
	}
	wh := s.mustLookup("wdir/wh")
	if wh.Mode&syscall.S_IFMT != syscall.S_IFREG || wh.Size != 0 {
		t.Errorf("v1 escaped whiteout: mode %o size %d", wh.Mode, wh.Size)
	}
	if v, st := s.getxattr(rootCaller, "wdir/wh", "trusted.overlay.whiteout"); !st.Ok() || v != "" {
		t.Errorf("v1 escaped whiteout xattr: %q %v", v, st)
	}

	// V2 keeps the whiteout as chardev 0/0: as under overlayfs, a listing
	// of a directory other than the root shows it, a lookup does not find
	// it.
	s = newServer(t, imageFromDump(t, tt.dump, 2), testConfig{Store: tt.store})
	names, lookups := s.readdir("wdir")
	if !slices.Contains(names, "wh") {
		t.Errorf("v2 dir lists %q, want wh among them", names)
	}
	if lookups["wh"] != fuse.ENOENT || lookups["f"] != fuse.OK {
		t.Errorf("v2 readdirplus lookups: %v", lookups)
	}
	if _, st := s.lookup("wdir/wh"); st != fuse.ENOENT {
		t.Errorf("v2 lookup of whiteout: %v, want ENOENT", st)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRootWhiteoutHidden(t *testing.T) {
	dump := "/ 0 40755 2 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n"
	s := newServer(t, imageFromDump(t, dump, 2), testConfig{})
	names, _ := s.readdir("")
	if want := []string{".", "..", "a"}; !slices.Equal(names, want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
}

// TestReaddirOffsets lists a large directory in requests of every size: the
// offsets the kernel gets back resume the listing exactly, and stay valid
// later (a listing keeps no state).
func TestReaddirOffsets(t *testing.T) {
	var b strings.Builder
	b.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/big 0 40755 2 0 0 0 0.0 - - -\n")
	var want []string
	for i := range 1500 {
		name := fmt.Sprintf("entry-with-a-longish-name-%05d", i)
		want = append(want, name)
		fmt.Fprintf(&b, "/big/%s 0 100644 1 0 0 0 0.0 - - -\n", name)
	}
	s := newServer(t, imageFromDump(t, b.String(), 1), testConfig{})
	big := s.mustLookup("big")
	want = append(want, ".", "..")
	slices.Sort(want)
	var first []dirent
	for _, size := range []int{200, 4096, 65536} {
		ents, st := s.listAll(big.NodeId, size)
		if !st.Ok() {
			t.Fatalf("size %d: %v", size, st)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name)
			if e.Name != "." && e.Name != ".." && (e.entry.NodeId != e.Ino+1 || e.entry.Mode != syscall.S_IFREG|0o644) {
				t.Fatalf("size %d: %s: entry %+v", size, e.Name, e.entry)
			}
		}
		if !slices.Equal(sorted(names), want) {
			t.Fatalf("size %d: %d names, want %d", size, len(names), len(want))
		}
		if first == nil {
			first = ents
		}
	}
	// Resuming from any offset gives the rest.
	for _, i := range []int{0, 1, 299, 300, 700, len(first) - 2} {
		ents, _ := s.readdirplus(big.NodeId, first[i].Off, 4096)
		if len(ents) == 0 || ents[0].Name != first[i+1].Name {
			t.Errorf("resuming after %s: got %v", first[i].Name, ents)
		}
	}
	if ents, st := s.readdirplus(big.NodeId, first[len(first)-1].Off, 4096); !st.Ok() || len(ents) != 0 {
		t.Errorf("past the end: %d entries, %v", len(ents), st)
	}
	if ents, st := s.readdirplus(big.NodeId, 1<<40, 4096); !st.Ok() || len(ents) != 0 {
		t.Errorf("far past the end: %d entries, %v", len(ents), st)
	}
}

func TestXattrs(t *testing.T) {
	tt := newTestTree(t)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			s := newServer(t, imageFromDump(t, tt.dump, v), testConfig{Store: tt.store})
			got := sorted(s.listxattr(rootCaller, "dir"))
			if want := []string{"security.x", "trusted.overlay.custom", "user.a"}; !slices.Equal(got, want) {
				t.Errorf("dir xattrs %q, want %q", got, want)
			}
			if got := s.listxattr(userCaller, "dir"); !slices.Equal(sorted(got), []string{"security.x", "user.a"}) {
				t.Errorf("dir xattrs for a user %q", got)
			}
			if got := s.listxattr(rootCaller, "dir/ext"); len(got) != 0 {
				t.Errorf("ext lists private xattrs: %q", got)
			}
			for name, want := range map[string]string{"user.a": "1", "trusted.overlay.custom": "2", "security.x": "s"} {
				if v, st := s.getxattr(rootCaller, "dir", name); !st.Ok() || v != want {
					t.Errorf("getxattr %s = %q, %v; want %q", name, v, st, want)
				}
			}
			for name, want := range map[string]fuse.Status{
				"trusted.overlay.overlay.custom": fuse.ENODATA,
				"user.nope":                      fuse.ENODATA,
				"trusted.overlay.":               fuse.EINVAL,
				"user.":                          fuse.EINVAL,
				"foo.bar":                        fuse.Status(syscall.EOPNOTSUPP),
			} {
				if _, st := s.getxattr(rootCaller, "dir", name); st != want {
					t.Errorf("getxattr %s: %v, want %v", name, st, want)
				}
			}
			if _, st := s.getxattr(userCaller, "dir", "trusted.overlay.custom"); st != fuse.ENODATA {
				t.Errorf("getxattr trusted.* for a user: %v, want ENODATA", st)
			}
			for _, name := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
				if _, st := s.getxattr(rootCaller, "dir/ext", name); st != fuse.ENODATA {
					t.Errorf("getxattr %s of an external file: %v, want ENODATA", name, st)
				}
			}
			h := header(s.mustLookup("dir").NodeId, rootCaller)
			if sz, st := s.fsys.GetXAttr(nil, &h, "user.a", nil); st != fuse.ERANGE || sz != 1 {
				t.Errorf("getxattr into no buffer: %d %v, want 1 ERANGE", sz, st)
			}
		})
	}
}

func TestContents(t *testing.T) {
	tt := newTestTree(t)
	for _, mode := range []composefs.VerityMode{composefs.VerityOn, composefs.VerityRequire, composefs.VerityOff} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store, Verity: mode})
			if got, st := s.readFile("dir/inline"); !st.Ok() || string(got) != "hello" {
				t.Errorf("inline: %q %v", got, st)
			}
			if got, st := s.readFile("dir/ext"); !st.Ok() || !bytes.Equal(got, tt.ext.Content) {
				t.Errorf("ext: %d bytes, %v", len(got), st)
			}
			got, st := s.readFile("dir/nodigest")
			if mode == composefs.VerityRequire {
				if st != fuse.EIO {
					t.Errorf("nodigest under require: %v, want EIO", st)
				}
			} else if !st.Ok() || !bytes.Equal(got, tt.nodigest.Content) {
				t.Errorf("nodigest: %d bytes, %v", len(got), st)
			}
			got, st = s.readFile("dir/bad")
			if mode == composefs.VerityOff {
				if !st.Ok() || len(got) != len(tt.bad.Content) {
					t.Errorf("bad under off: %d bytes, %v", len(got), st)
				}
			} else {
				if st != fuse.EIO {
					t.Errorf("bad: %v, want EIO", st)
				}
				if !strings.Contains(s.log.String(), "/dir/bad") || !strings.Contains(s.log.String(), tt.bad.Payload) {
					t.Errorf("log does not name the file and object:\n%s", s.log.String())
				}
			}
			if _, st := s.readFile("dir/missing"); st != fuse.ENOENT {
				t.Errorf("missing object: %v, want ENOENT", st)
			}
			// The mount lives on: other files still read.
			if got, st := s.readFile("dir/ext"); !st.Ok() || !bytes.Equal(got, tt.ext.Content) {
				t.Errorf("ext after failures: %d bytes, %v", len(got), st)
			}
			if n := openObjects(s.fsys); n != 0 {
				t.Errorf("%d objects still open after every release", n)
			}
		})
	}
}

// openObjects counts the objects an open holds (not the idle ones).
func openObjects(f *FS) int {
	f.objMu.Lock()
	defer f.objMu.Unlock()
	n := 0
	for _, o := range f.open {
		if o.refs > 0 {
			n++
		}
	}
	return n
}

// TestOpenObjectShared: opens of one external file share its object; after
// the last release it stays, idle, for the next open, until the kernel
// forgets the inode.
func TestOpenObjectShared(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	ext := s.mustLookup("dir/ext")
	in := fuse.OpenIn{InHeader: header(ext.NodeId, rootCaller), Flags: syscall.O_RDONLY}
	var a, b fuse.OpenOut
	if st := s.fsys.Open(nil, &in, &a); !st.Ok() {
		t.Fatal(st)
	}
	if st := s.fsys.Open(nil, &in, &b); !st.Ok() {
		t.Fatal(st)
	}
	if a.Fh != fhObject || b.Fh != fhObject || len(s.fsys.open) != 1 {
		t.Fatalf("handles %d %d, %d objects held", a.Fh, b.Fh, len(s.fsys.open))
	}
	rel := fuse.ReleaseIn{InHeader: in.InHeader, Fh: a.Fh}
	s.fsys.Release(nil, &rel)
	if len(s.fsys.open) != 1 {
		t.Errorf("object let go while still open")
	}
	held := s.fsys.heldObject(s.fsys.nidOf(ext.NodeId))
	s.fsys.Release(nil, &rel)
	if openObjects(s.fsys) != 0 || s.fsys.idle.n != 1 {
		t.Fatalf("after the last release: %d open, %d idle", openObjects(s.fsys), s.fsys.idle.n)
	}
	// The next open takes the idle object.
	if st := s.fsys.Open(nil, &in, &a); !st.Ok() {
		t.Fatalf("open of the idle object: %v", st)
	}
	if s.fsys.heldObject(s.fsys.nidOf(ext.NodeId)) != held || s.fsys.idle.n != 0 {
		t.Errorf("the open did not take the idle object")
	}
	s.fsys.Release(nil, &rel)
	// Once the kernel forgets the inode, the object is let go of, and an
	// open looks in the store again.
	s.fsys.Forget(ext.NodeId, 1)
	if len(s.fsys.open) != 0 || s.fsys.idle.n != 0 {
		t.Errorf("after FORGET: %d objects held, %d idle", len(s.fsys.open), s.fsys.idle.n)
	}
	if err := os.Rename(filepath.Join(string(tt.store), tt.ext.Payload), filepath.Join(string(tt.store), tt.ext.Payload+".away")); err != nil {
		t.Fatal(err)
	}
	if _, st := s.fsys.Read(nil, &fuse.ReadIn{InHeader: in.InHeader, Fh: fhObject, Size: 10}, make([]byte, 10)); st != fuse.EBADF {
		t.Errorf("read of a forgotten object: %v, want EBADF", st)
	}
	if st := s.fsys.Open(nil, &in, &a); st != fuse.ENOENT {
		t.Errorf("open after FORGET with the object gone from the store: %v, want ENOENT", st)
	}
}

// TestNoOpen: without Passthrough (the default), OPEN answers ENOSYS (the kernel then opens
// files itself) and READ with no handle reads the object, checked at the
// first read and held, idle, for the next.
func TestNoOpen(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store, NoOpen: true})
	read := func(name string, off uint64, size int) ([]byte, fuse.Status) {
		return s.readUnopened(s.mustLookup(name).NodeId, off, size)
	}
	ext := s.mustLookup("dir/ext")
	var out fuse.OpenOut
	if st := s.fsys.Open(nil, &fuse.OpenIn{InHeader: header(ext.NodeId, rootCaller), Flags: syscall.O_RDONLY}, &out); st != fuse.ENOSYS {
		t.Fatalf("OPEN: %v, want ENOSYS", st)
	}
	got, st := read("dir/ext", 1000, 5000)
	if !st.Ok() || !bytes.Equal(got, tt.ext.Content[1000:6000]) {
		t.Errorf("ext: %d bytes, %v", len(got), st)
	}
	if got, st := read("dir/inline", 0, 100); !st.Ok() || string(got) != "hello" {
		t.Errorf("inline: %q, %v", got, st)
	}
	if _, st := read("dir/bad", 0, 100); st != fuse.EIO {
		t.Errorf("bad: %v, want EIO", st)
	}
	if _, st := read("dir/missing", 0, 100); st != fuse.ENOENT {
		t.Errorf("missing: %v, want ENOENT", st)
	}
	// The object read first is held, idle, and the next read takes it.
	if openObjects(s.fsys) != 0 || s.fsys.idle.n != 1 {
		t.Errorf("after the reads: %d objects open, %d idle, want 0 and 1", openObjects(s.fsys), s.fsys.idle.n)
	}
	held := s.fsys.heldObject(s.fsys.nidOf(ext.NodeId))
	if got, st := read("dir/ext", 0, len(tt.ext.Content)); !st.Ok() || !bytes.Equal(got, tt.ext.Content) {
		t.Errorf("ext again: %d bytes, %v", len(got), st)
	}
	if held == nil || s.fsys.heldObject(s.fsys.nidOf(ext.NodeId)) != held {
		t.Errorf("the second read did not take the idle object")
	}
}

// TestFailedReadAnsweredAgain: without OPEN, one read(2) of a file whose
// object is bad sends two READs (the kernel's read-ahead, then the read).
// The second gets the first's answer without the object being looked for
// or logged again; once failAgainFor has passed, a READ tries anew.
func TestFailedReadAnsweredAgain(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store, NoOpen: true})
	read := func(name string) fuse.Status {
		_, st := s.readUnopened(s.mustLookup(name).NodeId, 0, 100)
		return st
	}
	logged := func(name string) int { return strings.Count(s.log.String(), name) }
	for _, c := range []struct {
		name string
		want fuse.Status
	}{{"dir/bad", fuse.EIO}, {"dir/missing", fuse.ENOENT}} {
		for range 2 {
			if st := read(c.name); st != c.want {
				t.Errorf("%s: %v, want %v", c.name, st, c.want)
			}
		}
		if n := logged("/" + c.name); n != 1 {
			t.Errorf("%s named in %d log lines after two reads, want 1:\n%s", c.name, n, s.log.String())
		}
	}
	time.Sleep(failAgainFor)
	if st := read("dir/bad"); st != fuse.EIO {
		t.Errorf("dir/bad after %v: %v, want EIO", failAgainFor, st)
	}
	if n := logged("/dir/bad"); n != 2 {
		t.Errorf("dir/bad named in %d log lines after a read %v later, want 2 (tried anew)", n, failAgainFor)
	}
}

// TestIdleObjectRewritten: an idle object written to in place since it was
// checked is not taken again: the next open checks the file anew, and
// with verity on refuses the new content.
func TestIdleObjectRewritten(t *testing.T) {
	_, s, objPath, in, out := openOldExt(t)
	s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
	if s.fsys.idle.n != 1 {
		t.Fatalf("%d idle objects after the release, want 1", s.fsys.idle.n)
	}
	rewriteAt(t, objPath, []byte("rewritten"), 100)
	if st := s.fsys.Open(nil, &in, &out); st != fuse.EIO {
		t.Errorf("open after the object was rewritten: %v, want EIO", st)
	}
	if len(s.fsys.open) != 0 {
		t.Errorf("%d objects held after the refused open", len(s.fsys.open))
	}
}

// TestIdleObjectsBounded: past the cap, a released object is let go of and
// those idle stay.
func TestIdleObjectsBounded(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	s.fsys.idleMax = 1
	var nids []uint64
	for _, name := range []string{"dir/ext", "dir/nodigest"} {
		e := s.mustLookup(name)
		in := fuse.OpenIn{InHeader: header(e.NodeId, rootCaller), Flags: syscall.O_RDONLY}
		var out fuse.OpenOut
		if st := s.fsys.Open(nil, &in, &out); !st.Ok() {
			t.Fatalf("open %s: %v", name, st)
		}
		s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
		nids = append(nids, s.fsys.nidOf(e.NodeId))
	}
	if s.fsys.heldObject(nids[0]) == nil || s.fsys.heldObject(nids[1]) != nil || s.fsys.idle.n != 1 {
		t.Errorf("with room for one idle object: first held %v, second held %v, %d idle",
			s.fsys.heldObject(nids[0]) != nil, s.fsys.heldObject(nids[1]) != nil, s.fsys.idle.n)
	}
}

func TestNoStore(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Verity: composefs.VerityOff})
	if _, st := s.readFile("dir/ext"); st != fuse.ENOENT {
		t.Errorf("external file without a store: %v, want ENOENT", st)
	}
}

func TestReadOnly(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	dir := header(s.mustLookup("dir").NodeId, rootCaller)
	file := header(s.mustLookup("dir/inline").NodeId, rootCaller)
	f := s.fsys
	var eo fuse.EntryOut
	var ao fuse.AttrOut
	var co fuse.CreateOut
	var oo fuse.OpenOut
	checks := map[string]fuse.Status{}
	checks["mkdir"] = f.Mkdir(nil, &fuse.MkdirIn{InHeader: dir}, "x", &eo)
	checks["mknod"] = f.Mknod(nil, &fuse.MknodIn{InHeader: dir}, "x", &eo)
	checks["link"] = f.Link(nil, &fuse.LinkIn{InHeader: dir, Oldnodeid: file.NodeId}, "x", &eo)
	checks["symlink"] = f.Symlink(nil, &dir, "t", "x", &eo)
	checks["create"] = f.Create(nil, &fuse.CreateIn{InHeader: dir}, "x", &co)
	checks["tmpfile"] = f.Tmpfile(nil, &fuse.CreateIn{InHeader: dir}, &co)
	checks["unlink"] = f.Unlink(nil, &dir, "inline")
	checks["rmdir"] = f.Rmdir(nil, &dir, "x")
	checks["rename"] = f.Rename(nil, &fuse.RenameIn{InHeader: dir, Newdir: dir.NodeId}, "inline", "y")
	checks["setattr"] = f.SetAttr(nil, &fuse.SetAttrIn{SetAttrInCommon: fuse.SetAttrInCommon{InHeader: file}}, &ao)
	checks["setxattr"] = f.SetXAttr(nil, &fuse.SetXAttrIn{InHeader: file}, "user.x", []byte("1"))
	checks["removexattr"] = f.RemoveXAttr(nil, &file, "user.x")
	_, checks["write"] = f.Write(nil, &fuse.WriteIn{InHeader: file}, []byte("x"))
	checks["fallocate"] = f.Fallocate(nil, &fuse.FallocateIn{InHeader: file})
	_, checks["copy_file_range"] = f.CopyFileRange(nil, &fuse.CopyFileRangeIn{InHeader: file})
	checks["open O_WRONLY"] = f.Open(nil, &fuse.OpenIn{InHeader: file, Flags: syscall.O_WRONLY}, &oo)
	checks["open O_RDWR"] = f.Open(nil, &fuse.OpenIn{InHeader: file, Flags: syscall.O_RDWR}, &oo)
	checks["open O_TRUNC"] = f.Open(nil, &fuse.OpenIn{InHeader: file, Flags: syscall.O_RDONLY | syscall.O_TRUNC}, &oo)
	for op, st := range checks {
		if st != fuse.EROFS {
			t.Errorf("%s: %v, want EROFS", op, st)
		}
	}
	if st := f.Flush(nil, &fuse.FlushIn{InHeader: file}); st != fuse.ENOSYS {
		t.Errorf("flush: %v, want ENOSYS", st)
	}
}

func TestStatfs(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	var out fuse.StatfsOut
	h := header(fuse.FUSE_ROOT_ID, rootCaller)
	if st := s.fsys.StatFs(nil, &h, &out); !st.Ok() {
		t.Fatal(st)
	}
	sb := s.fsys.img.Superblock()
	if out.Blocks != uint64(sb.Blocks) || out.Bsize != 4096 || out.NameLen != 255 || out.Bfree != 0 || out.Ffree != ^uint64(0)-sb.Inos {
		t.Errorf("statfs %+v (superblock blocks %d inos %d)", out, sb.Blocks, sb.Inos)
	}
}

func TestFuseOptions(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	o := s.fsys.FuseOptions(MountOptions{MaxStackDepth: 2, Options: []string{"nodev"}})
	if !o.EnableSymlinkCaching || o.MaxWrite != 1<<20 || o.MaxStackDepth != 2 || o.PanicHandler == nil {
		t.Errorf("options %+v", o)
	}
	if !slices.Contains(o.Options, "ro") || !slices.Contains(o.Options, "nodev") || !slices.Contains(o.Options, "default_permissions") {
		t.Errorf("mount options %q", o.Options)
	}
	if d := StackDepthFor(t.TempDir()); d != 1 {
		t.Errorf("StackDepthFor a plain dir: %d", d)
	}
}

func TestLogPaths(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	bad := s.mustLookup("dir/bad")
	if p := s.fsys.pathOf(bad.Ino); p != "/dir/bad" {
		t.Errorf("pathOf bad: %q", p)
	}
	if p := s.fsys.pathOf(s.fsys.img.RootNid()); p != "/" {
		t.Errorf("pathOf root: %q", p)
	}
	if p := s.fsys.pathOf(1 << 30); p != fmt.Sprintf("inode %d", 1<<30) {
		t.Errorf("pathOf a nid nowhere: %q", p)
	}
}

// An open that finds no descriptor left lets go of idle objects and tries
// again, rather than fail: the idle objects may take most of the limit.
func TestOpenShedsIdleObjects(t *testing.T) {
	tt := newTestTree(t)
	// No read-ahead: nothing else opens objects meanwhile.
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store, NoReadAhead: true})
	open := func(name string) (fuse.OpenIn, fuse.OpenOut, fuse.Status) {
		in := fuse.OpenIn{InHeader: header(s.mustLookup(name).NodeId, rootCaller), Flags: syscall.O_RDONLY}
		var out fuse.OpenOut
		return in, out, s.fsys.Open(nil, &in, &out)
	}
	in, out, st := open("dir/ext")
	if !st.Ok() {
		t.Fatalf("open dir/ext: %v", st)
	}
	s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
	if s.fsys.idle.n != 1 {
		t.Fatalf("%d idle objects after one release, want 1", s.fsys.idle.n)
	}
	extNid := s.fsys.nidOf(s.mustLookup("dir/ext").NodeId)
	nodigest := s.mustLookup("dir/nodigest")
	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()

	// Take every descriptor below a limit just above the highest open.
	// (Setting the limit also keeps it, not Go's saved one, for any
	// process this test binary starts later: harmless, and restored
	// below as far as it can be.)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	top := 0
	for _, e := range fds {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			top = max(top, n)
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: uint64(top + 1), Max: lim.Max}); err != nil {
		t.Fatal(err)
	}
	var filled []int
	defer func() {
		for _, fd := range filled {
			syscall.Close(fd)
		}
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}()
	for {
		fd, err := syscall.Dup(int(null.Fd()))
		if err == syscall.EMFILE {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		filled = append(filled, fd)
	}

	if fd, err := syscall.Dup(int(null.Fd())); err != syscall.EMFILE {
		syscall.Close(fd)
		t.Fatalf("a descriptor was left after filling: %v", err)
	}
	in = fuse.OpenIn{InHeader: header(nodigest.NodeId, rootCaller), Flags: syscall.O_RDONLY}
	if st := s.fsys.Open(nil, &in, &out); !st.Ok() {
		t.Fatalf("open with no descriptor left but an idle object's: %v", st)
	}
	if s.fsys.idle.n != 0 || s.fsys.heldObject(extNid) != nil {
		t.Errorf("after an open that ran out of descriptors: %d idle objects, dir/ext held %v; want none",
			s.fsys.idle.n, s.fsys.heldObject(extNid) != nil)
	}
	s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
}

// pushCounter is a connection that counts the page-cache pushes it is
// asked for and has no passthrough.
type pushCounter struct{ pushes map[uint64]int }

func (c *pushCounter) RegisterBackingFd(*fuse.BackingMap) (int32, syscall.Errno) {
	return 0, syscall.EPERM
}
func (c *pushCounter) UnregisterBackingFd(int32) syscall.Errno { return 0 }
func (c *pushCounter) InodeNotifyStoreCache(node uint64, off int64, data []byte) fuse.Status {
	c.pushes[node]++
	return fuse.OK
}

// The content of a small file in the image is pushed into the kernel's
// page cache at its first open, not again while the kernel keeps the
// inode, and again once it has forgotten it.
func TestStoreSmallOncePerInode(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	conn := &pushCounter{pushes: map[uint64]int{}}
	s.fsys.conn = conn
	id := s.mustLookup("dir/inline").NodeId
	open := func() {
		in := fuse.OpenIn{InHeader: header(id, rootCaller), Flags: syscall.O_RDONLY}
		var out fuse.OpenOut
		if st := s.fsys.Open(nil, &in, &out); !st.Ok() {
			t.Fatalf("open dir/inline: %v", st)
		}
		s.fsys.Release(nil, &fuse.ReleaseIn{InHeader: in.InHeader, Fh: out.Fh})
	}
	open()
	open()
	if conn.pushes[id] != 1 {
		t.Errorf("two opens pushed %d times, want 1", conn.pushes[id])
	}
	s.fsys.Forget(id, 1)
	open()
	if conn.pushes[id] != 2 {
		t.Errorf("an open after FORGET: %d pushes in all, want 2", conn.pushes[id])
	}
	if len(s.fsys.stored) != 1 {
		t.Errorf("%d inodes noted as pushed, want 1", len(s.fsys.stored))
	}
}

// TestOpenObjectRewritten: an object written in place while a file holds
// it open (OPEN answered, no passthrough) is not served any more: its
// READs fail with EIO rather than pass on bytes never checked.
func TestOpenObjectRewritten(t *testing.T) {
	tt, s, objPath, in, out := openOldExt(t)
	read := func() ([]byte, fuse.Status) {
		buf := make([]byte, 4096)
		rr, st := s.fsys.Read(nil, &fuse.ReadIn{InHeader: in.InHeader, Fh: out.Fh, Offset: 0, Size: 4096}, buf)
		if !st.Ok() {
			return nil, st
		}
		return rr.Bytes(buf)
	}
	if b, st := read(); !st.Ok() || !bytes.Equal(b, tt.ext.Content[:4096]) {
		t.Fatalf("READ before the rewrite: %v", st)
	}
	rewriteAt(t, objPath, []byte("rewritten"), 100)
	if b, st := read(); st != fuse.EIO {
		t.Errorf("READ after the object was rewritten under the open file: %v (%q...), want EIO", st, b[:min(len(b), 120)])
	}
}

// openOldExt serves the test tree with OPEN answered, gives dir/ext's
// object an old mtime (so that a rewrite changes it even within one tick
// of the clock file times come from), and opens dir/ext.
func openOldExt(t *testing.T) (*testTree, *server, string, fuse.OpenIn, fuse.OpenOut) {
	t.Helper()
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
	objPath := filepath.Join(string(tt.store), tt.ext.Payload)
	old := time.Unix(1_000_000, 0)
	if err := os.Chtimes(objPath, old, old); err != nil {
		t.Fatal(err)
	}
	ext := s.mustLookup("dir/ext")
	in := fuse.OpenIn{InHeader: header(ext.NodeId, rootCaller), Flags: syscall.O_RDONLY}
	var out fuse.OpenOut
	if st := s.fsys.Open(nil, &in, &out); !st.Ok() {
		t.Fatal(st)
	}
	return tt, s, objPath, in, out
}
