package fusefs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"syscall"
	"testing"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// testTree is a small tree with every kind of entry, its objects, and a
// store holding them (bad: same size, one byte flipped; missing: absent).
type testTree struct {
	dump                   string
	ext, nodigest, bad, ms object
	store                  dirStore
}

func newTestTree(t *testing.T) *testTree {
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
	tt.ext.put(t, string(tt.store), tt.ext.content)
	tt.nodigest.put(t, string(tt.store), tt.nodigest.content)
	flipped := bytes.Clone(tt.bad.content)
	flipped[4321] ^= 0x40
	tt.bad.put(t, string(tt.store), flipped)

	var b strings.Builder
	b.WriteString("/ 0 40755 4 0 0 0 1000.5 - - - user.root=1\n")
	b.WriteString("/dir 0 40750 2 1 2 0 2000.123456789 - - - user.a=1 trusted.overlay.custom=2 security.x=s\n")
	b.WriteString("/dir/inline 5 100644 2 0 0 0 1000.0 - hello -\n")
	b.WriteString("/dir/hl 0 @100644 0 0 0 0 0.0 /dir/inline - -\n")
	fmt.Fprintf(&b, "/dir/ext %d 100640 1 3 4 0 1000.0 %s - %s\n", len(tt.ext.content), tt.ext.payload, tt.ext.digest)
	fmt.Fprintf(&b, "/dir/nodigest %d 100644 1 0 0 0 1000.0 %s - -\n", len(tt.nodigest.content), tt.nodigest.payload)
	fmt.Fprintf(&b, "/dir/bad %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tt.bad.content), tt.bad.payload, tt.bad.digest)
	fmt.Fprintf(&b, "/dir/missing %d 100644 1 0 0 0 1000.0 %s - %s\n", len(tt.ms.content), tt.ms.payload, tt.ms.digest)
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
			s := newServer(t, imageFromDump(t, tt.dump, v), Config{Store: tt.store})
			_, dir := s.mustLookup("dir")
			if dir.Mode != syscall.S_IFDIR|0o750 || dir.Uid != 1 || dir.Gid != 2 {
				t.Errorf("dir: mode %o uid %d gid %d", dir.Mode, dir.Uid, dir.Gid)
			}
			// composefs-rs' V2 layout keeps no nanoseconds.
			nsec := uint32(123456789)
			if v == 2 {
				nsec = 0
			}
			if dir.Mtime != 2000 || dir.Mtimensec != nsec || dir.Ctime != 2000 || dir.Atimensec != nsec {
				t.Errorf("dir: mtime %d.%d ctime %d", dir.Mtime, dir.Mtimensec, dir.Ctime)
			}
			_, ext := s.mustLookup("dir/ext")
			if ext.Mode != syscall.S_IFREG|0o640 || ext.Size != uint64(len(tt.ext.content)) || ext.Uid != 3 || ext.Gid != 4 {
				t.Errorf("ext: mode %o size %d uid %d gid %d", ext.Mode, ext.Size, ext.Uid, ext.Gid)
			}
			if ext.Blocks != (ext.Size+4095)/4096*8 || ext.Blksize != 4096 {
				t.Errorf("ext: blocks %d blksize %d", ext.Blocks, ext.Blksize)
			}
			inl, inlOut := s.mustLookup("dir/inline")
			hl, hlOut := s.mustLookup("dir/hl")
			if inl.StableAttr().Ino != hl.StableAttr().Ino || inlOut.Ino != hlOut.Ino || inlOut.Nlink != 2 {
				t.Errorf("hardlinks: ino %d and %d, nlink %d", inlOut.Ino, hlOut.Ino, inlOut.Nlink)
			}
			_, dev := s.mustLookup("dev")
			if dev.Mode != syscall.S_IFCHR|0o644 || dev.Rdev != 259 {
				t.Errorf("dev: mode %o rdev %d", dev.Mode, dev.Rdev)
			}
			_, fifo := s.mustLookup("fifo")
			if fifo.Mode != syscall.S_IFIFO|0o644 {
				t.Errorf("fifo: mode %o", fifo.Mode)
			}
			ln, lnOut := s.mustLookup("dir/link")
			target, errno := ln.Operations().(gofs.NodeReadlinker).Readlink(rootCtx)
			if errno != 0 || string(target) != "target" || lnOut.Size != 6 {
				t.Errorf("link: %q %v size %d", target, errno, lnOut.Size)
			}
			// The inode number is the nid, as the kernel's EROFS reports it.
			root := s.fsys.Root().EmbeddedInode()
			if root.StableAttr().Ino != s.fsys.img.RootNid() {
				t.Errorf("root ino %d, root nid %d", root.StableAttr().Ino, s.fsys.img.RootNid())
			}
			var ga fuse.AttrOut
			if errno := root.Operations().(gofs.NodeGetattrer).Getattr(rootCtx, nil, &ga); errno != 0 || ga.Mtime != 1000 || ga.Mtimensec != 5 && v != 2 {
				t.Errorf("root getattr: %v mtime %d.%d", errno, ga.Mtime, ga.Mtimensec)
			}
			if _, _, errno := s.lookup("dir/nonexistent"); errno != syscall.ENOENT {
				t.Errorf("lookup of a missing name: %v, want ENOENT", errno)
			}
			if _, _, errno := s.lookup("fifo/x"); errno != syscall.ENOTDIR {
				t.Errorf("lookup below a fifo: %v", errno)
			}
		})
	}
}

func TestWhiteouts(t *testing.T) {
	tt := newTestTree(t)
	// V0/V1: the root holds 256 stubs, hidden; the user's whiteout is
	// escaped into an empty regular file with its xattrs unescaped.
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	names, _ := s.readdir("")
	if want := []string{".", "..", "dev", "dir", "fifo", "wdir"}; !slices.Equal(sorted(names), want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
	if _, _, errno := s.lookup("00"); errno != syscall.ENOENT {
		t.Errorf("lookup of stub 00: %v, want ENOENT", errno)
	}
	_, wh := s.mustLookup("wdir/wh")
	if wh.Mode&syscall.S_IFMT != syscall.S_IFREG || wh.Size != 0 {
		t.Errorf("v1 escaped whiteout: mode %o size %d", wh.Mode, wh.Size)
	}
	if v, errno := s.getxattr(rootCtx, "wdir/wh", "trusted.overlay.whiteout"); errno != 0 || v != "" {
		t.Errorf("v1 escaped whiteout xattr: %q %v", v, errno)
	}

	// V2 keeps the whiteout as chardev 0/0: as under overlayfs, a listing
	// of a directory other than the root shows it, a lookup does not find
	// it.
	s = newServer(t, imageFromDump(t, tt.dump, 2), Config{Store: tt.store})
	names, lookups := s.readdir("wdir")
	if !slices.Contains(names, "wh") {
		t.Errorf("v2 dir lists %q, want wh among them", names)
	}
	if lookups["wh"] != syscall.ENOENT || lookups["f"] != 0 {
		t.Errorf("v2 readdirplus lookups: %v", lookups)
	}
	if _, _, errno := s.lookup("wdir/wh"); errno != syscall.ENOENT {
		t.Errorf("v2 lookup of whiteout: %v, want ENOENT", errno)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRootWhiteoutHidden(t *testing.T) {
	dump := "/ 0 40755 2 0 0 0 0.0 - - -\n/a 0 100644 1 0 0 0 0.0 - - -\n/wh 0 20000 1 0 0 0 0.0 - - -\n"
	s := newServer(t, imageFromDump(t, dump, 2), Config{})
	names, _ := s.readdir("")
	if want := []string{".", "..", "a"}; !slices.Equal(names, want) {
		t.Errorf("root lists %q, want %q", names, want)
	}
}

func TestXattrs(t *testing.T) {
	tt := newTestTree(t)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			s := newServer(t, imageFromDump(t, tt.dump, v), Config{Store: tt.store})
			got := sorted(s.listxattr(rootCtx, "dir"))
			if want := []string{"security.x", "trusted.overlay.custom", "user.a"}; !slices.Equal(got, want) {
				t.Errorf("dir xattrs %q, want %q", got, want)
			}
			if got := s.listxattr(userCtx, "dir"); !slices.Equal(sorted(got), []string{"security.x", "user.a"}) {
				t.Errorf("dir xattrs for a user %q", got)
			}
			if got := s.listxattr(rootCtx, "dir/ext"); len(got) != 0 {
				t.Errorf("ext lists private xattrs: %q", got)
			}
			for name, want := range map[string]string{"user.a": "1", "trusted.overlay.custom": "2", "security.x": "s"} {
				if v, errno := s.getxattr(rootCtx, "dir", name); errno != 0 || v != want {
					t.Errorf("getxattr %s = %q, %v; want %q", name, v, errno, want)
				}
			}
			for name, want := range map[string]syscall.Errno{
				"trusted.overlay.overlay.custom": syscall.ENODATA,
				"user.nope":                      syscall.ENODATA,
				"trusted.overlay.":               syscall.EINVAL,
				"user.":                          syscall.EINVAL,
				"foo.bar":                        syscall.EOPNOTSUPP,
			} {
				if _, errno := s.getxattr(rootCtx, "dir", name); errno != want {
					t.Errorf("getxattr %s: %v, want %v", name, errno, want)
				}
			}
			for _, name := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
				if _, errno := s.getxattr(rootCtx, "dir/ext", name); errno != syscall.ENODATA {
					t.Errorf("getxattr %s of an external file: %v, want ENODATA", name, errno)
				}
			}
			n, _ := s.mustLookup("dir")
			if sz, errno := n.Operations().(gofs.NodeGetxattrer).Getxattr(rootCtx, "user.a", nil); errno != syscall.ERANGE || sz != 1 {
				t.Errorf("getxattr into no buffer: %d %v, want 1 ERANGE", sz, errno)
			}
		})
	}
}

func TestContents(t *testing.T) {
	tt := newTestTree(t)
	for _, mode := range []VerityMode{VerityOn, VerityRequire, VerityOff} {
		t.Run(mode.String(), func(t *testing.T) {
			s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store, Verity: mode})
			if got, errno := s.readFile("dir/inline"); errno != 0 || string(got) != "hello" {
				t.Errorf("inline: %q %v", got, errno)
			}
			if got, errno := s.readFile("dir/ext"); errno != 0 || !bytes.Equal(got, tt.ext.content) {
				t.Errorf("ext: %d bytes, %v", len(got), errno)
			}
			got, errno := s.readFile("dir/nodigest")
			if mode == VerityRequire {
				if errno != syscall.EIO {
					t.Errorf("nodigest under require: %v, want EIO", errno)
				}
			} else if errno != 0 || !bytes.Equal(got, tt.nodigest.content) {
				t.Errorf("nodigest: %d bytes, %v", len(got), errno)
			}
			got, errno = s.readFile("dir/bad")
			if mode == VerityOff {
				if errno != 0 || len(got) != len(tt.bad.content) {
					t.Errorf("bad under off: %d bytes, %v", len(got), errno)
				}
			} else {
				if errno != syscall.EIO {
					t.Errorf("bad: %v, want EIO", errno)
				}
				if !strings.Contains(s.log.String(), "/dir/bad") || !strings.Contains(s.log.String(), tt.bad.payload) {
					t.Errorf("log does not name the file and object:\n%s", s.log.String())
				}
			}
			if _, errno := s.readFile("dir/missing"); errno != syscall.ENOENT {
				t.Errorf("missing object: %v, want ENOENT", errno)
			}
			// The mount lives on: other files still read.
			if got, errno := s.readFile("dir/ext"); errno != 0 || !bytes.Equal(got, tt.ext.content) {
				t.Errorf("ext after failures: %d bytes, %v", len(got), errno)
			}
		})
	}
}

func TestNoStore(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Verity: VerityOff})
	if _, errno := s.readFile("dir/ext"); errno != syscall.ENOENT {
		t.Errorf("external file without a store: %v, want ENOENT", errno)
	}
}

func TestPassthroughHandle(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	n, _ := s.mustLookup("dir/ext")
	fh, _, errno := n.Operations().(*fileNode).Open(rootCtx, syscall.O_RDONLY)
	if errno != 0 {
		t.Fatal(errno)
	}
	defer fh.(gofs.FileReleaser).Release(rootCtx)
	fd, ok := fh.(gofs.FilePassthroughFder).PassthroughFd()
	if !ok || fd < 0 {
		t.Fatalf("PassthroughFd: %d %v", fd, ok)
	}
	// An inline file has no object to pass through.
	n, _ = s.mustLookup("dir/inline")
	fh, _, _ = n.Operations().(*fileNode).Open(rootCtx, syscall.O_RDONLY)
	if _, ok := fh.(gofs.FilePassthroughFder); ok {
		t.Errorf("inline file handle offers passthrough")
	}
}

func TestReadOnly(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	dn, _ := s.mustLookup("dir")
	d := dn.Operations().(*dirNode)
	fnode, _ := s.mustLookup("dir/inline")
	f := fnode.Operations().(*fileNode)
	var out fuse.EntryOut
	var aout fuse.AttrOut
	checks := map[string]syscall.Errno{}
	_, checks["mkdir"] = d.Mkdir(rootCtx, "x", 0o755, &out)
	_, checks["mknod"] = d.Mknod(rootCtx, "x", 0o644, 0, &out)
	_, checks["link"] = d.Link(rootCtx, f, "x", &out)
	_, checks["symlink"] = d.Symlink(rootCtx, "t", "x", &out)
	_, _, _, checks["create"] = d.Create(rootCtx, "x", 0, 0o644, &out)
	_, _, _, checks["tmpfile"] = d.Tmpfile(rootCtx, 0, 0o644, &out)
	checks["unlink"] = d.Unlink(rootCtx, "inline")
	checks["rmdir"] = d.Rmdir(rootCtx, "x")
	checks["rename"] = d.Rename(rootCtx, "inline", d, "y", 0)
	checks["setattr"] = f.Setattr(rootCtx, nil, &fuse.SetAttrIn{}, &aout)
	checks["setxattr"] = f.Setxattr(rootCtx, "user.x", []byte("1"), 0)
	checks["removexattr"] = f.Removexattr(rootCtx, "user.x")
	_, checks["write"] = f.Write(rootCtx, nil, []byte("x"), 0)
	checks["allocate"] = f.Allocate(rootCtx, nil, 0, 1, 0)
	_, _, checks["open O_WRONLY"] = f.Open(rootCtx, syscall.O_WRONLY)
	_, _, checks["open O_RDWR"] = f.Open(rootCtx, syscall.O_RDWR)
	_, _, checks["open O_TRUNC"] = f.Open(rootCtx, syscall.O_RDONLY|syscall.O_TRUNC)
	for op, errno := range checks {
		if errno != syscall.EROFS {
			t.Errorf("%s: %v, want EROFS", op, errno)
		}
	}
	if errno := f.Flush(rootCtx, nil); errno != syscall.ENOSYS {
		t.Errorf("flush: %v, want ENOSYS", errno)
	}
}

func TestStatfs(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	var out fuse.StatfsOut
	if errno := s.fsys.root.Statfs(rootCtx, &out); errno != 0 {
		t.Fatal(errno)
	}
	sb := s.fsys.img.Superblock()
	if out.Blocks != uint64(sb.Blocks) || out.Bsize != 4096 || out.NameLen != 255 || out.Bfree != 0 || out.Ffree != ^uint64(0)-sb.Inos {
		t.Errorf("statfs %+v (superblock blocks %d inos %d)", out, sb.Blocks, sb.Inos)
	}
}

func TestSeekdir(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	n, _ := s.mustLookup("dir")
	fh, _, _ := n.Operations().(*dirNode).OpendirHandle(rootCtx, 0)
	h := fh.(*dirHandle)
	var all []fuse.DirEntry
	for {
		de, errno := h.Readdirent(rootCtx)
		if errno != 0 {
			t.Fatal(errno)
		}
		if de == nil {
			break
		}
		all = append(all, *de)
	}
	if len(all) < 5 {
		t.Fatalf("only %d entries", len(all))
	}
	if errno := h.Seekdir(rootCtx, all[2].Off); errno != 0 {
		t.Fatal(errno)
	}
	de, _ := h.Readdirent(rootCtx)
	if de == nil || de.Name != all[3].Name {
		t.Errorf("after seek to %d: %v, want %s", all[2].Off, de, all[3].Name)
	}
	if errno := h.Seekdir(rootCtx, 1<<40); errno != syscall.EINVAL {
		t.Errorf("seek past the end: %v", errno)
	}
}

func TestParseVerityMode(t *testing.T) {
	for _, m := range []VerityMode{VerityOn, VerityRequire, VerityOff} {
		got, err := ParseVerityMode(m.String())
		if err != nil || got != m {
			t.Errorf("%v: %v %v", m, got, err)
		}
	}
	if _, err := ParseVerityMode("maybe"); err == nil {
		t.Error("maybe: no error")
	}
}

func TestNodeOptions(t *testing.T) {
	tt := newTestTree(t)
	s := newServer(t, imageFromDump(t, tt.dump, 1), Config{Store: tt.store})
	o := s.fsys.NodeOptions(MountOptions{MaxStackDepth: 2, Options: []string{"nodev"}})
	if o.EntryTimeout == nil || o.AttrTimeout == nil || o.NegativeTimeout == nil || *o.NegativeTimeout < 24*3600e9 {
		t.Errorf("timeouts not set for good")
	}
	if !o.NullPermissions || !o.EnableSymlinkCaching || o.MaxWrite != 1<<20 || o.MaxStackDepth != 2 {
		t.Errorf("options %+v", o.MountOptions)
	}
	if !slices.Contains(o.Options, "ro") || !slices.Contains(o.Options, "nodev") || !slices.Contains(o.Options, "default_permissions") {
		t.Errorf("mount options %q", o.Options)
	}
	if o.RootStableAttr == nil || o.RootStableAttr.Ino != s.fsys.img.RootNid() {
		t.Errorf("root ino not the root nid")
	}
	if d := StackDepthFor(t.TempDir()); d != 1 {
		t.Errorf("StackDepthFor a plain dir: %d", d)
	}
}

var _ context.Context = userCtx

func TestValidRedirect(t *testing.T) {
	for v, want := range map[string]bool{
		"/ab/cdef": true, "/a": true, "name": true,
		"": false, "/": false, "//ab": false, "/ab//cd": false, "/ab/": false, "a/b": false,
	} {
		if got := validRedirect([]byte(v)); got != want {
			t.Errorf("validRedirect(%q) = %v, want %v", v, got, want)
		}
	}
}
