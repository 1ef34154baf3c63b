// Package splitstream reads and writes composefs-rs' split stream format:
// a file (usually a tar layer) kept as a sequence of inline bytes and
// references to objects of a content-addressed store, so that the file
// can be put back together bit for bit while its large members are stored
// once, by fs-verity digest, and shared.
//
// The layout, all integers little-endian (composefs-rs'
// splitstream_format.rs describes the same):
//
//	header   (32 bytes at offset 0)  "SplitStream", version 0, flags (u16),
//	                                 algorithm (1 sha256, 2 sha512),
//	                                 log2 block size (12), info range
//	info     (80 bytes)              ranges of the stream refs, object refs,
//	                                 stream and named refs sections, the
//	                                 content type (u64), the stream size
//	stream refs                      digests, flat, not compressed
//	object refs                      digests, flat, in first-use order
//	named refs                       zstd: "index:name\0" records
//	stream                           zstd: chunks, each an i64 n: n < 0 is
//	                                 -n inline bytes following it, n >= 0
//	                                 the object refs entry n
//
// A range is [start, end) in bytes of the whole file. Files written by
// bootc 1.15 and earlier have the header's fields in another order (the
// info range first, the magic at byte 18); Reader accepts both, Writer
// writes the current one.
//
// The zstd bytes Writer produces are not those of composefs-rs' Rust
// encoder: a split stream's own digest (its object id, which other
// streams name) differs, while what it holds, and every object it names,
// is the same.
package splitstream

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/composefs/composefs-go/verity"
)

// Magic opens every split stream.
const Magic = "SplitStream"

// lgBlockSize is the only fs-verity block size composefs-rs writes (4096).
const lgBlockSize = 12

const (
	headerSize = 32
	infoSize   = 80
)

// ErrFormat is wrapped by every error about a malformed split stream.
var ErrFormat = errors.New("invalid split stream")

// Content types composefs-rs gives its streams: eight ASCII bytes read as a
// little-endian u64.
var (
	ContentTypeLayer    = ContentType("ocilayer")
	ContentTypeConfig   = ContentType("ociconfg")
	ContentTypeManifest = ContentType("ocimanif")
	ContentTypeBlob     = ContentType("oci_blob")
)

// ContentType reads eight bytes of s (zero-padded when shorter) as a
// little-endian u64, the form composefs-rs gives content types.
func ContentType(s string) uint64 {
	var b [8]byte
	copy(b[:], s)
	return binary.LittleEndian.Uint64(b[:])
}

// fileRange is a [start, end) byte range of the file.
type fileRange struct{ start, end uint64 }

func getRange(b []byte) fileRange {
	return fileRange{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

func putRange(b []byte, r fileRange) {
	binary.LittleEndian.PutUint64(b, r.start)
	binary.LittleEndian.PutUint64(b[8:], r.end)
}

// check tells whether r lies within a file of size bytes.
func (r fileRange) check(what string, size int64) error {
	if r.start > r.end {
		return fmt.Errorf("%w: %s section [%d, %d) ends before it starts", ErrFormat, what, r.start, r.end)
	}
	if r.end > uint64(size) {
		return fmt.Errorf("%w: %s section [%d, %d) beyond the end of the file (%d bytes)", ErrFormat, what, r.start, r.end, size)
	}
	return nil
}

func (r fileRange) len() int64 { return int64(r.end - r.start) }

// header is the fixed part at offset 0.
type header struct {
	version     uint8
	flags       uint16
	algorithm   uint8
	lgBlockSize uint8
	info        fileRange
}

// parseHeader reads the current layout, else the old one (magic at 18).
func parseHeader(b []byte) (header, error) {
	var h header
	switch {
	case string(b[:11]) == Magic:
		h = header{version: b[11], flags: binary.LittleEndian.Uint16(b[12:]), algorithm: b[14], lgBlockSize: b[15], info: getRange(b[16:])}
	case string(b[18:29]) == Magic:
		h = header{info: getRange(b[0:]), flags: binary.LittleEndian.Uint16(b[16:]), version: b[29], algorithm: b[30], lgBlockSize: b[31]}
	default:
		return h, fmt.Errorf("%w: no %q magic", ErrFormat, Magic)
	}
	return h, nil
}

func (h header) put(b []byte) {
	copy(b, Magic)
	b[11] = h.version
	binary.LittleEndian.PutUint16(b[12:], h.flags)
	b[14] = h.algorithm
	b[15] = h.lgBlockSize
	putRange(b[16:], h.info)
}

// info is the section the header points to.
type info struct {
	streamRefs, objectRefs, stream, namedRefs fileRange
	contentType, streamSize                   uint64
}

func parseInfo(b []byte) info {
	return info{
		streamRefs:  getRange(b[0:]),
		objectRefs:  getRange(b[16:]),
		stream:      getRange(b[32:]),
		namedRefs:   getRange(b[48:]),
		contentType: binary.LittleEndian.Uint64(b[64:]),
		streamSize:  binary.LittleEndian.Uint64(b[72:]),
	}
}

func (in info) put(b []byte) {
	putRange(b[0:], in.streamRefs)
	putRange(b[16:], in.objectRefs)
	putRange(b[32:], in.stream)
	putRange(b[48:], in.namedRefs)
	binary.LittleEndian.PutUint64(b[64:], in.contentType)
	binary.LittleEndian.PutUint64(b[72:], in.streamSize)
}

// checkAlgorithm refuses an algorithm the package cannot use.
func checkAlgorithm(alg verity.Algorithm) error {
	if !alg.Valid() {
		return fmt.Errorf("split stream: unsupported fs-verity algorithm %d", alg)
	}
	return nil
}
