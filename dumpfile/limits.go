package dumpfile

// Limits C libcomposefs enforces on a tree, with C's names in the comments.
const (
	// InlineContentMax is the most content a file may carry inline in an
	// image (LCFS_INLINE_CONTENT_MAX).
	InlineContentMax = 5000
	// RecommendedInlineContentMax is the size up to which mkcomposefs
	// inlines a file it reads from a directory
	// (LCFS_RECOMMENDED_INLINE_CONTENT_MAX): the size of the sha256 digest
	// a redirect would otherwise cost.
	RecommendedInlineContentMax = 64
	// NameMax is the longest file name (LCFS_MAX_NAME_LENGTH).
	NameMax = 255
	// PayloadMax bounds a payload (symlink target or object path): C
	// refuses a length of PATH_MAX or more.
	PayloadMax = 4096 - 1
	// XattrNameMax is the longest xattr name (XATTR_NAME_MAX).
	XattrNameMax = 255
	// XattrValueMax is the longest xattr value.
	XattrValueMax = 65535
	// XattrSpaceMax bounds the xattr space one entry from outside input may
	// use, counted as C counts it (LCFS_INODE_EXTERNAL_XATTR_MAX: half of
	// what EROFS allows, the rest is kept for composefs' own xattrs).
	XattrSpaceMax = 65535 / 2
	// xattrTextMax bounds the escaped xattr part of a dumpfile line: C
	// refuses longer ones ("Too many xattrs") to keep its quadratic
	// duplicate check cheap.
	xattrTextMax = 65535
	// xattrHeaderSize and xattrEntryOverhead are the sizes C charges per
	// inode and per xattr (the EROFS ibody header, and twice the entry
	// header less one, to allow for worst-case alignment).
	xattrHeaderSize    = 12
	xattrEntryOverhead = 2*4 - 1
	// ExternalSizeMax is the largest external (not inline) regular file a
	// composefs image can describe: C's chunk-based stub holds at most 1024
	// chunks of at most 2^43 bytes (LCFS_MAX_NONINLINE_CHUNKS, the EROFS
	// chunk format's 5-bit block shift).
	ExternalSizeMax = 1024 << 43
	// lineMax bounds one dumpfile line so hostile input cannot make the
	// parser buffer without end. C has no bound; nothing C writes comes
	// near it (a name is ≤255 bytes, content ≤5000, xattrs ≤64 KiB,
	// each escaped at most 4×).
	lineMax = 16 << 20
)

// xattrSpace is what C charges an entry for its xattrs, in the order they
// are set (lcfs_node_set_xattr_internal); it must stay ≤ XattrSpaceMax.
func xattrSpace(xattrs []Xattr) int {
	if len(xattrs) == 0 {
		return 0
	}
	n := xattrHeaderSize
	for _, x := range xattrs {
		n += xattrEntryOverhead + len(x.Name) + len(x.Value)
	}
	return n
}
