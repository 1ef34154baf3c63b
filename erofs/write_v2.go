package erofs

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/verity"
)

// composefs_version 2: composefs-rs' own layout (its FormatVersion::V2),
// reproduced byte for byte. Compared with V0/V1: every inode is extended,
// inodes are numbered depth first, i_ino is the nid, mtimes keep no
// nanoseconds, build_time is 0, there are no whiteout stubs and whiteouts
// stay chardev 0/0, link counts are the number of names in the tree, small
// files are inline whole, and shared xattr ids are absolute (xattr_blkaddr
// 0).

// v2Dirent is one directory entry: a name and the inode it names.
type v2Dirent struct {
	name  string
	inode int
	ftype uint8
}

// v2Xattr is an xattr in stored form.
type v2Xattr struct {
	index  uint8
	suffix string
	value  []byte
}

func compareV2Xattr(a, b v2Xattr) int {
	if a.index != b.index {
		return int(a.index) - int(b.index)
	}
	if c := strings.Compare(a.suffix, b.suffix); c != 0 {
		return c
	}
	return bytes.Compare(a.value, b.value)
}

// v2Inode is one inode of a V2 image.
type v2Inode struct {
	n      *wnode
	nlink  uint32
	mode   uint16
	layout uint16
	iu     uint32
	size   uint64
	// xattrs: filter != 0 means there is an xattr body.
	filter uint32
	local  []v2Xattr
	shared []int
	// directory content
	blocks [][]v2Dirent
	inline []v2Dirent
	// regular file and symlink inline data; holes is the number of
	// block map entries after the xattrs of an external file.
	data  []byte
	holes int

	pos        uint64
	xattrSize  uint64
	blockStart uint64
}

type v2Writer struct {
	inodes    []*v2Inode
	byNode    map[*wnode]int
	refs      map[*wnode]uint32
	shared    []v2Xattr
	sharedPos []uint64
	inodesEnd uint64
	end       uint64
}

func writeV2(out *emitter, t *wtree) error {
	w := &v2Writer{byNode: make(map[*wnode]int), refs: make(map[*wnode]uint32)}
	countRefs(t.root, w.refs)
	if _, err := w.collectDir(t.root, 0); err != nil {
		return err
	}
	if err := w.shareXattrs(); err != nil {
		return err
	}
	if err := w.layout(); err != nil {
		return err
	}
	return w.emit(out)
}

// countRefs counts the names of every inode: its link count in V2.
func countRefs(n *wnode, refs map[*wnode]uint32) {
	for _, c := range n.children {
		refs[c.target()]++
		if c.link == nil && c.fileType() == ModeDir {
			countRefs(c, refs)
		}
	}
}

func (w *v2Writer) push(n *wnode) (int, error) {
	in := &v2Inode{n: n, nlink: w.refs[n]}
	in.mode = uint16(n.fileType() | n.mode&0o7777)
	if n.isExternal() || (n.fileType() == ModeReg && n.content == nil && n.payload != "") {
		// composefs' own xattrs come first, before the file's.
		var mc []byte
		if n.digest != nil {
			var err error
			if mc, err = verity.EncodeMetacopy(n.alg, n.digest); err != nil {
				return 0, fmt.Errorf("%s: %w", n.path, err)
			}
		}
		in.addXattr(overlayMetacopy, mc)
		if n.payload != "" {
			in.addXattr(OverlayRedirect, []byte("/"+n.payload))
		}
	}
	xs := slices.Clone(n.xattrs)
	sortXattrs(xs)
	for _, x := range xs {
		name := x.name
		if rest, ok := strings.CutPrefix(name, OverlayXattrPrefix); ok {
			name = OverlayEscapedPrefix + rest
		}
		in.addXattr(name, x.value)
	}
	w.inodes = append(w.inodes, in)
	return len(w.inodes) - 1, nil
}

func (in *v2Inode) addXattr(name string, value []byte) {
	idx, suffix := splitXattrNameV2(name)
	in.filter |= xattrFilterBit(idx, suffix)
	in.local = append(in.local, v2Xattr{index: idx, suffix: suffix, value: value})
}

// collectDir numbers a directory before its children, depth first.
func (w *v2Writer) collectDir(n *wnode, parent int) (int, error) {
	me, err := w.push(n)
	if err != nil {
		return 0, err
	}
	entries := []v2Dirent{{".", me, FTDir}, {"..", parent, FTDir}}
	for _, c := range n.children {
		t := c.target()
		var idx int
		if c.link == nil && t.fileType() == ModeDir {
			idx, err = w.collectDir(t, me)
		} else {
			idx, err = w.collectLeaf(t)
		}
		if err != nil {
			return 0, err
		}
		entries = append(entries, v2Dirent{c.name, idx, direntType(t.mode)})
	}
	slices.SortFunc(entries, func(a, b v2Dirent) int { return strings.Compare(a.name, b.name) })
	// A directory's link count: its entries naming directories, "." and
	// ".." included.
	in := w.inodes[me]
	in.nlink = 0
	for _, e := range entries {
		if e.ftype == FTDir {
			in.nlink++
		}
	}
	in.blocks, in.inline, in.size = splitDirentsV2(entries)
	return me, nil
}

// collectLeaf numbers a non-directory the first time one of its names is
// met.
func (w *v2Writer) collectLeaf(n *wnode) (int, error) {
	if idx, ok := w.byNode[n]; ok {
		return idx, nil
	}
	idx, err := w.push(n)
	if err != nil {
		return 0, err
	}
	w.byNode[n] = idx
	in := w.inodes[idx]
	switch n.fileType() {
	case ModeReg:
		switch {
		case n.content != nil:
			in.layout, in.size, in.data = LayoutFlatInline, uint64(len(n.content)), n.content
		case n.payload != "" || n.size > 0:
			if n.size > 1<<(BlockBits+ChunkFormatBlkbitsMask) {
				return 0, fmt.Errorf("%s: file of %d bytes is too large for one chunk: %w", n.path, n.size, ErrInvalidTree)
			}
			// One chunk of the largest size: the content comes from the
			// redirect's object. Only a file with a digest gets a block
			// map entry (composefs-rs' layout).
			in.layout, in.size, in.iu = LayoutChunkBased, n.size, ChunkFormatBlkbitsMask
			if n.payload != "" && n.digest != nil {
				in.holes = 1
			}
		default:
			in.layout = LayoutFlatPlain
		}
	case ModeLnk:
		in.layout, in.size, in.data = LayoutFlatInline, uint64(len(n.payload)), []byte(n.payload)
	case ModeChr, ModeBlk:
		if n.rdev > 0xFFFFFFFF {
			return 0, fmt.Errorf("%s: device number %d does not fit in 32 bits: %w", n.path, n.rdev, ErrInvalidTree)
		}
		in.iu = uint32(n.rdev)
	}
	return idx, nil
}

// splitDirentsV2 fills blocks as EROFS does (splitDirentBlocks); size is
// the directory's i_size: its full blocks plus the inline tail.
func splitDirentsV2(entries []v2Dirent) (blocks [][]v2Dirent, inline []v2Dirent, size uint64) {
	blocks, inline, tail := splitDirentBlocks(entries, func(e v2Dirent) int { return len(e.name) })
	return blocks, inline, uint64(len(blocks))*BlockSize + tail
}

func direntsSize(entries []v2Dirent) uint64 {
	var n uint64
	for _, e := range entries {
		n += uint64(direntSize + len(e.name))
	}
	return n
}

// shareXattrs moves every xattr used by more than one inode to the shared
// table, ordered by (index, suffix, value).
func (w *v2Writer) shareXattrs() error {
	counts := newXattrCounts()
	for _, in := range w.inodes {
		for _, x := range in.local {
			counts.note(x.index, x.suffix, x.value)
		}
	}
	counts.seal()
	for _, in := range w.inodes {
		for _, x := range in.local {
			counts.count(x.index, x.suffix, x.value)
		}
	}
	uses := counts.shared()
	slices.SortFunc(uses, func(a, b *xattrUse) int {
		return compareV2Xattr(v2Xattr{a.tag, a.name, a.value}, v2Xattr{b.tag, b.name, b.value})
	})
	for i, u := range uses {
		u.id = int64(i)
		w.shared = append(w.shared, v2Xattr{index: u.tag, suffix: u.name, value: u.value})
	}
	for _, in := range w.inodes {
		local := in.local[:0]
		for _, x := range in.local {
			if u := counts.lookup(x.index, x.suffix, x.value); u != nil {
				in.shared = append(in.shared, int(u.id))
			} else {
				local = append(local, x)
			}
		}
		in.local = local
		if len(in.shared) > 0xFF {
			return fmt.Errorf("%s: more than 255 shared xattrs: %w", in.n.path, ErrInvalidTree)
		}
	}
	return nil
}

// inlineSize is the number of bytes stored right after the xattr body.
func (in *v2Inode) inlineSize() uint64 {
	switch {
	case in.n.fileType() == ModeDir:
		return direntsSize(in.inline)
	case in.holes > 0:
		return uint64(in.holes) * blockMapEntrySize
	}
	return uint64(len(in.data))
}

func (w *v2Writer) layout() error {
	pos := uint64(superblockOffset + superblockSize)
	for _, in := range w.inodes {
		if in.n.fileType() == ModeDir {
			in.layout = LayoutFlatInline
			if len(in.inline) == 0 {
				in.layout = LayoutFlatPlain
			}
		}
		if in.filter != 0 {
			in.xattrSize = xattrIbodyHeaderSize + 4*uint64(len(in.shared))
			for _, x := range in.local {
				in.xattrSize += xattrEntrySize(x.suffix, len(x.value))
			}
			if xattrIcount(in.xattrSize) > 0xFFFF {
				return fmt.Errorf("%s: too many xattrs: %w", in.n.path, ErrInvalidTree)
			}
		}
		pos = roundUp(pos, InodeSlotSize)
		head := inodeExtendedSize + in.xattrSize
		if in.layout == LayoutFlatInline {
			// Start the inode in a new block when its inline part would
			// end in another block than the one its metadata ends in.
			lastMeta := pos + head - 1
			inlineEnd := pos + head + in.size%BlockSize
			if lastMeta/BlockSize != inlineEnd/BlockSize {
				pos = roundUp(pos+BlockSize-lastMeta%BlockSize, InodeSlotSize)
			}
		}
		in.pos = pos
		if tail := in.inlineSize(); tail > 0 && (pos+head)%BlockSize+tail > BlockSize {
			return fmt.Errorf("%s: %d bytes of inline data do not fit in a block: %w", in.n.path, tail, ErrInvalidTree)
		}
		pos = roundUp(pos+head+in.inlineSize(), InodeSlotSize)
	}
	if w.inodes[0].pos/InodeSlotSize > 0xFFFF {
		return fmt.Errorf("root inode beyond nid 65535: %w", ErrInvalidTree)
	}
	w.inodesEnd = pos
	for _, x := range w.shared {
		w.sharedPos = append(w.sharedPos, pos)
		pos += xattrEntrySize(x.suffix, len(x.value))
	}
	if pos/4 > 0xFFFFFFFF {
		return fmt.Errorf("shared xattrs beyond 16 GiB: %w", ErrInvalidTree)
	}
	pos = roundUp(pos, BlockSize)
	for _, in := range w.inodes {
		in.blockStart = pos
		pos += uint64(len(in.blocks)) * BlockSize
		if in.n.fileType() == ModeDir && len(in.blocks) > 0 {
			in.iu = uint32(in.blockStart / BlockSize)
		}
	}
	w.end = pos
	if w.end/BlockSize > 0xFFFFFFFF {
		return fmt.Errorf("image of %d blocks is too large: %w", w.end/BlockSize, ErrInvalidTree)
	}
	return nil
}

func (w *v2Writer) nid(i int) uint64 { return w.inodes[i].pos / InodeSlotSize }

func (w *v2Writer) emit(out *emitter) error {
	var hdr [superblockOffset]byte
	Header{Magic: composefsMagic, Version: composefsHeaderVersion, ComposefsVersion: ComposefsVersion2}.Put(hdr[:])
	out.write(hdr[:])
	var sb [superblockSize]byte
	Superblock{
		Magic:         erofsMagic,
		FeatureCompat: featureCompatMtime | featureCompatXattrFilter,
		BlkSzBits:     BlockBits,
		RootNid:       uint16(w.nid(0)),
		Inos:          uint64(len(w.inodes)),
		Blocks:        uint32(w.end / BlockSize),
	}.Put(sb[:])
	out.write(sb[:])

	buf := make([]byte, 0, 2*BlockSize)
	for _, in := range w.inodes {
		if in.pos < out.pos {
			return fmt.Errorf("internal error: inode of %s at %d, written up to %d", in.n.path, in.pos, out.pos)
		}
		out.zeros(in.pos - out.pos)
		out.write(w.appendInode(buf[:0], in))
		out.align(InodeSlotSize)
	}
	if out.pos != w.inodesEnd {
		return fmt.Errorf("internal error: inodes end at %d, planned %d", out.pos, w.inodesEnd)
	}
	for _, x := range w.shared {
		out.write(putXattrEntry(buf[:0], x.index, x.suffix, x.value))
	}
	out.align(BlockSize)
	for _, in := range w.inodes {
		for _, blk := range in.blocks {
			out.write(w.appendDirents(buf[:0], blk))
			out.align(BlockSize)
		}
	}
	if out.pos != w.end {
		return fmt.Errorf("internal error: image is %d bytes, planned %d", out.pos, w.end)
	}
	return nil
}

func (w *v2Writer) appendInode(b []byte, in *v2Inode) []byte {
	n := in.n
	var h [inodeExtendedSize]byte
	littleEndian.PutUint16(h[inodeOffFormat:], in.layout<<inodeDatalayoutBit|inodeLayoutExtended)
	littleEndian.PutUint16(h[inodeOffXattrCount:], uint16(xattrIcount(in.xattrSize)))
	littleEndian.PutUint16(h[inodeOffMode:], in.mode)
	littleEndian.PutUint64(h[extendedOffSize:], in.size)
	littleEndian.PutUint32(h[extendedOffU:], in.iu)
	littleEndian.PutUint32(h[extendedOffIno:], uint32(in.pos/InodeSlotSize))
	littleEndian.PutUint32(h[extendedOffUID:], n.uid)
	littleEndian.PutUint32(h[extendedOffGID:], n.gid)
	littleEndian.PutUint64(h[extendedOffMtime:], uint64(n.mtime.Sec))
	littleEndian.PutUint32(h[extendedOffNlink:], in.nlink)
	b = append(b, h[:]...)
	if in.filter != 0 {
		var xh [xattrIbodyHeaderSize]byte
		littleEndian.PutUint32(xh[0:], ^in.filter)
		xh[4] = uint8(len(in.shared))
		b = append(b, xh[:]...)
		for _, id := range in.shared {
			b = littleEndian.AppendUint32(b, uint32(w.sharedPos[id]/4))
		}
		for _, x := range in.local {
			b = putXattrEntry(b, x.index, x.suffix, x.value)
		}
	}
	switch {
	case n.fileType() == ModeDir:
		b = w.appendDirents(b, in.inline)
	case in.holes > 0:
		b = appendHoles(b, uint64(in.holes))
	default:
		b = append(b, in.data...)
	}
	return b
}

func (w *v2Writer) appendDirents(b []byte, entries []v2Dirent) []byte {
	nameoff := len(entries) * direntSize
	for _, e := range entries {
		var d [direntSize]byte
		littleEndian.PutUint64(d[0:], w.nid(e.inode))
		littleEndian.PutUint16(d[8:], uint16(nameoff))
		d[10] = e.ftype
		b = append(b, d[:]...)
		nameoff += len(e.name)
	}
	for _, e := range entries {
		b = append(b, e.name...)
	}
	return b
}
