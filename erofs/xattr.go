package erofs

import (
	"fmt"
)

// An inode's xattr body follows the inode: a 12-byte header {name_filter
// u32, shared_count u8, 7 reserved}, shared_count u32 ids into the shared
// xattr area, then inline entries. An entry is {name_len u8, name_index u8,
// value_size u16}, the name suffix, the value, padded to 4 bytes.

// Xattr is one extended attribute as stored.
type Xattr struct {
	// Name is the full name, its prefix expanded.
	Name string
	// Value may alias the image mapping: callers must not modify it.
	Value       []byte
	Shared      bool
	SharedIndex uint32 // the id in the shared area, when Shared
	NameIndex   uint8  // stored e_name_index (bit 0x80: long prefix table)
	StoredName  string // the suffix as stored, without the prefix
}

// xattrRef is an entry found in the image, before its name is built.
type xattrRef struct {
	index  uint8
	suffix []byte
	value  []byte
	shared bool
	id     uint32
}

// xattrEntryAt decodes the entry at byte offset off, at most limit bytes
// long (the end of the inline body, or the image end for shared ones).
func (im *Image) xattrEntryAt(off, limit uint64) (xattrRef, uint64, bool) {
	h, ok := im.span(off, xattrEntryHeaderSize)
	if !ok || off+xattrEntryHeaderSize > limit {
		return xattrRef{}, 0, false
	}
	nameLen := uint64(h[0])
	valueLen := uint64(littleEndian.Uint16(h[2:]))
	body, ok := im.span(off+xattrEntryHeaderSize, nameLen+valueLen)
	if !ok || off+xattrEntryHeaderSize+nameLen+valueLen > limit {
		return xattrRef{}, 0, false
	}
	r := xattrRef{index: h[1], suffix: body[:nameLen:nameLen], value: body[nameLen:]}
	return r, uint64(XattrEntryAlign(int(xattrEntryHeaderSize + nameLen + valueLen))), true
}

// xattrShared reads the shared xattr id.
func (im *Image) xattrShared(in *Inode, id uint32) (xattrRef, error) {
	off := im.xattrBase + uint64(id)*4
	r, _, ok := im.xattrEntryAt(off, uint64(len(im.data)))
	if !ok {
		return xattrRef{}, fmt.Errorf("inode %d: shared xattr %d at %d runs past the image end: %w", in.Nid, id, off, ErrCorrupt)
	}
	r.shared, r.id = true, id
	return r, nil
}

// eachXattr visits the inode's xattrs; inline ones first when inlineFirst
// (the kernel's lookup order), shared ones first otherwise (on-disk order).
// fn returns true to stop.
func (im *Image) eachXattr(in *Inode, inlineFirst bool, fn func(r *xattrRef) (bool, error)) error {
	if in.XattrCount == 0 {
		return nil
	}
	if im.data == nil {
		return errClosed
	}
	body, ok := im.span(in.xattrOff, uint64(in.xattrSize))
	if !ok {
		return fmt.Errorf("inode %d: xattr body: %w", in.Nid, ErrCorrupt)
	}
	shared := int(body[4])
	inlineStart := xattrIbodyHeaderSize + 4*shared
	if inlineStart > len(body) {
		return fmt.Errorf("inode %d: %d shared xattr ids overflow the %d-byte xattr body: %w", in.Nid, shared, len(body), ErrCorrupt)
	}
	visitShared := func() (bool, error) {
		for i := 0; i < shared; i++ {
			id := littleEndian.Uint32(body[xattrIbodyHeaderSize+4*i:])
			r, err := im.xattrShared(in, id)
			if err != nil {
				return true, err
			}
			if stop, err := fn(&r); stop || err != nil {
				return true, err
			}
		}
		return false, nil
	}
	visitInline := func() (bool, error) {
		end := in.xattrOff + uint64(len(body))
		for off := in.xattrOff + uint64(inlineStart); off < end; {
			r, n, ok := im.xattrEntryAt(off, end)
			if !ok {
				return true, fmt.Errorf("inode %d: inline xattr at %d overflows the xattr body: %w", in.Nid, off, ErrCorrupt)
			}
			if stop, err := fn(&r); stop || err != nil {
				return true, err
			}
			off += n
		}
		return false, nil
	}
	first, second := visitShared, visitInline
	if inlineFirst {
		first, second = visitInline, visitShared
	}
	if stop, err := first(); stop || err != nil {
		return err
	}
	_, err := second()
	return err
}

// xattrPrefix returns the prefix a name index stands for.
func (im *Image) xattrPrefix(in *Inode, index uint8) (string, error) {
	if index&xattrLongPrefix != 0 {
		p, err := im.longPrefixes()
		if err != nil {
			return "", err
		}
		i := int(index & xattrLongPrefixMask)
		if i >= len(p) {
			return "", fmt.Errorf("inode %d: xattr long prefix %d of %d: %w", in.Nid, i, len(p), ErrCorrupt)
		}
		return p[i], nil
	}
	if int(index) >= len(XattrPrefixes) {
		return "", fmt.Errorf("inode %d: xattr name index %d: %w", in.Nid, index, ErrCorrupt)
	}
	return XattrPrefixes[index], nil
}

// longPrefixes decodes the long xattr name prefix table once: at byte
// xattr_prefix_start × 4, each item a u16 length then {base_index u8,
// infix}, items aligned to 4 bytes.
func (im *Image) longPrefixes() ([]string, error) {
	im.prefixOnce.Do(func() {
		n := int(im.sb.XattrPrefixCount)
		if n == 0 {
			return
		}
		if im.packedNid != 0 {
			im.prefixErr = fmt.Errorf("superblock: long xattr prefixes in a packed inode: %w", ErrUnsupported)
			return
		}
		pos := uint64(im.sb.XattrPrefixStart) * 4
		for i := 0; i < n; i++ {
			pos = (pos + 3) &^ 3
			h, ok := im.span(pos, 2)
			if !ok {
				im.prefixErr = fmt.Errorf("xattr long prefix %d at %d: beyond the image end: %w", i, pos, ErrCorrupt)
				return
			}
			l := uint64(littleEndian.Uint16(h))
			item, ok := im.span(pos+2, l)
			if !ok || l < 1 {
				im.prefixErr = fmt.Errorf("xattr long prefix %d at %d: %d bytes: %w", i, pos, l, ErrCorrupt)
				return
			}
			base := item[0]
			if base == 0 || int(base) >= len(XattrPrefixes) {
				im.prefixErr = fmt.Errorf("xattr long prefix %d: base index %d: %w", i, base, ErrCorrupt)
				return
			}
			im.prefixes = append(im.prefixes, XattrPrefixes[base]+string(item[1:]))
			pos += 2 + l
		}
	})
	return im.prefixes, im.prefixErr
}

// Xattrs returns the inode's xattrs in on-disk order: shared ones first
// (in the order of their ids in the inode), then inline ones.
func (im *Image) Xattrs(in *Inode) ([]Xattr, error) {
	var out []Xattr
	err := im.eachXattr(in, false, func(r *xattrRef) (bool, error) {
		x, err := im.xattrFromRef(in, r)
		if err != nil {
			return true, err
		}
		out = append(out, x)
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func (im *Image) xattrFromRef(in *Inode, r *xattrRef) (Xattr, error) {
	prefix, err := im.xattrPrefix(in, r.index)
	if err != nil {
		return Xattr{}, err
	}
	name := prefix + string(r.suffix)
	if name == "" {
		return Xattr{}, fmt.Errorf("inode %d: xattr with an empty name: %w", in.Nid, ErrCorrupt)
	}
	return Xattr{
		Name:        name,
		Value:       r.value,
		Shared:      r.shared,
		SharedIndex: r.id,
		NameIndex:   r.index,
		StoredName:  string(r.suffix),
	}, nil
}

// GetXattr returns the value of the named xattr; found is false when the
// inode has none of that name. Like the kernel, inline entries are searched
// before shared ones. It is written as plain loops, without allocating: it
// sits on the FUSE getxattr path.
func (im *Image) GetXattr(in *Inode, name string) (value []byte, found bool, err error) {
	if in.XattrCount == 0 {
		return nil, false, nil
	}
	if im.data == nil {
		return nil, false, errClosed
	}
	body, ok := im.span(in.xattrOff, uint64(in.xattrSize))
	if !ok {
		return nil, false, fmt.Errorf("inode %d: xattr body: %w", in.Nid, ErrCorrupt)
	}
	shared := int(body[4])
	inlineStart := xattrIbodyHeaderSize + 4*shared
	if inlineStart > len(body) {
		return nil, false, fmt.Errorf("inode %d: %d shared xattr ids overflow the %d-byte xattr body: %w", in.Nid, shared, len(body), ErrCorrupt)
	}
	end := in.xattrOff + uint64(len(body))
	for off := in.xattrOff + uint64(inlineStart); off < end; {
		r, n, ok := im.xattrEntryAt(off, end)
		if !ok {
			return nil, false, fmt.Errorf("inode %d: inline xattr at %d overflows the xattr body: %w", in.Nid, off, ErrCorrupt)
		}
		if match, err := im.xattrNameIs(in, &r, name); err != nil || match {
			return r.value, match, err
		}
		off += n
	}
	for i := 0; i < shared; i++ {
		r, err := im.xattrShared(in, littleEndian.Uint32(body[xattrIbodyHeaderSize+4*i:]))
		if err != nil {
			return nil, false, err
		}
		if match, err := im.xattrNameIs(in, &r, name); err != nil || match {
			return r.value, match, err
		}
	}
	return nil, false, nil
}

// xattrNameIs tells whether entry r has the full name name.
func (im *Image) xattrNameIs(in *Inode, r *xattrRef, name string) (bool, error) {
	prefix, err := im.xattrPrefix(in, r.index)
	if err != nil {
		return false, err
	}
	return len(prefix)+len(r.suffix) == len(name) && name[:len(prefix)] == prefix &&
		name[len(prefix):] == string(r.suffix), nil
}
