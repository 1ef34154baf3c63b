// Package erofs reads and writes composefs images: an EROFS filesystem
// behind a 32-byte composefs header, whose regular files point at content
// objects through overlayfs xattrs.
//
// This file is the on-disk format as the kernel's erofs_fs.h and the
// composefs header define it: constants with the spec's names, and the
// header and superblock with their little-endian encodings. The reader and
// the writer both build on it.
package erofs

import "encoding/binary"

// The composefs header at byte 0.
const (
	ComposefsMagic         = 0xd078629a
	ComposefsHeaderVersion = 1 // the header's own version field
	ComposefsHeaderSize    = 32
	// ComposefsFlagHasACL: some inode carries a POSIX ACL xattr.
	ComposefsFlagHasACL = 1 << 0

	// Image format generations (the header's composefs_version).
	ComposefsVersion0 = 0
	ComposefsVersion1 = 1
	ComposefsVersion2 = 2
)

// The EROFS superblock and blocks.
const (
	SuperblockOffset = 1024
	SuperblockSize   = 128
	ErofsMagic       = 0xE0F5E1E2
	BlockBits        = 12
	BlockSize        = 1 << BlockBits
	// SbExtSlotSize: the superblock grows by sb_extslots × 16 bytes.
	SbExtSlotSize = 16
)

// feature_compat bits.
const (
	FeatureCompatSbChksum    = 0x00000001
	FeatureCompatMtime       = 0x00000002
	FeatureCompatXattrFilter = 0x00000004
)

// feature_incompat bits.
const (
	FeatureIncompatZeroPadding    = 0x00000001
	FeatureIncompatComprCfgs      = 0x00000002
	FeatureIncompatBigPcluster    = 0x00000002
	FeatureIncompatChunkedFile    = 0x00000004
	FeatureIncompatDeviceTable    = 0x00000008
	FeatureIncompatComprHead2     = 0x00000008
	FeatureIncompatZtailpacking   = 0x00000010
	FeatureIncompatFragments      = 0x00000020
	FeatureIncompatDedupe         = 0x00000020
	FeatureIncompatXattrPrefixes  = 0x00000040
	FeatureIncompat48Bit          = 0x00000080
	FeatureIncompatMetabox        = 0x00000100
	featureIncompatReaderSupports = FeatureIncompatChunkedFile | FeatureIncompatXattrPrefixes
)

// Inodes: addressed by nid, a 32-byte slot number from meta_blkaddr.
const (
	InodeSlotBits     = 5
	InodeSlotSize     = 1 << InodeSlotBits
	InodeCompactSize  = 32
	InodeExtendedSize = 64

	// i_format: bit 0 the inode version, bits 1..3 the data layout.
	InodeVersionMask    = 0x01
	InodeLayoutCompact  = 0
	InodeLayoutExtended = 1
	InodeDatalayoutBit  = 1
	InodeDatalayoutMask = 0x07
	// InodeFormatAll: every i_format bit that has a meaning.
	InodeFormatAll = 0x0f
)

// Data layouts (i_format bits 1..3).
const (
	LayoutFlatPlain         = 0
	LayoutCompressedFull    = 1
	LayoutFlatInline        = 2
	LayoutCompressedCompact = 3
	LayoutChunkBased        = 4
)

// Chunk-based files: i_u holds the chunk format.
const (
	ChunkFormatBlkbitsMask = 0x001F
	ChunkFormatIndexes     = 0x0020
	ChunkFormatAll         = ChunkFormatBlkbitsMask | ChunkFormatIndexes
	// BlockMapEntrySize: one 4-byte block address per chunk.
	BlockMapEntrySize = 4
	// ChunkIndexSize: struct erofs_inode_chunk_index {advise, device_id, blkaddr}.
	ChunkIndexSize = 8
	// NullAddr marks a hole (EROFS_NULL_ADDR), in block maps and as a
	// flat-plain start block.
	NullAddr = 0xFFFFFFFF
)

// Directories: each block starts with 12-byte dirents, names follow.
const (
	DirentSize = 12
	NameLen    = 255 // EROFS_NAME_LEN
)

// Dirent file types.
const (
	FTUnknown = 0
	FTReg     = 1
	FTDir     = 2
	FTChr     = 3
	FTBlk     = 4
	FTFifo    = 5
	FTSock    = 6
	FTSymlink = 7
)

// Xattrs.
const (
	// XattrIbodyHeaderSize: h_name_filter u32, h_shared_count u8, 7 reserved.
	XattrIbodyHeaderSize = 12
	// XattrEntrySize: e_name_len u8, e_name_index u8, e_value_size u16.
	XattrEntrySize = 4
	// XattrAlign: entries (and the long-prefix table's items) are padded to 4.
	XattrAlign          = 4
	XattrFilterBits     = 32
	XattrFilterSeed     = 0x25BBE08F
	XattrFilterDefault  = 0xFFFFFFFF
	XattrLongPrefix     = 0x80
	XattrLongPrefixMask = 0x7f
)

// Xattr name indexes (e_name_index) and their prefixes.
const (
	XattrIndexNone            = 0
	XattrIndexUser            = 1
	XattrIndexPosixACLAccess  = 2
	XattrIndexPosixACLDefault = 3
	XattrIndexTrusted         = 4
	XattrIndexLustre          = 5
	XattrIndexSecurity        = 6

	XattrPrefixUser            = "user."
	XattrPrefixPosixACLAccess  = "system.posix_acl_access"
	XattrPrefixPosixACLDefault = "system.posix_acl_default"
	XattrPrefixTrusted         = "trusted."
	XattrPrefixLustre          = "lustre."
	XattrPrefixSecurity        = "security."
)

// XattrPrefixes maps a short name index to its prefix; index 0 has none.
var XattrPrefixes = [...]string{
	XattrIndexNone:            "",
	XattrIndexUser:            XattrPrefixUser,
	XattrIndexPosixACLAccess:  XattrPrefixPosixACLAccess,
	XattrIndexPosixACLDefault: XattrPrefixPosixACLDefault,
	XattrIndexTrusted:         XattrPrefixTrusted,
	XattrIndexLustre:          XattrPrefixLustre,
	XattrIndexSecurity:        XattrPrefixSecurity,
}

// composefs' use of overlayfs xattrs.
const (
	OverlayXattrPrefix    = "trusted.overlay."
	OverlayEscapedPrefix  = "trusted.overlay.overlay."
	OverlayRedirect       = "trusted.overlay.redirect"
	OverlayMetacopy       = "trusted.overlay.metacopy"
	OverlayOpaque         = "trusted.overlay.opaque"
	OverlayEscWhiteout    = "trusted.overlay.overlay.whiteout"
	OverlayEscWhiteouts   = "trusted.overlay.overlay.whiteouts"
	OverlayEscOpaque      = "trusted.overlay.overlay.opaque"
	UserOverlayWhiteout   = "user.overlay.whiteout"
	UserOverlayWhiteouts  = "user.overlay.whiteouts"
	UserOverlayOpaque     = "user.overlay.opaque"
	ComposefsWhiteoutStub = 256 // V0/V1 roots hold stubs "00".."ff"
)

// Mode bits (st_mode file types).
const (
	ModeFmt  = 0o170000
	ModeSock = 0o140000
	ModeLnk  = 0o120000
	ModeReg  = 0o100000
	ModeBlk  = 0o060000
	ModeDir  = 0o040000
	ModeChr  = 0o020000
	ModeFifo = 0o010000
)

// fileTypeModes pairs each dirent file type with its mode's type bits.
var fileTypeModes = [...]uint32{
	FTReg: ModeReg, FTDir: ModeDir, FTChr: ModeChr, FTBlk: ModeBlk,
	FTFifo: ModeFifo, FTSock: ModeSock, FTSymlink: ModeLnk,
}

// FileTypeMode is the file type bits of a mode for dirent file type ft; 0
// for a type EROFS does not define (the kernel shows it as DT_UNKNOWN).
func FileTypeMode(ft uint8) uint32 {
	if int(ft) < len(fileTypeModes) {
		return fileTypeModes[ft]
	}
	return 0
}

// Header is the composefs header at byte 0.
type Header struct {
	Magic, Version, Flags, ComposefsVersion uint32
}

// Superblock is the EROFS superblock at byte 1024, the fields composefs
// images use.
type Superblock struct {
	Magic, Checksum, FeatureCompat uint32
	BlkSzBits                      uint8
	SbExtSlots                     uint8
	RootNid                        uint16
	Inos                           uint64
	BuildTime                      uint64
	BuildTimeNsec                  uint32
	Blocks, MetaBlkAddr            uint32
	XattrBlkAddr                   uint32
	UUID                           [16]byte
	VolumeName                     [16]byte
	FeatureIncompat                uint32
	ExtraDevices                   uint16
	XattrPrefixCount               uint8
	XattrPrefixStart               uint32
}

// Superblock field offsets within its 128 bytes.
const (
	sbOffMagic            = 0
	sbOffChecksum         = 4
	sbOffFeatureCompat    = 8
	sbOffBlkSzBits        = 12
	sbOffSbExtSlots       = 13
	sbOffRootNid          = 14
	sbOffInos             = 16
	sbOffBuildTime        = 24
	sbOffBuildTimeNsec    = 32
	sbOffBlocks           = 36
	sbOffMetaBlkAddr      = 40
	sbOffXattrBlkAddr     = 44
	sbOffUUID             = 48
	sbOffVolumeName       = 64
	sbOffFeatureIncompat  = 80
	sbOffU1               = 84
	sbOffExtraDevices     = 86
	sbOffDevtSlotOff      = 88
	sbOffDirBlkBits       = 90
	sbOffXattrPrefixCount = 91
	sbOffXattrPrefixStart = 92
)

// littleEndian: every EROFS and composefs integer is little-endian.
var littleEndian = binary.LittleEndian

// Put encodes h into b[:ComposefsHeaderSize] (unused words zero).
func (h Header) Put(b []byte) {
	_ = b[ComposefsHeaderSize-1]
	clear(b[:ComposefsHeaderSize])
	littleEndian.PutUint32(b[0:], h.Magic)
	littleEndian.PutUint32(b[4:], h.Version)
	littleEndian.PutUint32(b[8:], h.Flags)
	littleEndian.PutUint32(b[12:], h.ComposefsVersion)
}

func decodeHeader(b []byte) Header {
	return Header{
		Magic:            littleEndian.Uint32(b[0:]),
		Version:          littleEndian.Uint32(b[4:]),
		Flags:            littleEndian.Uint32(b[8:]),
		ComposefsVersion: littleEndian.Uint32(b[12:]),
	}
}

// Put encodes sb into b[:SuperblockSize]; fields composefs does not use are zero.
func (sb Superblock) Put(b []byte) {
	_ = b[SuperblockSize-1]
	clear(b[:SuperblockSize])
	littleEndian.PutUint32(b[sbOffMagic:], sb.Magic)
	littleEndian.PutUint32(b[sbOffChecksum:], sb.Checksum)
	littleEndian.PutUint32(b[sbOffFeatureCompat:], sb.FeatureCompat)
	b[sbOffBlkSzBits] = sb.BlkSzBits
	b[sbOffSbExtSlots] = sb.SbExtSlots
	littleEndian.PutUint16(b[sbOffRootNid:], sb.RootNid)
	littleEndian.PutUint64(b[sbOffInos:], sb.Inos)
	littleEndian.PutUint64(b[sbOffBuildTime:], sb.BuildTime)
	littleEndian.PutUint32(b[sbOffBuildTimeNsec:], sb.BuildTimeNsec)
	littleEndian.PutUint32(b[sbOffBlocks:], sb.Blocks)
	littleEndian.PutUint32(b[sbOffMetaBlkAddr:], sb.MetaBlkAddr)
	littleEndian.PutUint32(b[sbOffXattrBlkAddr:], sb.XattrBlkAddr)
	copy(b[sbOffUUID:sbOffUUID+16], sb.UUID[:])
	copy(b[sbOffVolumeName:sbOffVolumeName+16], sb.VolumeName[:])
	littleEndian.PutUint32(b[sbOffFeatureIncompat:], sb.FeatureIncompat)
	littleEndian.PutUint16(b[sbOffExtraDevices:], sb.ExtraDevices)
	b[sbOffXattrPrefixCount] = sb.XattrPrefixCount
	littleEndian.PutUint32(b[sbOffXattrPrefixStart:], sb.XattrPrefixStart)
}

func decodeSuperblock(b []byte) Superblock {
	sb := Superblock{
		Magic:            littleEndian.Uint32(b[sbOffMagic:]),
		Checksum:         littleEndian.Uint32(b[sbOffChecksum:]),
		FeatureCompat:    littleEndian.Uint32(b[sbOffFeatureCompat:]),
		BlkSzBits:        b[sbOffBlkSzBits],
		SbExtSlots:       b[sbOffSbExtSlots],
		RootNid:          littleEndian.Uint16(b[sbOffRootNid:]),
		Inos:             littleEndian.Uint64(b[sbOffInos:]),
		BuildTime:        littleEndian.Uint64(b[sbOffBuildTime:]),
		BuildTimeNsec:    littleEndian.Uint32(b[sbOffBuildTimeNsec:]),
		Blocks:           littleEndian.Uint32(b[sbOffBlocks:]),
		MetaBlkAddr:      littleEndian.Uint32(b[sbOffMetaBlkAddr:]),
		XattrBlkAddr:     littleEndian.Uint32(b[sbOffXattrBlkAddr:]),
		FeatureIncompat:  littleEndian.Uint32(b[sbOffFeatureIncompat:]),
		ExtraDevices:     littleEndian.Uint16(b[sbOffExtraDevices:]),
		XattrPrefixCount: b[sbOffXattrPrefixCount],
		XattrPrefixStart: littleEndian.Uint32(b[sbOffXattrPrefixStart:]),
	}
	copy(sb.UUID[:], b[sbOffUUID:])
	copy(sb.VolumeName[:], b[sbOffVolumeName:])
	return sb
}

// Compact inode (32 bytes) field offsets.
const (
	InodeOffFormat     = 0
	InodeOffXattrCount = 2
	InodeOffMode       = 4
	// compact
	CompactOffNlink = 6
	CompactOffSize  = 8
	CompactOffMtime = 12
	CompactOffU     = 16
	CompactOffIno   = 20
	CompactOffUID   = 24
	CompactOffGID   = 26
	// extended
	ExtendedOffSize      = 8
	ExtendedOffU         = 16
	ExtendedOffIno       = 20
	ExtendedOffUID       = 24
	ExtendedOffGID       = 28
	ExtendedOffMtime     = 32
	ExtendedOffMtimeNsec = 40
	ExtendedOffNlink     = 44
)

// XattrIbodySize is the size of an inode's xattr body for its i_xattr_icount.
func XattrIbodySize(icount uint16) int {
	if icount == 0 {
		return 0
	}
	return XattrIbodyHeaderSize + 4*(int(icount)-1)
}

// XattrEntryAlign rounds an xattr entry's size up to its 4-byte alignment.
func XattrEntryAlign(n int) int { return (n + XattrAlign - 1) &^ (XattrAlign - 1) }
