package erofs

import (
	"fmt"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/verity"
)

// composefs_version 0 and 1: the layout of C mkcomposefs (libcomposefs'
// lcfs-writer-erofs.c), reproduced byte for byte. In short: the tree is
// rewritten for overlayfs (escaped trusted.overlay.* xattrs, metacopy and
// redirect xattrs, escaped whiteouts, an opaque root with 256 whiteout
// stubs), inodes are numbered breadth-first, each inode is compact when it
// can be, small file tails and directory tails sit inline after their inode,
// xattrs used by more than one inode go to a shared table after the inodes,
// and full data blocks come last.

// cLayout is the per-node state of the V0/V1 layout.
type cLayout struct {
	ino       uint32
	compact   bool
	ipad      uint64 // zero bytes before the inode
	xattrSize uint64 // xattr body after the inode
	isize     uint64 // inode + xattr body + inline tail
	nid       uint64
	nBlocks   uint64  // full data blocks
	tail      uint64  // bytes inline after the xattr body
	shared    []int64 // per xattr (sorted by name): shared table offset, or -1
	dirBlocks [][]*wnode
	dirTail   []*wnode
}

// cWriter holds the image-wide state of a V0/V1 write.
type cWriter struct {
	version    int
	root       *wnode
	nodes      []*wnode // breadth-first: the inode order
	minMtime   mtimeKey
	hasACL     bool
	shared     []wxattr // the shared xattr table, in on-disk order
	sharedSize uint64
	inodesEnd  uint64
	dataBlocks uint64
	dataStart  uint64
	curEnd     uint64 // next free data byte while emitting inodes
}

type mtimeKey struct {
	sec  int64
	nsec uint32
}

func (a mtimeKey) less(b mtimeKey) bool {
	return a.sec < b.sec || (a.sec == b.sec && a.nsec < b.nsec)
}

func writeC(out *emitter, t *wtree, version, maxVersion int) error {
	w := &cWriter{version: version, root: t.root}
	// Version 1 marks whiteout directories differently; C moves up to it
	// when the tree has a whiteout and the ceiling allows.
	if w.version < composefsVersion1 && maxVersion >= composefsVersion1 && hasWhiteout(t.root) {
		w.version = composefsVersion1
	}
	if err := w.rewrite(t.root, t.root); err != nil {
		return err
	}
	if err := t.root.setXattr(overlayOpaque, []byte("y")); err != nil {
		return err
	}
	if err := w.addWhiteoutStubs(); err != nil {
		return err
	}
	w.computeTree()
	w.shareXattrs()
	if err := w.layoutInodes(); err != nil {
		return err
	}
	return w.emit(out)
}

func hasWhiteout(n *wnode) bool {
	if n.isWhiteout() {
		return true
	}
	for _, c := range n.children {
		if c.link == nil && hasWhiteout(c) {
			return true
		}
	}
	return false
}

// isExternal: a regular file whose content lives in an object.
func (n *wnode) isExternal() bool {
	return n.fileType() == ModeReg && n.size > 0 && n.content == nil
}

// rewrite turns the tree into what overlayfs expects, depth first: the
// same walk, in the same order, as C's rewrite_tree_node_for_erofs.
func (w *cWriter) rewrite(n, parent *wnode) error {
	if n.isExternal() {
		if _, count := chunkBitsAndCount(n.size); count > writeMaxNonInlineChunks {
			return fmt.Errorf("%s: file of %d bytes is too large: %w", n.path, n.size, ErrInvalidTree)
		}
	}
	// The user's own overlay xattrs are escaped; renaming every one of
	// them cannot collide.
	for i := range n.xattrs {
		if rest, ok := strings.CutPrefix(n.xattrs[i].name, OverlayXattrPrefix); ok {
			n.xattrs[i].name = OverlayEscapedPrefix + rest
		}
	}
	if n.isExternal() {
		var mc []byte
		if n.digest != nil {
			var err error
			if mc, err = verity.EncodeMetacopy(n.alg, n.digest); err != nil {
				return fmt.Errorf("%s: %w", n.path, err)
			}
		}
		if err := n.setXattr(overlayMetacopy, mc); err != nil {
			return err
		}
		if n.payload != "" {
			if err := n.setXattr(OverlayRedirect, []byte("/"+n.payload)); err != nil {
				return err
			}
		}
	}
	if n.isWhiteout() {
		if err := w.escapeWhiteout(n); err != nil {
			return err
		}
	}
	if n.fileType() != ModeDir {
		return nil
	}
	insertChild(n, &wnode{name: ".", path: n.path, parent: n, link: n})
	insertChild(n, &wnode{name: "..", path: n.path, parent: n, link: parent})
	for _, c := range n.children {
		if c.link != nil {
			continue
		}
		if err := w.rewrite(c, n); err != nil {
			return err
		}
	}
	return nil
}

// escapeWhiteout stores a user's whiteout (chardev 0/0) as an empty regular
// file overlayfs shows as a whiteout, and marks its directory.
func (w *cWriter) escapeWhiteout(n *wnode) error {
	n.size = 0
	n.mode = ModeReg | n.mode&^ModeFmt
	p := n.parent
	type set struct {
		n     *wnode
		name  string
		value string
	}
	sets := []set{
		{n, OverlayEscWhiteout, ""},
		{n, userOverlayWhiteout, ""},
		{p, overlayEscWhiteouts, ""},
		{p, userOverlayWhiteouts, ""},
	}
	// Version 1 also marks the directory opaque=x, the newer overlayfs
	// spelling of "holds whiteouts".
	if w.version >= composefsVersion1 {
		sets = append(sets, set{p, overlayEscOpaque, "x"}, set{p, userOverlayOpaque, "x"})
	}
	for _, s := range sets {
		if err := s.n.setXattr(s.name, []byte(s.value)); err != nil {
			return err
		}
	}
	return nil
}

// insertChild adds c to a sorted children list, keeping it sorted.
func insertChild(n, c *wnode) {
	i := 0
	for i < len(n.children) && n.children[i].name < c.name {
		i++
	}
	n.children = append(n.children, nil)
	copy(n.children[i+1:], n.children[i:])
	n.children[i] = c
	c.parent = n
}

// addWhiteoutStubs gives the root the 256 chardev 0/0 entries "00".."ff"
// that make overlayfs treat the image as a complete lower layer; names the
// tree already uses are left alone.
func (w *cWriter) addWhiteoutStubs() error {
	const hexdigits = "0123456789abcdef"
	root := w.root
	selinux, hasSelinux := root.getXattr("security.selinux")
	for i := range composefsWhiteoutStub {
		name := string([]byte{hexdigits[i>>4], hexdigits[i&15]})
		if root.lookupChild(name) != nil {
			continue
		}
		s := &wnode{
			name:  name,
			path:  "/" + name,
			mode:  ModeChr | 0o644,
			nlink: 1,
			uid:   root.uid,
			gid:   root.gid,
			mtime: root.mtime,
		}
		if hasSelinux {
			if err := s.setXattr("security.selinux", selinux); err != nil {
				return err
			}
		}
		insertChild(root, s)
	}
	return nil
}

// computeTree numbers the inodes breadth-first, fixes directory link
// counts, puts xattrs in name order and finds the oldest mtime (the
// superblock's build time, which compact inodes inherit).
func (w *cWriter) computeTree() {
	w.nodes = []*wnode{w.root}
	w.minMtime = mtimeKey{w.root.mtime.Sec, w.root.mtime.Nsec}
	for i := 0; i < len(w.nodes); i++ {
		n := w.nodes[i]
		if n.fileType() == ModeDir {
			nlink := uint32(2)
			for _, c := range n.children {
				if c.link == nil && c.fileType() == ModeDir {
					nlink++
				}
			}
			n.nlink = nlink
		}
		sortXattrs(n.xattrs)
		if m := (mtimeKey{n.mtime.Sec, n.mtime.Nsec}); m.less(w.minMtime) {
			w.minMtime = m
		}
		n.c.ino = uint32(i)
		for _, x := range n.xattrs {
			if x.name == xattrPrefixPosixACLAccess || x.name == xattrPrefixPosixACLDefault {
				w.hasACL = true
			}
		}
		for _, c := range n.children {
			if c.link == nil {
				w.nodes = append(w.nodes, c)
			}
		}
	}
}

func sortXattrs(xs []wxattr) {
	slices.SortFunc(xs, func(a, b wxattr) int { return strings.Compare(a.name, b.name) })
}
