package tests

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/verity"
)

// randomTree is a random composefs tree: its entries in dumpfile order and
// the content of every external file by payload.
type randomTree struct {
	entries []dumpfile.Entry
	objects map[string][]byte
}

type treeGen struct {
	rng      *rand.Rand
	tree     *randomTree
	dirs     []int                      // indexes of directory entries
	names    map[string]map[string]bool // names taken in each directory
	linkable []int                      // non-directories a hardlink may name, whiteouts not
	payloads []string                   // the objects' payloads, in the order they were made
	chars    []rune                     // what names are made of
}

// genTree makes a tree of about n entries with every file type, hardlinks,
// whiteouts, odd names, xattrs of every namespace (the user's own
// trusted.overlay.* included), POSIX ACLs, inline and external files
// (with and without digest, some sharing an object) and long symlinks.
func genTree(seed uint64, n int) *randomTree {
	return genTreeOf(seed, n, nameChars)
}

// genTreeOf is genTree with names made of chars.
func genTreeOf(seed uint64, n int, chars string) *randomTree {
	g := &treeGen{
		chars: []rune(chars),
		rng:   rand.New(rand.NewPCG(seed, 0xc0ffee)),
		tree:  &randomTree{objects: map[string][]byte{}},
		names: map[string]map[string]bool{"/": {}},
	}
	root := g.stat(dumpfile.Entry{Path: "/", Mode: dumpfile.TypeDir | 0o755})
	g.tree.entries = append(g.tree.entries, root)
	g.dirs = append(g.dirs, 0)
	for range n {
		g.add()
	}
	g.fixNlinks()
	return g.tree
}

func (g *treeGen) pick(ws ...int) int {
	total := 0
	for _, w := range ws {
		total += w
	}
	r := g.rng.IntN(total)
	for i, w := range ws {
		if r < w {
			return i
		}
		r -= w
	}
	return len(ws) - 1
}

func (g *treeGen) bytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	return b
}

const nameChars = "abcdefghijklmnopqrstuvwxyz0123456789_-.= \\\t\n@#%+,:;~'\"é日"

func (g *treeGen) name(dir string) string {
	for {
		var s strings.Builder
		n := 1 + g.rng.IntN(24)
		if g.rng.IntN(20) == 0 {
			n = 200 + g.rng.IntN(56)
		}
		runes := g.chars
		for s.Len() < n {
			s.WriteRune(runes[g.rng.IntN(len(runes))])
		}
		name := s.String()
		for len(name) > 255 {
			r := []rune(name)
			name = string(r[:len(r)-1])
		}
		if name == "." || name == ".." || g.names[dir][name] {
			continue
		}
		g.names[dir][name] = true
		return name
	}
}

// stat fills owner, permissions, mtime and xattrs.
func (g *treeGen) stat(e dumpfile.Entry) dumpfile.Entry {
	ids := []uint32{0, 0, 0, 1, 1000, 65534, 70000, 4294967294}
	e.UID, e.GID = ids[g.rng.IntN(len(ids))], ids[g.rng.IntN(len(ids))]
	if e.Type() != dumpfile.TypeSymlink {
		perms := []uint32{0o755, 0o644, 0o700, 0o600, 0o000, 0o4755, 0o2750, 0o1777, 0o777}
		p := perms[g.rng.IntN(len(perms))]
		if g.rng.IntN(4) == 0 {
			p = uint32(g.rng.IntN(0o10000))
		}
		e.Mode |= p
	} else {
		e.Mode |= 0o777
	}
	e.Mtime = dumpfile.Timespec{Sec: int64(g.rng.IntN(1 << 33)), Nsec: uint32(g.rng.IntN(1_000_000_000))}
	if g.rng.IntN(3) == 0 {
		e.Mtime = dumpfile.Timespec{Sec: 1_700_000_000}
	}
	seen := map[string]bool{}
	add := func(name string, v []byte) {
		if !seen[name] {
			seen[name] = true
			e.Xattrs = append(e.Xattrs, dumpfile.Xattr{Name: name, Value: v})
		}
	}
	if g.rng.IntN(2) == 0 {
		add("user.common", []byte("shared by many"))
	}
	for range g.rng.IntN(4) {
		switch g.pick(4, 2, 2, 1, 1, 1) {
		case 0:
			add(fmt.Sprintf("user.u%d", g.rng.IntN(50)), g.bytes(g.rng.IntN(40)))
		case 1:
			add(fmt.Sprintf("trusted.t%d", g.rng.IntN(10)), g.bytes(g.rng.IntN(20)))
		case 2:
			names := []string{"opaque", "redirect", "metacopy", "whiteout", "custom", "origin"}
			add("trusted.overlay."+names[g.rng.IntN(len(names))], []byte("y"))
		case 3:
			add(fmt.Sprintf("security.s%d", g.rng.IntN(5)), []byte("label"))
		case 4:
			if e.Type() != dumpfile.TypeSymlink {
				add("system.posix_acl_access", g.acl())
			}
		case 5:
			add(fmt.Sprintf("user.big%d", g.rng.IntN(3)), g.bytes(1000+g.rng.IntN(2000)))
		}
	}
	if e.Type() == dumpfile.TypeDir && g.rng.IntN(6) == 0 {
		add("system.posix_acl_default", g.acl())
	}
	return e
}

// acl is a valid POSIX ACL xattr value: owner, a named user, group, mask,
// other.
func (g *treeGen) acl() []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	le(uint32(2))
	entry := func(tag, perm uint16, id uint32) { le(tag); le(perm); le(id) }
	entry(0x01, uint16(g.rng.IntN(8)), 0xffffffff)
	entry(0x02, uint16(g.rng.IntN(8)), uint32(1000+g.rng.IntN(10)))
	entry(0x04, uint16(g.rng.IntN(8)), 0xffffffff)
	entry(0x10, 7, 0xffffffff)
	entry(0x20, uint16(g.rng.IntN(8)), 0xffffffff)
	return b.Bytes()
}

func (g *treeGen) add() {
	parent := g.tree.entries[g.dirs[g.rng.IntN(len(g.dirs))]].Path
	name := g.name(parent)
	path := strings.TrimSuffix(parent, "/") + "/" + name
	e := dumpfile.Entry{Path: path}
	switch g.pick(15, 45, 10, 8, 4, 4, 3, 3, 5) {
	case 0:
		e.Mode = dumpfile.TypeDir
		e = g.stat(e)
		g.names[path] = map[string]bool{}
		g.dirs = append(g.dirs, len(g.tree.entries))
		g.tree.entries = append(g.tree.entries, e)
		return
	case 1:
		e.Mode = dumpfile.TypeRegular
		e = g.stat(e)
		switch g.pick(1, 3, 6) {
		case 0: // empty
		case 1:
			e.Content = g.bytes(1 + g.rng.IntN(4000))
			e.Size = uint64(len(e.Content))
		case 2:
			var content []byte
			if len(g.payloads) > 0 && g.rng.IntN(10) == 0 {
				// Shared: one made before, picked without a draw from
				// rng so that the trees of earlier seeds stay as they
				// were, and not by ranging over the map, whose order
				// would make a seed's tree differ from run to run.
				content = g.tree.objects[g.payloads[len(g.tree.entries)%len(g.payloads)]]
			} else {
				content = g.bytes(1 + g.rng.IntN(200_000))
			}
			d := hex.EncodeToString(verity.DigestBytes(verity.SHA256, content))
			e.Payload = d[:2] + "/" + d[2:]
			e.Size = uint64(len(content))
			if g.rng.IntN(5) != 0 {
				e.Digest = d
			}
			if _, ok := g.tree.objects[e.Payload]; !ok {
				g.payloads = append(g.payloads, e.Payload)
			}
			g.tree.objects[e.Payload] = content
		}
	case 2:
		e.Mode = dumpfile.TypeSymlink
		e = g.stat(e)
		n := 1 + g.rng.IntN(60)
		if g.rng.IntN(6) == 0 {
			n = 1000 + g.rng.IntN(3000)
		}
		t := make([]byte, n)
		for i := range t {
			t[i] = "abc/xyz._-é "[g.rng.IntN(12)]
		}
		e.Payload = string(t)
		e.Size = uint64(len(e.Payload))
	case 3:
		if len(g.linkable) == 0 {
			return
		}
		target := g.tree.entries[g.linkable[g.rng.IntN(len(g.linkable))]]
		e = target
		e.Path, e.Hardlink = path, target.Path
		g.tree.entries = append(g.tree.entries, e)
		return
	case 4:
		e.Mode = dumpfile.TypeFIFO
		e = g.stat(e)
	case 5, 6:
		e.Mode = dumpfile.TypeChar
		if g.rng.IntN(2) == 0 {
			e.Mode = dumpfile.TypeBlock
		}
		e = g.stat(e)
		major, minor := uint64(1+g.rng.IntN(255)), uint64(g.rng.IntN(100_000))
		e.Rdev = minor&0xff | major<<8 | (minor&^0xff)<<12
	case 7:
		e.Mode = dumpfile.TypeSocket
		e = g.stat(e)
	case 8: // whiteout
		e.Mode = dumpfile.TypeChar
		e = g.stat(e)
		e.Rdev = 0
	}
	// A whiteout cannot be hardlinked (dumpfile.ErrHardlinkedWhiteout).
	if !e.IsWhiteout() {
		g.linkable = append(g.linkable, len(g.tree.entries))
	}
	g.tree.entries = append(g.tree.entries, e)
}

// fixNlinks counts links as a real tree has them: 2 plus subdirectories for
// a directory, the number of names for anything else.
func (g *treeGen) fixNlinks() {
	idx := map[string]int{}
	count := map[string]uint32{}
	for i, e := range g.tree.entries {
		idx[e.Path] = i
		switch {
		case e.Hardlink != "":
			count[e.Hardlink]++
		case e.IsDir():
			count[e.Path] += 2
			if e.Path != "/" {
				count[parentPath(e.Path)]++
			}
		default:
			count[e.Path]++
		}
	}
	for i := range g.tree.entries {
		e := &g.tree.entries[i]
		target := e.Path
		if e.Hardlink != "" {
			target = e.Hardlink
		}
		e.Nlink = count[target]
	}
}

func parentPath(p string) string {
	d := filepath.Dir(p)
	return d
}

// putObjects stores the tree's objects in a flat store at dir.
func (r *randomTree) putObjects(t testing.TB, dir string) {
	t.Helper()
	for payload, content := range r.objects {
		p := filepath.Join(dir, payload)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (r *randomTree) image(t testing.TB, version int) string {
	t.Helper()
	var buf bytes.Buffer
	if err := erofs.Write(&buf, r.entries, erofs.WriteOptions{MinVersion: version, MaxVersion: version}); err != nil {
		t.Fatalf("erofs.Write v%d: %v", version, err)
	}
	p := filepath.Join(tempDir(t, "image"), "image.cfs")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// materialize creates the tree on disk at dir (which must exist), for
// mkcomposefs to scan: as root, with owners, modes, xattrs, devices and
// nanosecond mtimes (set last, deepest first, since creating children
// touches a directory's mtime).
func (r *randomTree) materialize(t testing.TB, dir string) {
	t.Helper()
	at := func(p string) string { return filepath.Join(dir, p) }
	for _, e := range r.entries {
		p := at(e.Path)
		var err error
		switch {
		case e.Path == "/":
		case e.Hardlink != "":
			err = os.Link(at(e.Hardlink), p)
		case e.IsDir():
			err = os.Mkdir(p, 0o700)
		case e.IsRegular():
			content := e.Content
			if e.Payload != "" {
				content = r.objects[e.Payload]
			}
			err = os.WriteFile(p, content, 0o600)
		case e.IsSymlink():
			err = os.Symlink(e.Payload, p)
		default:
			err = unix.Mknod(p, e.Mode&dumpfile.TypeMask|0o600, int(e.Rdev))
		}
		if err != nil {
			t.Fatalf("materialize %q: %v", e.Path, err)
		}
		if e.Hardlink != "" {
			continue
		}
		for _, x := range e.Xattrs {
			if strings.HasPrefix(x.Name, "user.") && !e.IsDir() && !e.IsRegular() {
				continue // Linux allows user.* on files and directories only
			}
			err := unix.Lsetxattr(p, x.Name, x.Value, 0)
			if err == unix.ENOSPC || err == unix.E2BIG {
				continue // more than ext4 keeps for one inode: leave it out
			}
			if err != nil {
				t.Fatalf("materialize %q: setxattr %s: %v", e.Path, x.Name, err)
			}
		}
		if err := os.Lchown(p, int(e.UID), int(e.GID)); err != nil {
			t.Fatalf("materialize %q: %v", e.Path, err)
		}
		if !e.IsSymlink() {
			if err := unix.Chmod(p, e.Mode&0o7777); err != nil {
				t.Fatalf("materialize %q: %v", e.Path, err)
			}
		}
	}
	order := make([]dumpfile.Entry, len(r.entries))
	copy(order, r.entries)
	sort.SliceStable(order, func(i, j int) bool { return strings.Count(order[i].Path, "/") > strings.Count(order[j].Path, "/") })
	for _, e := range order {
		if e.Hardlink != "" {
			continue
		}
		ts := []unix.Timespec{{Sec: e.Mtime.Sec, Nsec: int64(e.Mtime.Nsec)}, {Sec: e.Mtime.Sec, Nsec: int64(e.Mtime.Nsec)}}
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, at(e.Path), ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatalf("materialize %q: utimes: %v", e.Path, err)
		}
	}
}

// TestGenTreeRepeatable: a seed makes the same tree every time, so that a
// failure on a random tree can be made again from its seed.
func TestGenTreeRepeatable(t *testing.T) {
	for seed := uint64(1); seed <= 20; seed++ {
		a, b := genTree(seed, 200), genTree(seed, 200)
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("genTree(%d, 200) made two different trees", seed)
		}
	}
}

// TestRandomTrees writes random trees with the project's image writer in
// every layout version, and compares composefs-fuse with the kernel on them.
func TestRandomTrees(t *testing.T) {
	requireRoot(t)
	for seed := uint64(1); seed <= 3; seed++ {
		tree := genTree(seed, 150)
		objects := tempDir(t, fmt.Sprintf("objects-%d", seed))
		tree.putObjects(t, objects)
		for _, v := range []int{0, 1, 2} {
			t.Run(fmt.Sprintf("seed%d/v%d", seed, v), func(t *testing.T) {
				image := tree.image(t, v)
				kernel := kernelMount(t, image, objects)
				for _, transport := range transports(t) {
					ours := fuseMount(t, image, append([]string{"--basedir", objects}, transport.args...)...)
					withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
					transport.check(t, ours)
				}
				// Every open answered, objects handed to the kernel
				// (passthrough): the same tree.
				ours := fuseMount(t, image, "--basedir", objects, "--passthrough")
				withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
			})
		}
	}
}

// TestRandomTreesMkcomposefs does the same with trees on disk imaged by
// cmd/mkcomposefs (once it exists), objects in its --digest-store.
func TestRandomTreesMkcomposefs(t *testing.T) {
	requireRoot(t)
	mk := buildCmd(t, "mkcomposefs")
	for seed := uint64(10); seed <= 12; seed++ {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			tree := genTree(seed, 150)
			src := tempDir(t, "src")
			tree.materialize(t, src)
			objects := tempDir(t, "objects")
			image := filepath.Join(tempDir(t, "image"), "image.cfs")
			if out, err := run(t, time.Minute, mk, "--digest-store="+objects, src, image); err != nil {
				t.Fatalf("mkcomposefs: %v\n%s", err, out)
			}
			kernel := kernelMount(t, image, objects)
			ours := fuseMount(t, image, "--basedir", objects)
			withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
		})
	}
}
