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
	composefsMagic         = 0xd078629a
	composefsHeaderVersion = 1 // the header's own version field
	composefsHeaderSize    = 32
	// composefsFlagHasACL: some inode carries a POSIX ACL xattr.
	composefsFlagHasACL = 1 << 0

	// Image format generations (the header's composefs_version).
	composefsVersion0 = 0
	composefsVersion1 = 1
	ComposefsVersion2 = 2
)

// The EROFS superblock and blocks.
const (
	superblockOffset = 1024
	superblockSize   = 128
	erofsMagic       = 0xE0F5E1E2
	BlockBits        = 12
	BlockSize        = 1 << BlockBits
	// sbExtSlotSize: the superblock grows by sb_extslots × 16 bytes.
	sbExtSlotSize = 16
)

// feature_compat bits.
const (
	featureCompatSbChksum    = 0x00000001
	featureCompatMtime       = 0x00000002
	featureCompatXattrFilter = 0x00000004
)

// feature_incompat bits.
const (
	featureIncompatZeroPadding    = 0x00000001
	featureIncompatComprCfgs      = 0x00000002
	featureIncompatBigPcluster    = 0x00000002
	featureIncompatChunkedFile    = 0x00000004
	featureIncompatDeviceTable    = 0x00000008
	featureIncompatComprHead2     = 0x00000008
	featureIncompatZtailpacking   = 0x00000010
	featureIncompatFragments      = 0x00000020
	featureIncompatDedupe         = 0x00000020
	featureIncompatXattrPrefixes  = 0x00000040
	featureIncompat48Bit          = 0x00000080
	featureIncompatMetabox        = 0x00000100
	featureIncompatReaderSupports = featureIncompatChunkedFile | featureIncompatXattrPrefixes
)

// Inodes: addressed by nid, a 32-byte slot number from meta_blkaddr.
const (
	inodeSlotBits     = 5
	InodeSlotSize     = 1 << inodeSlotBits
	inodeCompactSize  = 32
	inodeExtendedSize = 64

	// i_format: bit 0 the inode version, bits 1..3 the data layout.
	inodeVersionMask    = 0x01
	inodeLayoutCompact  = 0
	inodeLayoutExtended = 1
	inodeDatalayoutBit  = 1
	inodeDatalayoutMask = 0x07
	// inodeFormatAll: every i_format bit that has a meaning.
	inodeFormatAll = 0x0f
)

// Data layouts (i_format bits 1..3).
const (
	LayoutFlatPlain         = 0
	layoutCompressedFull    = 1
	LayoutFlatInline        = 2
	layoutCompressedCompact = 3
	LayoutChunkBased        = 4
)

// Chunk-based files: i_u holds the chunk format.
const (
	ChunkFormatBlkbitsMask = 0x001F
	ChunkFormatIndexes     = 0x0020
	chunkFormatAll         = ChunkFormatBlkbitsMask | ChunkFormatIndexes
	// blockMapEntrySize: one 4-byte block address per chunk.
	blockMapEntrySize = 4
	// chunkIndexSize: struct erofs_inode_chunk_index {advise, device_id, blkaddr}.
	chunkIndexSize = 8
	// nullAddr marks a hole (EROFS_NULL_ADDR), in block maps and as a
	// flat-plain start block.
	nullAddr = 0xFFFFFFFF
)

// Directories: each block starts with 12-byte dirents, names follow.
const (
	direntSize = 12
	nameLen    = 255 // EROFS_NAME_LEN
)

// Dirent file types.
const (
	ftUnknown = 0
	FTReg     = 1
	FTDir     = 2
	FTChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

// Xattrs.
const (
	// xattrIbodyHeaderSize: h_name_filter u32, h_shared_count u8, 7 reserved.
	xattrIbodyHeaderSize = 12
	// xattrEntryHeaderSize: e_name_len u8, e_name_index u8, e_value_size u16.
	xattrEntryHeaderSize = 4
	// xattrAlign: entries (and the long-prefix table's items) are padded to 4.
	xattrAlign          = 4
	xattrFilterBits     = 32
	xattrFilterSeed     = 0x25BBE08F
	xattrFilterDefault  = 0xFFFFFFFF
	xattrLongPrefix     = 0x80
	xattrLongPrefixMask = 0x7f
)

// Xattr name indexes (e_name_index) and their prefixes.
const (
	xattrIndexNone            = 0
	xattrIndexUser            = 1
	xattrIndexPosixACLAccess  = 2
	xattrIndexPosixACLDefault = 3
	xattrIndexTrusted         = 4
	xattrIndexLustre          = 5
	xattrIndexSecurity        = 6

	xattrPrefixUser            = "user."
	xattrPrefixPosixACLAccess  = "system.posix_acl_access"
	xattrPrefixPosixACLDefault = "system.posix_acl_default"
	xattrPrefixTrusted         = "trusted."
	xattrPrefixLustre          = "lustre."
	xattrPrefixSecurity        = "security."
)

// XattrPrefixes maps a short name index to its prefix; index 0 has none.
var XattrPrefixes = [...]string{
	xattrIndexNone:            "",
	xattrIndexUser:            xattrPrefixUser,
	xattrIndexPosixACLAccess:  xattrPrefixPosixACLAccess,
	xattrIndexPosixACLDefault: xattrPrefixPosixACLDefault,
	xattrIndexTrusted:         xattrPrefixTrusted,
	xattrIndexLustre:          xattrPrefixLustre,
	xattrIndexSecurity:        xattrPrefixSecurity,
}

// composefs' use of overlayfs xattrs.
const (
	OverlayXattrPrefix    = "trusted.overlay."
	OverlayEscapedPrefix  = "trusted.overlay.overlay."
	OverlayRedirect       = "trusted.overlay.redirect"
	overlayMetacopy       = "trusted.overlay.metacopy"
	overlayOpaque         = "trusted.overlay.opaque"
	OverlayEscWhiteout    = "trusted.overlay.overlay.whiteout"
	overlayEscWhiteouts   = "trusted.overlay.overlay.whiteouts"
	overlayEscOpaque      = "trusted.overlay.overlay.opaque"
	userOverlayWhiteout   = "user.overlay.whiteout"
	userOverlayWhiteouts  = "user.overlay.whiteouts"
	userOverlayOpaque     = "user.overlay.opaque"
	composefsWhiteoutStub = 256 // V0/V1 roots hold stubs "00".."ff"
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
	FTReg: ModeReg, FTDir: ModeDir, FTChr: ModeChr, ftBlk: ModeBlk,
	ftFifo: ModeFifo, ftSock: ModeSock, ftSymlink: ModeLnk,
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

// Put encodes h into b[:composefsHeaderSize] (unused words zero).
func (h Header) Put(b []byte) {
	_ = b[composefsHeaderSize-1]
	clear(b[:composefsHeaderSize])
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

// Put encodes sb into b[:superblockSize]; fields composefs does not use are zero.
func (sb Superblock) Put(b []byte) {
	_ = b[superblockSize-1]
	clear(b[:superblockSize])
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
	inodeOffFormat     = 0
	inodeOffXattrCount = 2
	inodeOffMode       = 4
	// compact
	compactOffNlink = 6
	compactOffSize  = 8
	compactOffMtime = 12
	compactOffU     = 16
	compactOffIno   = 20
	compactOffUID   = 24
	compactOffGID   = 26
	// extended
	extendedOffSize      = 8
	extendedOffU         = 16
	extendedOffIno       = 20
	extendedOffUID       = 24
	extendedOffGID       = 28
	extendedOffMtime     = 32
	extendedOffMtimeNsec = 40
	extendedOffNlink     = 44
)

// XattrIbodySize is the size of an inode's xattr body for its i_xattr_icount.
func XattrIbodySize(icount uint16) int {
	if icount == 0 {
		return 0
	}
	return xattrIbodyHeaderSize + 4*(int(icount)-1)
}

// XattrEntryAlign rounds an xattr entry's size up to its 4-byte alignment.
func XattrEntryAlign(n int) int { return (n + xattrAlign - 1) &^ (xattrAlign - 1) }
