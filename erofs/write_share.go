package erofs

import (
	"bytes"
	"hash/maphash"
	"slices"
)

// xattrCounts finds the xattrs used by more than one inode, which go to the
// shared table. In a big tree most xattrs are unique (every external file's
// redirect and metacopy digest), so it first counts hashes in a sorted
// slice and keeps exact entries only for the pairs whose hash repeats: a
// map entry with a key string for every distinct pair was most of the
// writer's memory.
//
// An xattr is (tag, name, value): C's layout counts by full name (tag 0),
// version 2 by prefix index (tag) and suffix.
type xattrCounts struct {
	seed   maphash.Seed
	hashes []uint64
	dups   map[uint64][]*xattrUse
}

// xattrUse is one pair whose hash repeats, and how often the exact pair
// occurs.
type xattrUse struct {
	tag   uint8
	name  string
	value []byte
	count int
	// id is the caller's: where the shared table holds the pair.
	id int64
}

func newXattrCounts() *xattrCounts {
	return &xattrCounts{seed: maphash.MakeSeed()}
}

func (c *xattrCounts) hash(tag uint8, name string, value []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	h.WriteByte(tag)
	h.WriteString(name)
	h.WriteByte(0)
	h.Write(value)
	return h.Sum64()
}

// note records one use of a pair (first pass, every xattr).
func (c *xattrCounts) note(tag uint8, name string, value []byte) {
	c.hashes = append(c.hashes, c.hash(tag, name, value))
}

// seal ends the first pass: only hashes seen twice or more stay candidates.
func (c *xattrCounts) seal() {
	slices.Sort(c.hashes)
	c.dups = make(map[uint64][]*xattrUse)
	for i := 1; i < len(c.hashes); i++ {
		if c.hashes[i] == c.hashes[i-1] {
			c.dups[c.hashes[i]] = nil
		}
	}
	c.hashes = nil
}

// count records one use of a pair exactly (second pass, every xattr).
func (c *xattrCounts) count(tag uint8, name string, value []byte) {
	h := c.hash(tag, name, value)
	bucket, ok := c.dups[h]
	if !ok {
		return
	}
	for _, u := range bucket {
		if u.tag == tag && u.name == name && bytes.Equal(u.value, value) {
			u.count++
			return
		}
	}
	c.dups[h] = append(bucket, &xattrUse{tag: tag, name: name, value: value, count: 1, id: -1})
}

// shared lists the pairs used more than once, in no particular order.
func (c *xattrCounts) shared() []*xattrUse {
	var out []*xattrUse
	for _, bucket := range c.dups {
		for _, u := range bucket {
			if u.count > 1 {
				out = append(out, u)
			}
		}
	}
	return out
}

// lookup returns the pair's entry if it is used more than once, else nil.
func (c *xattrCounts) lookup(tag uint8, name string, value []byte) *xattrUse {
	bucket := c.dups[c.hash(tag, name, value)]
	for _, u := range bucket {
		if u.tag == tag && u.name == name && bytes.Equal(u.value, value) {
			if u.count > 1 {
				return u
			}
			return nil
		}
	}
	return nil
}
