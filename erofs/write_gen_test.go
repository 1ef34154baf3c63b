package erofs

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
)

// treeGen makes random trees that exercise the writer's edges: odd-byte
// names, names around block and whiteout-stub rules, every file type,
// sizes around inline and block limits, xattrs shared and not, escaped
// overlay xattrs, hardlinks, whiteouts, big ids, nanosecond mtimes.
type treeGen struct {
	r  *rand.Rand
	v2 bool
	// cOnly keeps to what C mkcomposefs can express (no sha512 digests).
	cOnly bool
	// anyPrimary leaves the first-generated name of a hardlinked inode as
	// its primary, wherever it sorts.
	anyPrimary bool
	entries    []dumpfile.Entry
	leaves     []int // indexes of hardlinkable entries
	names      map[string]int
	nlinks     map[string]int // leaf path → names
	common     []dumpfile.Xattr
}

func newTreeGen(seed uint64, v2 bool) *treeGen {
	g := &treeGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), v2: v2, nlinks: map[string]int{}}
	// A few xattrs many files share, so the shared table fills up.
	for i := range 6 {
		g.common = append(g.common, dumpfile.Xattr{Name: fmt.Sprintf("user.common%d", i), Value: []byte(fmt.Sprintf("v%d", i%3))})
	}
	g.common = append(g.common,
		dumpfile.Xattr{Name: "security.selinux", Value: []byte("system_u:object_r:usr_t:s0\x00")},
		dumpfile.Xattr{Name: "trusted.overlay.custom", Value: []byte("esc")})
	return g
}

func (g *treeGen) intn(n int) int { return g.r.IntN(n) }
func (g *treeGen) chance(p float64) bool {
	return g.r.Float64() < p
}

// name returns a fresh child name for a directory.
func (g *treeGen) name(dir string, used map[string]bool) string {
	for {
		var n string
		switch g.intn(8) {
		case 0: // odd bytes, anything but '/' and NUL
			b := make([]byte, 1+g.intn(12))
			for i := range b {
				for b[i] == 0 || b[i] == '/' {
					b[i] = byte(g.intn(256))
				}
			}
			n = string(b)
		case 1: // long
			n = strings.Repeat(string(rune('a'+g.intn(26))), 200+g.intn(56))
		case 2: // sorts before "." and ".."
			n = string([]byte{byte('!' + g.intn(12))}) + fmt.Sprint(g.intn(100))
		case 3: // two hex digits: a stub name at the root
			n = fmt.Sprintf("%02x", g.intn(256))
		default:
			n = fmt.Sprintf("f%d", g.intn(100000))
		}
		if n != "." && n != ".." && !used[n] {
			used[n] = true
			return n
		}
	}
}

func (g *treeGen) mtime() dumpfile.Timespec {
	switch g.intn(4) {
	case 0:
		return dumpfile.Timespec{Sec: 1000}
	case 1:
		return dumpfile.Timespec{Sec: 1000 + int64(g.intn(5)), Nsec: uint32(g.intn(1_000_000_000))}
	default:
		return dumpfile.Timespec{Sec: 1000}
	}
}

func (g *treeGen) id() uint32 {
	if g.chance(0.1) {
		return 65536 + uint32(g.intn(1<<20))
	}
	return uint32(g.intn(3))
}

func (g *treeGen) xattrs() []dumpfile.Xattr {
	var xs []dumpfile.Xattr
	seen := map[string]bool{}
	add := func(x dumpfile.Xattr) {
		if !seen[x.Name] {
			seen[x.Name] = true
			xs = append(xs, x)
		}
	}
	for _, c := range g.common {
		if g.chance(0.3) {
			add(c)
		}
	}
	prefixes := []string{"user.", "trusted.", "security.", "trusted.overlay.", "lustre.", "system.", "user.x."}
	for range g.intn(3) {
		v := make([]byte, g.intn(40))
		for i := range v {
			v[i] = byte(g.intn(256))
		}
		add(dumpfile.Xattr{Name: prefixes[g.intn(len(prefixes))] + fmt.Sprint("k", g.intn(50)), Value: v})
	}
	if g.chance(0.05) {
		add(dumpfile.Xattr{Name: xattrPrefixPosixACLAccess, Value: []byte{2, 0, 0, 0}})
	}
	if g.chance(0.03) {
		// Many xattrs: more than 128 shared references, a big body.
		for i := range 150 + g.intn(60) {
			add(dumpfile.Xattr{Name: fmt.Sprintf("user.many%d", i), Value: []byte("m")})
		}
	}
	if g.chance(0.02) {
		add(dumpfile.Xattr{Name: "user.big", Value: make([]byte, 3000+g.intn(1100))})
	}
	return xs
}

func hexDigest(g *treeGen, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(g.intn(256))
	}
	return hex.EncodeToString(b)
}

// sizes around the inline limit, half a block, a block and 4 GiB.
var genSizes = []uint64{1, 2, 63, 64, 65, 2047, 2048, 2049, 4095, 4096, 4097, 4999, 5000,
	8191, 8192, 1 << 20, 1<<20 + 1, 1 << 32, 1<<32 + 1, 12 << 30}

func (g *treeGen) leaf(path string) dumpfile.Entry {
	e := dumpfile.Entry{Path: path, Nlink: 1, UID: g.id(), GID: g.id(), Mtime: g.mtime(), Xattrs: g.xattrs()}
	perm := uint32(g.intn(0o10000))
	switch k := g.intn(12); {
	case k < 4: // inline content
		maxInline := uint64(writeMaxInlineContent)
		if g.v2 {
			maxInline = 512
		}
		var size uint64
		if g.chance(0.5) {
			size = genSizes[g.intn(len(genSizes))]
		} else {
			size = uint64(g.intn(200))
		}
		size = min(size, maxInline)
		e.Mode = ModeReg | perm
		e.Size = size
		if size > 0 {
			e.Content = make([]byte, size)
			for i := range e.Content {
				e.Content[i] = byte(g.intn(256))
			}
		}
	case k < 7: // external
		e.Mode = ModeReg | perm
		e.Size = genSizes[g.intn(len(genSizes))]
		if g.chance(0.05) {
			e.Size = 0 // a payload on an empty file
		}
		switch g.intn(4) {
		case 0:
			e.Digest = hexDigest(g, 32)
			e.Payload = e.Digest[:2] + "/" + e.Digest[2:]
		case 1:
			if g.cOnly {
				e.Digest = hexDigest(g, 32)
			} else {
				e.Digest = hexDigest(g, 64)
			}
			e.Payload = e.Digest[:2] + "/" + e.Digest[2:]
		case 2:
			d := hexDigest(g, 32)
			e.Payload = d[:2] + "/" + d[2:]
		default: // neither: a sparse file with a bare metacopy
		}
	case k < 9: // symlink
		e.Mode = ModeLnk | 0o777
		maxLen := 4095
		if g.v2 {
			maxLen = 1024
		}
		l := 1 + g.intn(100)
		if g.chance(0.3) {
			l = min(maxLen, 3900+g.intn(196))
		}
		t := make([]byte, l)
		for i := range t {
			t[i] = byte('a' + g.intn(26))
		}
		e.Payload = string(t)
		e.Size = uint64(l)
	case k == 9:
		if g.chance(0.5) {
			e.Mode = ModeChr | perm
		} else {
			e.Mode = ModeBlk | perm
		}
		e.Rdev = uint64(1 + g.intn(1<<20))
		if !g.v2 && g.chance(0.1) {
			// C keeps 32 bits of a device number.
			e.Rdev |= uint64(1+g.intn(4)) << 32
		}
	case k == 10:
		if g.chance(0.5) {
			e.Mode = ModeFifo | perm
		} else {
			e.Mode = ModeSock | perm
		}
		if g.cOnly && g.chance(0.2) {
			// A SIZE the image does not keep (but C's compact test sees).
			e.Size = genSizes[g.intn(len(genSizes))]
		}
	default: // whiteout
		e.Mode = ModeChr | perm
	}
	return e
}

// generate returns a tree in dumpfile order (parents first; children in
// random order; hardlinks after their targets or before them).
func (g *treeGen) generate(maxEntries int) []dumpfile.Entry {
	g.entries = []dumpfile.Entry{{Path: "/", Mode: ModeDir | 0o755, Nlink: 2, UID: g.id(), GID: g.id(), Mtime: g.mtime(), Xattrs: g.xattrs()}}
	g.dir("/", 0, maxEntries)
	// Hardlinks to earlier leaves (never to whiteouts: those cannot be
	// hardlinked).
	var links []dumpfile.Entry
	for _, d := range g.dirs() {
		if len(g.leaves) == 0 || !g.chance(0.3) {
			continue
		}
		target := g.entries[g.leaves[g.intn(len(g.leaves))]]
		used := g.used(d)
		p := genJoin(d, g.name(d, used))
		links = append(links, dumpfile.Entry{Path: p, Mode: target.Mode, Hardlink: target.Path})
		g.nlinks[target.Path]++
	}
	// A hardlink may come before its target's line is even read.
	for _, l := range links {
		g.entries = append(g.entries, l)
	}
	for i := range g.entries {
		if n, ok := g.nlinks[g.entries[i].Path]; ok {
			g.entries[i].Nlink = uint32(n)
		}
	}
	if !g.anyPrimary {
		primaryFirst(g.entries)
	}
	return g.entries
}

// dfsLess orders paths as a depth-first walk over sorted directories meets
// them.
func dfsLess(a, b string) bool {
	return slices.Compare(strings.Split(a, "/"), strings.Split(b, "/")) < 0
}

// primaryFirst makes the first name of every hardlinked inode, in
// depth-first order, the one that carries it, as in a dump of an image:
// then image → dump → image is the identity.
func primaryFirst(entries []dumpfile.Entry) {
	idx := map[string]int{}
	for i, e := range entries {
		idx[e.Path] = i
	}
	groups := map[string][]int{}
	for i, e := range entries {
		if e.Hardlink != "" {
			groups[e.Hardlink] = append(groups[e.Hardlink], i)
		}
	}
	for owner, links := range groups {
		oi := idx[owner]
		first := oi
		for _, l := range links {
			if dfsLess(entries[l].Path, entries[first].Path) {
				first = l
			}
		}
		if first == oi {
			continue
		}
		primary := entries[oi]
		primary.Path = entries[first].Path
		entries[oi] = dumpfile.Entry{Path: owner, Mode: primary.Mode, Hardlink: primary.Path}
		entries[first] = primary
		for _, l := range links {
			if l != first {
				entries[l].Hardlink = primary.Path
			}
		}
	}
}

func genJoin(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

func (g *treeGen) dirs() []string {
	var d []string
	for _, e := range g.entries {
		if e.Mode&ModeFmt == ModeDir && e.Hardlink == "" {
			d = append(d, e.Path)
		}
	}
	return d
}

func (g *treeGen) used(dir string) map[string]bool {
	used := map[string]bool{}
	prefix := genJoin(dir, "")
	for _, e := range g.entries {
		if rest, ok := strings.CutPrefix(e.Path, prefix); ok && e.Path != dir && !strings.Contains(rest, "/") {
			used[rest] = true
		}
	}
	return used
}

func (g *treeGen) dir(path string, depth, budget int) {
	used := map[string]bool{}
	n := g.intn(12)
	if g.chance(0.1) {
		n = 100 + g.intn(300) // several directory blocks
	}
	for i := 0; i < n && len(g.entries) < budget; i++ {
		p := genJoin(path, g.name(path, used))
		if depth < 4 && g.chance(0.15) {
			g.entries = append(g.entries, dumpfile.Entry{Path: p, Mode: ModeDir | uint32(g.intn(0o10000)), Nlink: 2,
				UID: g.id(), GID: g.id(), Mtime: g.mtime(), Xattrs: g.xattrs()})
			g.dir(p, depth+1, budget)
			continue
		}
		e := g.leaf(p)
		g.entries = append(g.entries, e)
		if !(e.Mode&ModeFmt == ModeChr && e.Rdev == 0) {
			g.leaves = append(g.leaves, len(g.entries)-1)
			g.nlinks[p] = 1
		}
	}
}
