package erofs

import (
	"bytes"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// shareXattrs builds the shared xattr table: every (name, value) pair used
// by more than one inode, in C's canonical order (name descending, then
// longer value first, then value bytes descending), and decides for each
// inode which of its xattrs it refers to there: at most 128, the rest stay
// inline.
func (w *cWriter) shareXattrs() {
	counts := newXattrCounts()
	for _, n := range w.nodes {
		for _, x := range n.xattrs {
			counts.note(0, x.name, x.value)
		}
	}
	counts.seal()
	for _, n := range w.nodes {
		for _, x := range n.xattrs {
			counts.count(0, x.name, x.value)
		}
	}
	all := counts.shared()
	slices.SortFunc(all, func(a, b *xattrUse) int {
		if c := strings.Compare(b.name, a.name); c != 0 {
			return c
		}
		if len(a.value) != len(b.value) {
			return len(b.value) - len(a.value)
		}
		return bytes.Compare(b.value, a.value)
	})
	var off uint64
	for _, u := range all {
		u.id = int64(off)
		w.shared = append(w.shared, wxattr{name: u.name, value: u.value})
		_, suffix := splitXattrNameC(u.name)
		off += xattrEntrySize(suffix, len(u.value))
	}
	w.sharedSize = off
	for _, n := range w.nodes {
		n.c.shared = make([]int64, len(n.xattrs))
		refs := 0
		for i, x := range n.xattrs {
			n.c.shared[i] = -1
			if u := counts.lookup(0, x.name, x.value); u != nil && refs < xattrLongPrefix {
				n.c.shared[i] = u.id
				refs++
			}
		}
	}
}

// xattrBodySize is the size of the node's inline xattr body: header,
// shared ids, inline entries.
func (n *wnode) cXattrBodySize() (size uint64, nShared int) {
	var inline uint64
	for i, x := range n.xattrs {
		if n.c.shared[i] >= 0 {
			nShared++
		} else {
			_, suffix := splitXattrNameC(x.name)
			inline += xattrEntrySize(suffix, len(x.value))
		}
	}
	if nShared == 0 && inline == 0 {
		return 0, 0
	}
	return roundUp(xattrIbodyHeaderSize+uint64(nShared)*4+inline, 4), nShared
}

// chunkBitsAndCount: an external file is one chunk-based inode whose
// chunks are as large as needed to need few of them (at least a block, at
// most 2^43 bytes).
func chunkBitsAndCount(size uint64) (chunkBits uint32, count uint64) {
	chunkBits = 1
	if size > 1 {
		chunkBits = uint32(bits.Len64(size - 1))
	}
	chunkBits = max(chunkBits, BlockBits)
	chunkBits = min(chunkBits, BlockBits+ChunkFormatBlkbitsMask)
	chunk := uint64(1) << chunkBits
	return chunkBits, size/chunk + min(size%chunk, 1)
}

// splitDirents groups a directory's entries into blocks the way EROFS
// fills them; the last group stays inline when it is at most half a block.
func splitDirents(children []*wnode) (blocks [][]*wnode, tail []*wnode, tailSize uint64) {
	return splitDirentBlocks(children, func(c *wnode) int { return len(c.name) })
}

// splitDirentBlocks fills 4 KiB directory blocks with dirents in order (a
// dirent and its name never straddle blocks); the last group becomes the
// inline tail when it is at most half a block, else a block of its own.
// Both layouts, C's and composefs-rs', draw these lines the same way.
func splitDirentBlocks[T any](items []T, nameLen func(T) int) (blocks [][]T, tail []T, tailSize uint64) {
	var size uint64
	start := 0
	for i, it := range items {
		l := uint64(direntSize + nameLen(it))
		if size+l > BlockSize {
			blocks = append(blocks, items[start:i])
			start, size = i, 0
		}
		size += l
	}
	if size > BlockSize/2 {
		return append(blocks, items[start:]), nil, 0
	}
	return blocks, items[start:], size
}

// computeDataSize decides, before placement, how much of the node's data
// goes to full blocks and how much inline after the inode.
func (n *wnode) computeDataSize() {
	n.c.nBlocks, n.c.tail = 0, 0
	switch n.fileType() {
	case ModeDir:
		var tailSize uint64
		n.c.dirBlocks, n.c.dirTail, tailSize = splitDirents(n.children)
		n.c.nBlocks, n.c.tail = uint64(len(n.c.dirBlocks)), tailSize
	case ModeLnk:
		n.c.tail = uint64(len(n.payload))
	case ModeReg:
		switch {
		case n.size == 0:
		case n.content != nil:
			n.c.nBlocks, n.c.tail = n.size/BlockSize, n.size%BlockSize
			// Never inline more than half a block.
			if n.c.tail > BlockSize/2 {
				n.c.nBlocks++
				n.c.tail = 0
			}
		default:
			_, count := chunkBitsAndCount(n.size)
			n.c.tail = count * blockMapEntrySize
		}
	}
}

// cDataSize is the inode's i_size: only directories, regular files and
// symlinks have one.
func (n *wnode) cDataSize() uint64 {
	switch n.fileType() {
	case ModeDir:
		return n.c.nBlocks*BlockSize + n.c.tail
	case ModeReg, ModeLnk:
		return n.size
	}
	return 0
}

// fitsCompact: a compact inode has no mtime of its own (it gets the build
// time) and 16-bit nlink, uid, gid and 32-bit size. As in C, the size
// checked is the entry's SIZE even for types whose i_size is 0.
func (w *cWriter) fitsCompact(n *wnode) bool {
	size := n.size
	if n.fileType() == ModeDir {
		size = n.cDataSize()
	}
	return (mtimeKey{n.mtime.Sec, n.mtime.Nsec}) == w.minMtime &&
		n.nlink <= 0xFFFF && n.uid <= 0xFFFF && n.gid <= 0xFFFF &&
		size <= 0xFFFFFFFF
}

// padForTail returns the zero padding to put before an inode at pos so its
// inline tail does not cross a block boundary; when no padding can achieve
// that, the tail moves to a block of its own. Symlinks keep the whole inode
// and target inside one block.
func (n *wnode) padForTail(pos, inodeSize uint64) uint64 {
	nonTail := inodeSize + n.c.xattrSize
	if n.fileType() == ModeLnk {
		total := nonTail + n.c.tail
		crosses := pos/BlockSize != (pos+total-1)/BlockSize
		if total >= BlockSize {
			n.c.nBlocks++
			n.c.tail = 0
		}
		if crosses {
			return roundUp(pos, BlockSize) - pos
		}
		return 0
	}
	room := BlockSize - (pos+nonTail)%BlockSize
	if room >= n.c.tail {
		return 0
	}
	pad := roundUp(room, InodeSlotSize)
	if n.c.tail <= BlockSize-(pos+nonTail+pad)%BlockSize {
		return pad
	}
	n.c.nBlocks++
	n.c.tail = 0
	return roundUp(pos, BlockSize) - pos
}

// layoutInodes places every inode after the superblock, then the shared
// xattr table, then the data blocks.
func (w *cWriter) layoutInodes() error {
	pos := uint64(superblockOffset + superblockSize)
	for _, n := range w.nodes {
		n.computeDataSize()
		n.c.compact = w.fitsCompact(n)
		inodeSize := uint64(inodeExtendedSize)
		if n.c.compact {
			inodeSize = inodeCompactSize
		}
		n.c.xattrSize, _ = n.cXattrBodySize()
		if xattrIcount(n.c.xattrSize) > 0xFFFF {
			return fmt.Errorf("%s: too many xattrs: %w", n.path, ErrInvalidTree)
		}
		start := roundUp(pos, InodeSlotSize)
		pad := n.padForTail(start, inodeSize)
		n.c.ipad = start - pos + pad
		pos = start + pad
		n.c.isize = inodeSize + n.c.xattrSize + n.c.tail
		w.dataBlocks += n.c.nBlocks
		n.c.nid = pos / InodeSlotSize
		pos += n.c.isize
	}
	if w.root.c.nid > 0xFFFF {
		return fmt.Errorf("root inode beyond nid 65535: %w", ErrInvalidTree)
	}
	w.inodesEnd = roundUp(pos, InodeSlotSize)
	w.dataStart = roundUp(w.inodesEnd+w.sharedSize, BlockSize)
	if end := w.dataStart/BlockSize + w.dataBlocks; end > 0xFFFFFFFF {
		return fmt.Errorf("image of %d blocks is too large: %w", end, ErrInvalidTree)
	}
	return nil
}
