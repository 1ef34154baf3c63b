package oci

import (
	"slices"

	"github.com/composefs/composefs-go/dumpfile"
)

// meta is the metadata of an inode: permission bits (with setuid, setgid
// and sticky), owner, modification time, xattrs sorted by name.
type meta struct {
	perm     uint32
	uid, gid uint32
	mtime    dumpfile.Timespec
	xattrs   []dumpfile.Xattr
}

// leaf is a non-directory inode; hardlinks share one.
type leaf struct {
	meta
	fileType uint32 // S_IF* bits
	size     uint64
	content  []byte // inline content of a small regular file
	digest   []byte // fs-verity digest of an external regular file
	target   string // symlink target
	rdev     uint64
}

// node is one name in the tree: a directory or a leaf.
type node struct {
	dir   *dirNode
	leaf  *leaf
	layer int // the layer that last put this name here
}

type dirNode struct {
	meta
	children map[string]*node
}

func newDir(m meta) *dirNode { return &dirNode{meta: m, children: map[string]*node{}} }

// sortedNames lists a directory's names in bytewise order, the order
// composefs-rs keeps them in.
func (d *dirNode) sortedNames() []string {
	names := make([]string, 0, len(d.children))
	for n := range d.children {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// pruneLower removes from d, recursively, what layers below layer put
// there: what an opaque directory or a whiteout hides.
func (d *dirNode) pruneLower(layer int) {
	for name, c := range d.children {
		switch {
		case c.layer != layer:
			delete(d.children, name)
		case c.dir != nil:
			c.dir.pruneLower(layer)
		}
	}
}

// setXattr sets name to value in a sorted xattr list.
func setXattr(xs []dumpfile.Xattr, name string, value []byte) []dumpfile.Xattr {
	i, found := slices.BinarySearchFunc(xs, name, func(x dumpfile.Xattr, n string) int {
		switch {
		case x.Name < n:
			return -1
		case x.Name > n:
			return 1
		}
		return 0
	})
	if found {
		xs[i].Value = value
		return xs
	}
	return slices.Insert(xs, i, dumpfile.Xattr{Name: name, Value: value})
}
