package erofs

import "strings"

// cXattrPrefixes is C mkcomposefs' prefix table, in the order it tries
// them: it has no "lustre." (such names are stored whole, index 0).
var cXattrPrefixes = [...]uint8{
	xattrIndexUser,
	xattrIndexPosixACLAccess,
	xattrIndexPosixACLDefault,
	xattrIndexTrusted,
	xattrIndexSecurity,
}

// splitXattrNameC returns the short prefix index and the stored suffix of
// an xattr name, as C mkcomposefs chooses them.
func splitXattrNameC(name string) (uint8, string) {
	for _, idx := range cXattrPrefixes {
		if p := XattrPrefixes[idx]; strings.HasPrefix(name, p) {
			return idx, name[len(p):]
		}
	}
	return xattrIndexNone, name
}

// splitXattrNameV2 is composefs-rs' choice: the highest index whose prefix
// matches, "lustre." included.
func splitXattrNameV2(name string) (uint8, string) {
	for idx := len(XattrPrefixes) - 1; idx > 0; idx-- {
		if p := XattrPrefixes[idx]; strings.HasPrefix(name, p) {
			return uint8(idx), name[len(p):]
		}
	}
	return xattrIndexNone, name
}

// xattrEntrySize is the on-disk size of an entry with this suffix and value.
func xattrEntrySize(suffix string, valueLen int) uint64 {
	return uint64(XattrEntryAlign(xattrEntryHeaderSize + len(suffix) + valueLen))
}

// xattrFilterBit is the bloom filter bit of one xattr name.
func xattrFilterBit(index uint8, suffix string) uint32 {
	return 1 << (xxh32([]byte(suffix), xattrFilterSeed+uint32(index)) % xattrFilterBits)
}

// putXattrEntry encodes one xattr entry (header, suffix, value, padding).
func putXattrEntry(b []byte, index uint8, suffix string, value []byte) []byte {
	var h [xattrEntryHeaderSize]byte
	h[0] = uint8(len(suffix))
	h[1] = index
	littleEndian.PutUint16(h[2:], uint16(len(value)))
	b = append(b, h[:]...)
	b = append(b, suffix...)
	b = append(b, value...)
	for len(b)%xattrAlign != 0 {
		b = append(b, 0)
	}
	return b
}

// xattrIcount is i_xattr_icount for an xattr body of size bytes.
func xattrIcount(size uint64) uint64 {
	if size == 0 {
		return 0
	}
	return (size-xattrIbodyHeaderSize)/4 + 1
}
