package erofs

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// The writer's limits, as C mkcomposefs enforces them on its input.
const (
	// writeMaxInlineContent: LCFS_INLINE_CONTENT_MAX, the largest inline file.
	writeMaxInlineContent = 5000
	// writePathMax: payloads and symlink targets must be shorter (PATH_MAX).
	writePathMax = 4096
	// writeMaxXattrName: XATTR_NAME_MAX.
	writeMaxXattrName = 255
	// writeMaxXattrValue: e_value_size is 16 bits.
	writeMaxXattrValue = 0xFFFF
	// writeXattrBudget: LCFS_INODE_EXTERNAL_XATTR_MAX, C's cap on the
	// (over-estimated) xattr space of one inode.
	writeXattrBudget = 0xFFFF / 2
	// writeMaxNonInlineChunks: LCFS_MAX_NONINLINE_CHUNKS, so the chunk
	// index of an external file fits in one block.
	writeMaxNonInlineChunks = 1024
)

// wxattr is one xattr of a node being written.
type wxattr struct {
	name  string
	value []byte
}

// wnode is one path of the tree being written. A hardlink is a node of its
// own (it has a name in its parent) whose link points at another node.
type wnode struct {
	name     string
	path     string
	parent   *wnode
	children []*wnode
	byName   map[string]*wnode

	link       *wnode // resolved hardlink target (possibly a link itself)
	linkTarget string // the hardlink's target path, until resolved

	mode    uint32
	nlink   uint32
	uid     uint32
	gid     uint32
	rdev    uint64
	size    uint64
	mtime   dumpfile.Timespec
	payload string
	content []byte
	digest  []byte
	alg     verity.Algorithm
	xattrs  []wxattr
	// xattrBudget mirrors C's running estimate of this node's xattr space,
	// which it caps at writeXattrBudget.
	xattrBudget int

	c cLayout // V0/V1 layout state
}

func (n *wnode) fileType() uint32 { return n.mode & ModeFmt }
func (n *wnode) isDir() bool      { return n.link == nil && n.linkTarget == "" && n.fileType() == ModeDir }

// isWhiteout tells whether n is stored as an overlayfs whiteout, a
// character device 0/0. An inode keeps 32 bits of the device number, so
// V0 and V1 store a number whose low 32 bits are 0 as 0/0, as C does (V2
// refuses a number that does not fit).
func (n *wnode) isWhiteout() bool { return n.fileType() == ModeChr && uint32(n.rdev) == 0 }

// target is the node that owns n's inode: n itself, or the end of its
// hardlink chain (flattened by buildTree).
func (n *wnode) target() *wnode {
	if n.link != nil {
		return n.link
	}
	return n
}

// lookupChild finds a child by name, before or after the tree is sorted.
func (n *wnode) lookupChild(name string) *wnode {
	if n.byName != nil {
		return n.byName[name]
	}
	i, ok := slices.BinarySearchFunc(n.children, name, func(c *wnode, name string) int {
		return strings.Compare(c.name, name)
	})
	if ok {
		return n.children[i]
	}
	return nil
}

func (n *wnode) addChild(c *wnode) {
	c.parent = n
	n.children = append(n.children, c)
	if n.byName == nil {
		n.byName = make(map[string]*wnode)
	}
	n.byName[c.name] = c
}

// sortChildren puts every directory's children in bytewise name order, the
// order of dirents on disk and of inode numbering.
func sortChildren(n *wnode) {
	slices.SortFunc(n.children, func(a, b *wnode) int { return strings.Compare(a.name, b.name) })
	n.byName = nil
	for _, c := range n.children {
		if len(c.children) > 0 {
			sortChildren(c)
		}
	}
}

// getXattr returns the value of an xattr by full name.
func (n *wnode) getXattr(name string) ([]byte, bool) {
	for _, x := range n.xattrs {
		if x.name == name {
			return x.value, true
		}
	}
	return nil, false
}

// setXattr sets or replaces an xattr the way lcfs_node_set_xattr does,
// including its space estimate and cap, so that the inputs C refuses are
// refused here too. The value is kept, not copied: the writer never
// modifies one, and a copy of every entry's xattrs doubled their memory.
func (n *wnode) setXattr(name string, value []byte) error {
	if len(name) == 0 || len(name) > writeMaxXattrName {
		return fmt.Errorf("%s: xattr name %q: length %d not in 1..%d: %w", n.path, name, len(name), writeMaxXattrName, ErrInvalidTree)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("%s: xattr name %q contains NUL: %w", n.path, name, ErrInvalidTree)
	}
	if len(value) > writeMaxXattrValue {
		return fmt.Errorf("%s: xattr %s: value of %d bytes exceeds %d: %w", n.path, name, len(value), writeMaxXattrValue, ErrInvalidTree)
	}
	for i, x := range n.xattrs {
		if x.name == name {
			last := len(n.xattrs) - 1
			n.xattrs[i] = n.xattrs[last]
			n.xattrs = n.xattrs[:last]
			if len(n.xattrs) > 0 {
				n.xattrBudget -= 2*xattrEntryHeaderSize - 1 + len(name) + len(x.value)
			} else {
				n.xattrBudget = 0
			}
			break
		}
	}
	cost := 2*xattrEntryHeaderSize - 1 + len(name) + len(value)
	if len(n.xattrs) == 0 {
		cost += xattrIbodyHeaderSize
	}
	if n.xattrBudget+cost > writeXattrBudget {
		return fmt.Errorf("%s: xattr %s: too much xattr data for one inode: %w", n.path, name, ErrInvalidTree)
	}
	n.xattrs = append(n.xattrs, wxattr{name: name, value: value})
	n.xattrBudget += cost
	return nil
}

// wtree is the tree being written, built from dumpfile entries.
type wtree struct {
	root  *wnode
	links []*wnode
}

// buildTree makes the tree C mkcomposefs makes from a dumpfile: entries in
// any order as long as parents come first, hardlinks resolved at the end.
func buildTree(entries []dumpfile.Entry) (*wtree, error) {
	t := &wtree{}
	if len(entries) == 0 {
		return nil, fmt.Errorf("no entries: %w", ErrInvalidTree)
	}
	for i := range entries {
		if err := t.add(&entries[i]); err != nil {
			return nil, err
		}
	}
	if t.root == nil {
		return nil, fmt.Errorf("no root directory: %w", ErrInvalidTree)
	}
	for _, l := range t.links {
		target := t.lookupPath(l.linkTarget)
		if target == nil {
			return nil, fmt.Errorf("%s: hardlink target %s does not exist: %w", l.path, l.linkTarget, ErrInvalidTree)
		}
		if target == l {
			return nil, fmt.Errorf("%s: hardlink to itself: %w", l.path, ErrInvalidTree)
		}
		l.link = target
	}
	// Flatten chains (a hardlink to a hardlink) so every link points at the
	// node owning the inode; a chain longer than the number of links loops.
	final := make([]*wnode, len(t.links))
	for i, l := range t.links {
		n := l
		for steps := 0; n.link != nil; steps++ {
			if steps > len(t.links) {
				return nil, fmt.Errorf("%s: hardlink loop: %w", l.path, ErrInvalidTree)
			}
			n = n.link
		}
		if n.fileType() == ModeDir {
			return nil, fmt.Errorf("%s: hardlink to directory %s: %w", l.path, n.path, ErrInvalidTree)
		}
		if n.isWhiteout() {
			return nil, fmt.Errorf("%s: hardlink to %s: %w: %w", l.path, n.path, dumpfile.ErrHardlinkedWhiteout, ErrInvalidTree)
		}
		final[i] = n
	}
	for i, l := range t.links {
		l.link, l.linkTarget = final[i], ""
	}
	sortChildren(t.root)
	return t, nil
}

func validFileType(mode uint32) bool {
	switch mode & ModeFmt {
	case ModeReg, ModeDir, ModeLnk, ModeBlk, ModeChr, ModeSock, ModeFifo:
		return true
	}
	return false
}

func (t *wtree) add(e *dumpfile.Entry) error {
	p := e.Path
	if p == "" {
		return fmt.Errorf("empty path: %w", ErrInvalidTree)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q contains NUL: %w", p, ErrInvalidTree)
	}
	n := &wnode{path: p, mode: e.Mode}
	hardlink := e.Hardlink != ""
	if hardlink {
		if e.Mode&ModeFmt == ModeDir {
			return fmt.Errorf("%s: directories can't be hardlinked: %w", p, ErrInvalidTree)
		}
		if strings.IndexByte(e.Hardlink, 0) >= 0 {
			return fmt.Errorf("%s: hardlink target contains NUL: %w", p, ErrInvalidTree)
		}
		n.linkTarget = e.Hardlink
	} else if !validFileType(e.Mode) {
		return fmt.Errorf("%s: invalid mode %o: %w", p, e.Mode, ErrInvalidTree)
	}

	if p == "/" {
		if hardlink || e.Mode&ModeFmt != ModeDir {
			return fmt.Errorf("root must be a directory: %w", ErrInvalidTree)
		}
		if t.root != nil {
			return fmt.Errorf("more than one root entry: %w", ErrInvalidTree)
		}
		t.root = n
		n.parent = n
	} else {
		if t.root == nil {
			return fmt.Errorf("%s: root entry must come first: %w", p, ErrInvalidTree)
		}
		parent, name := t.lookupParent(p)
		if parent == nil {
			return fmt.Errorf("%s: parent directory missing: %w", p, ErrInvalidTree)
		}
		if !parent.isDir() {
			return fmt.Errorf("%s: parent is not a directory: %w", p, ErrInvalidTree)
		}
		switch {
		case name == "." || name == "..":
			return fmt.Errorf("%s: invalid . or .. in path: %w", p, ErrInvalidTree)
		case name == "":
			return fmt.Errorf("%s: empty file name: %w", p, ErrInvalidTree)
		case len(name) > nameLen:
			return fmt.Errorf("%s: file name longer than %d bytes: %w", p, nameLen, ErrInvalidTree)
		case parent.lookupChild(name) != nil:
			return fmt.Errorf("%s: path already exists: %w", p, ErrInvalidTree)
		}
		n.name = name
		parent.addChild(n)
	}
	if hardlink {
		t.links = append(t.links, n)
		return nil
	}
	return n.fill(e)
}

// fill copies an entry's stat, data and xattrs into the node.
func (n *wnode) fill(e *dumpfile.Entry) error {
	n.nlink = e.Nlink
	n.uid = e.UID
	n.gid = e.GID
	n.mtime = e.Mtime
	n.size = e.Size
	ft := n.fileType()
	if ft == ModeChr || ft == ModeBlk {
		n.rdev = e.Rdev
	}
	if n.isWhiteout() && e.Nlink > 1 {
		return fmt.Errorf("%s: nlink %d: %w: %w", n.path, e.Nlink, dumpfile.ErrHardlinkedWhiteout, ErrInvalidTree)
	}
	if strings.IndexByte(e.Payload, 0) >= 0 {
		return fmt.Errorf("%s: payload contains NUL: %w", n.path, ErrInvalidTree)
	}
	if len(e.Payload) >= writePathMax {
		return fmt.Errorf("%s: payload longer than %d bytes: %w", n.path, writePathMax-1, ErrInvalidTree)
	}
	n.payload = e.Payload
	if ft == ModeLnk {
		if e.Payload == "" {
			return fmt.Errorf("%s: symlink without target: %w", n.path, ErrInvalidTree)
		}
		n.size = uint64(len(e.Payload))
	} else if len(e.Content) > 0 {
		if uint64(len(e.Content)) != e.Size {
			return fmt.Errorf("%s: content is %d bytes, size is %d: %w", n.path, len(e.Content), e.Size, ErrInvalidTree)
		}
		if len(e.Content) > writeMaxInlineContent {
			return fmt.Errorf("%s: inline content of %d bytes exceeds %d: %w", n.path, len(e.Content), writeMaxInlineContent, ErrInvalidTree)
		}
		n.content = e.Content
	}
	if e.Digest != "" {
		d, err := hex.DecodeString(e.Digest)
		alg, ok := verity.AlgorithmForDigestSize(len(d))
		if err != nil || !ok {
			return fmt.Errorf("%s: invalid digest %q: %w", n.path, e.Digest, ErrInvalidTree)
		}
		n.digest, n.alg = d, alg
	}
	for _, x := range e.Xattrs {
		if err := n.setXattr(x.Name, x.Value); err != nil {
			return err
		}
	}
	return nil
}

// lookupParent walks to the directory that holds p's last component, the way
// C does: leading and repeated slashes are skipped, a trailing slash leaves
// an empty name.
func (t *wtree) lookupParent(p string) (*wnode, string) {
	n := t.root
	for {
		p = strings.TrimLeft(p, "/")
		i := strings.IndexByte(p, '/')
		if i < 0 {
			return n, p
		}
		n = n.lookupChild(p[:i])
		if n == nil {
			return nil, ""
		}
		p = p[i:]
	}
}

// lookupPath finds the node at p; trailing slashes are allowed.
func (t *wtree) lookupPath(p string) *wnode {
	n := t.root
	for {
		p = strings.TrimLeft(p, "/")
		if p == "" {
			return n
		}
		name := p
		if i := strings.IndexByte(p, '/'); i >= 0 {
			name, p = p[:i], p[i:]
		} else {
			p = ""
		}
		n = n.lookupChild(name)
		if n == nil {
			return nil
		}
	}
}
