package tests

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// sourceTree is a real directory tree built for mkcomposefs to image. Its
// parts are chosen for the writer's edges: every file type, sizes around
// the inline limit (64) and the block size, symlink targets that fit inline
// or need a block, a directory spanning several dirent blocks, odd-byte
// names, hardlinks of every non-directory type, whiteouts (chardev 0/0, one
// at the root beside a root name that collides with a whiteout stub), xattrs
// of every namespace, the user's own trusted.overlay.* ones included, big
// owners and nanosecond mtimes from before 1970 to after 2106.
type sourceTree struct {
	root  string
	paths []string // every path made, "/" excluded, parents first
}

func (s *sourceTree) at(p string) string { return filepath.Join(s.root, p) }

func (s *sourceTree) must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("building the source tree: %s: %v", what, err)
	}
}

func (s *sourceTree) dir(t *testing.T, p string) {
	t.Helper()
	s.must(t, p, os.Mkdir(s.at(p), 0o755))
	s.paths = append(s.paths, p)
}

func (s *sourceTree) file(t *testing.T, p string, data []byte) {
	t.Helper()
	s.must(t, p, os.WriteFile(s.at(p), data, 0o644))
	s.paths = append(s.paths, p)
}

func (s *sourceTree) symlink(t *testing.T, p, target string) {
	t.Helper()
	s.must(t, p, os.Symlink(target, s.at(p)))
	s.paths = append(s.paths, p)
}

func (s *sourceTree) node(t *testing.T, p string, typ uint32, major, minor uint32) {
	t.Helper()
	s.must(t, p, unix.Mknod(s.at(p), typ|0o644, int(unix.Mkdev(major, minor))))
	s.paths = append(s.paths, p)
}

func (s *sourceTree) link(t *testing.T, old, p string) {
	t.Helper()
	// linkat without AT_SYMLINK_FOLLOW: a link to a symlink is a link to
	// the symlink itself.
	s.must(t, p, os.Link(s.at(old), s.at(p)))
	s.paths = append(s.paths, p)
}

func (s *sourceTree) xattr(t *testing.T, p, name string, value []byte) {
	t.Helper()
	s.must(t, p+": setxattr "+name, unix.Lsetxattr(s.at(p), name, value, 0))
}

// pattern is size bytes that differ from file to file.
func pattern(size int, seed byte) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(i%251) ^ seed
	}
	return b
}

// buildSourceTree makes the tree under root (an existing, empty directory).
func buildSourceTree(t *testing.T, root string) *sourceTree {
	t.Helper()
	s := &sourceTree{root: root}

	// Regular files: empty, inline (≤ 64 bytes), external of every size
	// class, two with the same content (one object), a sparse one.
	s.file(t, "/empty", nil)
	s.dir(t, "/files")
	for i, n := range []int{1, 63, 64, 65, 100, 4000, 4095, 4096, 4097, 8191, 8192, 8193, 12289, 65536, 1<<20 + 3, 3<<20 + 5} {
		s.file(t, fmt.Sprintf("/files/size-%d", n), pattern(n, byte(i)))
	}
	s.file(t, "/files/same-a", pattern(5000, 0x55))
	s.file(t, "/files/same-b", pattern(5000, 0x55))
	s.file(t, "/files/sparse", nil)
	f, err := os.OpenFile(s.at("/files/sparse"), os.O_WRONLY, 0)
	s.must(t, "sparse", err)
	_, err = f.WriteAt([]byte("middle"), 4<<20)
	s.must(t, "sparse", err)
	_, err = f.WriteAt([]byte("end"), 16<<20-3)
	s.must(t, "sparse", err)
	s.must(t, "sparse", f.Close())

	// Directories: deep, empty, and one whose dirents need several blocks.
	s.dir(t, "/dirs")
	for _, p := range []string{"/dirs/a", "/dirs/a/b", "/dirs/a/b/c", "/dirs/a/b/c/d", "/dirs/empty", "/dirs/many"} {
		s.dir(t, p)
	}
	s.file(t, "/dirs/a/b/c/d/leaf", []byte("leaf\n"))
	for i := range 400 {
		name := fmt.Sprintf("/dirs/many/entry-%03d-%s", i, strings.Repeat("x", i%50))
		if i%3 == 0 {
			s.symlink(t, name, fmt.Sprintf("../target-%d", i))
		} else {
			s.file(t, name, nil)
		}
	}

	// Symlinks: relative, absolute, dangling, odd bytes, and targets from
	// one byte to the 4095 Linux allows (inline after the inode, or in a
	// block of their own).
	s.dir(t, "/links")
	s.symlink(t, "/links/rel", "../files/size-1")
	s.symlink(t, "/links/abs", "/etc/passwd")
	s.symlink(t, "/links/dangling", "does/not/exist")
	s.symlink(t, "/links/odd", "sp ace\nnew\\line\xff\x01=")
	for _, n := range []int{1, 59, 60, 61, 1000, 2048, 3000, 4000, 4050, 4095} {
		target := bytes.Repeat([]byte("abc/"), n/4+1)[:n]
		s.symlink(t, fmt.Sprintf("/links/len-%d", n), string(target))
	}

	// Special files. A block device 0/0 and a chardev 0/1 are not
	// whiteouts; only a chardev 0/0 is.
	s.dir(t, "/special")
	s.must(t, "fifo", unix.Mkfifo(s.at("/special/fifo"), 0o640))
	s.paths = append(s.paths, "/special/fifo")
	s.node(t, "/special/sock", unix.S_IFSOCK, 0, 0)
	s.node(t, "/special/null", unix.S_IFCHR, 1, 3)
	s.node(t, "/special/chr-big", unix.S_IFCHR, 4095, 1<<20-1)
	s.node(t, "/special/chr-0-1", unix.S_IFCHR, 0, 1)
	s.node(t, "/special/blk", unix.S_IFBLK, 259, 1<<16+5)
	s.node(t, "/special/blk-0-0", unix.S_IFBLK, 0, 0)

	// Whiteouts, one at the root next to a root file named like a whiteout
	// stub ("00".."ff").
	s.dir(t, "/wh")
	s.node(t, "/wh/whiteout", unix.S_IFCHR, 0, 0)
	s.dir(t, "/wh/sub")
	s.node(t, "/wh/sub/gone", unix.S_IFCHR, 0, 0)
	s.file(t, "/wh/sub/kept", []byte("kept"))
	s.node(t, "/a0", unix.S_IFCHR, 0, 0)
	s.file(t, "/7f", []byte("a file where a whiteout stub would be"))

	// Names with every awkward byte.
	s.dir(t, "/names")
	for i, n := range []string{
		" lead", "trail ", "new\nline", "back\\slash", "tab\there", "=eq", "\x01\x02\x7f",
		"\xff\xfe", "é日本", strings.Repeat("n", 255), "-", "...", ".hidden", "%25", "a:b",
		"\\x41", "quote\"'",
	} {
		s.file(t, "/names/"+n, []byte(fmt.Sprintf("name %d", i)))
	}

	// Hardlinks of every non-directory type, across directories.
	s.dir(t, "/hl")
	s.dir(t, "/hl/other")
	s.file(t, "/hl/inline-a", []byte("inline hardlinked"))
	s.link(t, "/hl/inline-a", "/hl/inline-b")
	s.link(t, "/hl/inline-a", "/hl/other/inline-c")
	s.file(t, "/hl/ext-a", pattern(5000, 0xee))
	s.link(t, "/hl/ext-a", "/hl/other/ext-b")
	s.file(t, "/hl/empty-a", nil)
	s.link(t, "/hl/empty-a", "/hl/empty-b")
	s.symlink(t, "/hl/sym-a", "../files/size-64")
	s.link(t, "/hl/sym-a", "/hl/sym-b")
	s.must(t, "fifo", unix.Mkfifo(s.at("/hl/fifo-a"), 0o600))
	s.paths = append(s.paths, "/hl/fifo-a")
	s.link(t, "/hl/fifo-a", "/hl/fifo-b")
	s.node(t, "/hl/chr-a", unix.S_IFCHR, 1, 5)
	s.link(t, "/hl/chr-a", "/hl/other/chr-b")

	// Xattrs.
	s.dir(t, "/x")
	s.file(t, "/x/file", []byte("has xattrs"))
	s.xattr(t, "/x/file", "user.a", []byte("1"))
	s.xattr(t, "/x/file", "user.empty", nil)
	s.xattr(t, "/x/file", "user.bin", pattern(256, 0))
	s.xattr(t, "/x/file", "user.big", pattern(1500, 7))
	s.xattr(t, "/x/file", "trusted.t", []byte("t"))
	s.xattr(t, "/x/file", "security.s", []byte("label\x00"))
	s.xattr(t, "/x/file", "user.overlay.opaque", []byte("y")) // userxattr is off: shown as is
	s.dir(t, "/x/opaque-dir")
	s.xattr(t, "/x/opaque-dir", "trusted.overlay.opaque", []byte("y"))
	s.file(t, "/x/opaque-dir/still-visible", []byte("an escaped opaque hides nothing"))
	// The user's own redirect and metacopy: escaped, the file keeps its
	// own content.
	s.file(t, "/x/redirected", []byte("my own content, not size-1's"))
	s.xattr(t, "/x/redirected", "trusted.overlay.redirect", []byte("/files/size-1"))
	s.xattr(t, "/x/redirected", "trusted.overlay.metacopy", nil)
	s.file(t, "/x/whiteout-xattr", []byte("not a whiteout"))
	s.xattr(t, "/x/whiteout-xattr", "trusted.overlay.whiteout", nil)
	s.file(t, "/x/double", []byte("escaped twice"))
	s.xattr(t, "/x/double", "trusted.overlay.overlay.x", []byte("2"))
	s.xattr(t, "/x/double", "trusted.overlay.custom", []byte("c"))
	s.file(t, "/x/acl", []byte("acl"))
	s.xattr(t, "/x/acl", "system.posix_acl_access", posixACL(1000, 6))
	s.dir(t, "/x/acl-dir")
	s.xattr(t, "/x/acl-dir", "system.posix_acl_default", posixACL(1001, 5))
	s.file(t, "/x/cap", pattern(200, 3))
	s.xattr(t, "/links/rel", "trusted.sym", []byte("on a symlink"))
	s.xattr(t, "/links/len-4095", "security.s", []byte("long link"))
	s.xattr(t, "/special/fifo", "trusted.f", []byte("fifo"))
	s.xattr(t, "/special/null", "security.c", []byte("chr"))
	s.xattr(t, "/wh/whiteout", "trusted.w", []byte("a whiteout's own"))
	s.xattr(t, "/hl/ext-a", "user.hl", []byte("on every name"))
	s.xattr(t, "/", "user.root", []byte("root"))
	// One xattr on many files: the shared xattr table.
	for _, p := range s.paths {
		if strings.HasPrefix(p, "/files/") || strings.HasPrefix(p, "/names/") {
			s.xattr(t, p, "user.common", []byte("shared by many"))
		}
	}

	s.setOwnersAndModes(t)
	// After chown, which drops file capabilities.
	s.xattr(t, "/x/cap", "security.capability", fileCapability(unix.CAP_NET_BIND_SERVICE))
	s.setMtimes(t)
	return s
}

// posixACL is a system.posix_acl_* value: owner, one named user, group,
// mask, other.
func posixACL(uid uint32, perm uint16) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	le(uint32(2)) // POSIX_ACL_XATTR_VERSION
	entry := func(tag, perm uint16, id uint32) { le(tag); le(perm); le(id) }
	entry(0x01, 6, ^uint32(0))
	entry(0x02, perm, uid)
	entry(0x04, 4, ^uint32(0))
	entry(0x10, 7, ^uint32(0))
	entry(0x20, 4, ^uint32(0))
	return b.Bytes()
}

// fileCapability is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting one capability.
func fileCapability(c uint) []byte {
	var b [20]byte
	binary.LittleEndian.PutUint32(b[0:], 0x02000000|1)
	binary.LittleEndian.PutUint32(b[4:], 1<<c)
	return b[:]
}

// setOwnersAndModes gives the paths owners from 0 to 2^32-2 (above 65535
// the writer needs extended inodes) and permissions with every special bit.
func (s *sourceTree) setOwnersAndModes(t *testing.T) {
	t.Helper()
	ids := []int{0, 1, 1000, 65534, 65535, 65536, 70000, 1 << 31, 1<<32 - 2}
	perms := []uint32{0o644, 0o755, 0o600, 0o000, 0o4755, 0o2750, 0o1777, 0o777, 0o444, 0o6711}
	for i, p := range s.paths {
		var st unix.Stat_t
		s.must(t, p, unix.Lstat(s.at(p), &st))
		if st.Nlink > 1 && st.Mode&unix.S_IFMT != unix.S_IFDIR && !s.firstName(t, p) {
			continue // one inode, set once
		}
		uid, gid := ids[i%len(ids)], ids[(i/2)%len(ids)]
		s.must(t, p, unix.Lchown(s.at(p), uid, gid))
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		case strings.HasPrefix(p, "/x/acl"):
			// chmod would rewrite the ACL's mask; keep what setxattr made.
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			// Keep directories walkable so that the tree can be removed.
			s.must(t, p, unix.Chmod(s.at(p), perms[i%len(perms)]|0o700))
		default:
			s.must(t, p, unix.Chmod(s.at(p), perms[i%len(perms)]))
		}
	}
}

// firstName reports whether p is the first name made of its inode.
func (s *sourceTree) firstName(t *testing.T, p string) bool {
	t.Helper()
	var st unix.Stat_t
	s.must(t, p, unix.Lstat(s.at(p), &st))
	for _, q := range s.paths {
		var qs unix.Stat_t
		if unix.Lstat(s.at(q), &qs) == nil && qs.Ino == st.Ino {
			return q == p
		}
	}
	return true
}

// setMtimes sets every mtime with nanoseconds, deepest paths first (making
// an entry touches its directory), the root last. Several share the
// smallest time, which C stores in the superblock (compact inodes), and
// some are before 1970 or after 2106 (no 32-bit offset from it reaches).
func (s *sourceTree) setMtimes(t *testing.T) {
	t.Helper()
	times := []unix.Timespec{
		{Sec: -86400*365*30 - 17, Nsec: 123456789},
		{Sec: 1_700_000_000, Nsec: 1},
		{Sec: 1_700_000_000, Nsec: 999_999_999},
		{Sec: 0, Nsec: 0},
		{Sec: 4_400_000_000, Nsec: 500_000_000},
		{Sec: 1_234_567_890, Nsec: 987_654_321},
	}
	order := append([]string(nil), s.paths...)
	sort.SliceStable(order, func(i, j int) bool { return strings.Count(order[i], "/") > strings.Count(order[j], "/") })
	for i, p := range append(order, "/") {
		ts := times[i%len(times)]
		if i%4 == 0 {
			ts = times[0] // the minimum, shared
		}
		s.must(t, p+": utimes", unix.UtimesNanoAt(unix.AT_FDCWD, s.at(p), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// removeLinks removes symlinks of the tree, keeping their directory's mtime.
func (s *sourceTree) removeLinks(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		dir := filepath.Dir(s.at(p))
		var st unix.Stat_t
		s.must(t, p, unix.Lstat(dir, &st))
		s.must(t, p, os.Remove(s.at(p)))
		s.must(t, p, unix.UtimesNanoAt(unix.AT_FDCWD, dir, []unix.Timespec{st.Atim, st.Mtim}, unix.AT_SYMLINK_NOFOLLOW))
		s.paths = slices.DeleteFunc(s.paths, func(q string) bool { return q == p })
	}
}
