package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/klauspost/compress/zstd"

	"github.com/composefs/composefs-go/verity"
)

// Limits on what a Reader accepts.
const (
	// MaxRefs bounds each of the two reference arrays.
	MaxRefs = 1 << 20
	// MaxNamedRefs bounds the decompressed named references section.
	MaxNamedRefs = 16 << 20
	// maxWindow is the largest zstd window accepted, the Rust zstd
	// decoder's default limit (2^27).
	maxWindow = 1 << 27
)

// Chunk is one piece of the stream: Size inline bytes (read them from the
// Reader), or the object Object (the object refs entry Index).
type Chunk struct {
	External bool
	// Size is the number of inline bytes; 0 for an external chunk, whose
	// size only its object knows.
	Size   int64
	Index  int
	Object []byte
}

// Reader reads a split stream: its references when opened, then its chunks
// one at a time (Next), the bytes of an inline chunk through Read.
// Everything is checked before use: the magic and version, the algorithm
// and block size, each section against the file's size, the reference
// arrays against the digest size, every named reference and chunk index,
// and the inline bytes against StreamSize. Errors wrap ErrFormat.
type Reader struct {
	Algorithm verity.Algorithm
	// ContentType is the type the writer gave, e.g. ContentTypeLayer.
	ContentType uint64
	// StreamSize is the length of the whole file the stream stands for.
	StreamSize uint64
	// ObjectRefs are the objects external chunks name, in first-use order.
	ObjectRefs [][]byte
	// StreamRefs are the referenced streams; NamedRefs names some of them.
	StreamRefs [][]byte
	NamedRefs  map[string][]byte

	dec       *zstd.Decoder
	remaining int64 // inline bytes of the current chunk not yet read
	inline    uint64
	err       error
	done      bool
}

// Open reads the header, info and reference sections of the split stream
// of size bytes in src, which must be of algorithm alg.
func Open(src io.ReaderAt, size int64, alg verity.Algorithm) (*Reader, error) {
	if err := checkAlgorithm(alg); err != nil {
		return nil, err
	}
	if size < headerSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a header", ErrFormat, size)
	}
	var hb [headerSize]byte
	if err := readFull(src, hb[:], 0); err != nil {
		return nil, fmt.Errorf("split stream header: %w", err)
	}
	h, err := parseHeader(hb[:])
	if err != nil {
		return nil, err
	}
	if h.version != 0 {
		return nil, fmt.Errorf("%w: version %d", ErrFormat, h.version)
	}
	if h.algorithm != uint8(alg) {
		return nil, fmt.Errorf("%w: fs-verity algorithm %d, not %s (%d)", ErrFormat, h.algorithm, alg, uint8(alg))
	}
	if h.lgBlockSize != lgBlockSize {
		return nil, fmt.Errorf("%w: fs-verity block size 2^%d, not 2^%d", ErrFormat, h.lgBlockSize, lgBlockSize)
	}
	if err := h.info.check("info", size); err != nil {
		return nil, err
	}
	if h.info.len() < infoSize {
		return nil, fmt.Errorf("%w: info section of %d bytes, shorter than %d", ErrFormat, h.info.len(), infoSize)
	}
	var ib [infoSize]byte
	if err := readFull(src, ib[:], int64(h.info.start)); err != nil {
		return nil, fmt.Errorf("split stream info: %w", err)
	}
	in := parseInfo(ib[:])
	for _, s := range []struct {
		name string
		r    fileRange
	}{{"stream refs", in.streamRefs}, {"object refs", in.objectRefs}, {"stream", in.stream}, {"named refs", in.namedRefs}} {
		if err := s.r.check(s.name, size); err != nil {
			return nil, err
		}
	}
	r := &Reader{Algorithm: alg, ContentType: in.contentType, StreamSize: in.streamSize}
	if r.StreamRefs, err = readRefs(src, in.streamRefs, alg, "stream refs"); err != nil {
		return nil, err
	}
	if r.ObjectRefs, err = readRefs(src, in.objectRefs, alg, "object refs"); err != nil {
		return nil, err
	}
	if r.NamedRefs, err = readNamed(src, in.namedRefs, r.StreamRefs); err != nil {
		return nil, err
	}
	dec, err := zstd.NewReader(io.NewSectionReader(src, int64(in.stream.start), in.stream.len()),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("%w: stream: %w", ErrFormat, err)
	}
	r.dec = dec
	return r, nil
}

// OpenBytes is Open of a split stream held in memory.
func OpenBytes(data []byte, alg verity.Algorithm) (*Reader, error) {
	return Open(bytes.NewReader(data), int64(len(data)), alg)
}

func readRefs(src io.ReaderAt, r fileRange, alg verity.Algorithm, what string) ([][]byte, error) {
	ds := int64(alg.Size())
	n := r.len()
	if n%ds != 0 {
		return nil, fmt.Errorf("%w: %s section of %d bytes is no whole number of %d-byte digests", ErrFormat, what, n, ds)
	}
	if n/ds > MaxRefs {
		return nil, fmt.Errorf("%w: %s: %d references, more than %d", ErrFormat, what, n/ds, MaxRefs)
	}
	buf := make([]byte, n)
	if err := readFull(src, buf, int64(r.start)); err != nil {
		return nil, fmt.Errorf("split stream %s: %w", what, err)
	}
	refs := make([][]byte, 0, n/ds)
	for i := int64(0); i < n; i += ds {
		refs = append(refs, buf[i:i+ds:i+ds])
	}
	return refs, nil
}

// readFull fills p from src at off; an io.EOF with p filled is no error.
func readFull(src io.ReaderAt, p []byte, off int64) error {
	n, err := src.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func readNamed(src io.ReaderAt, r fileRange, streams [][]byte) (map[string][]byte, error) {
	named := map[string][]byte{}
	if r.len() == 0 {
		return named, nil
	}
	dec, err := zstd.NewReader(io.NewSectionReader(src, int64(r.start), r.len()),
		zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderMaxMemory(MaxNamedRefs+1), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("%w: named refs: %w", ErrFormat, err)
	}
	defer dec.Close()
	data, err := io.ReadAll(io.LimitReader(dec, MaxNamedRefs+1))
	if err != nil {
		return nil, fmt.Errorf("%w: named refs: %w", ErrFormat, err)
	}
	if len(data) > MaxNamedRefs {
		return nil, fmt.Errorf("%w: named refs: more than %d bytes", ErrFormat, MaxNamedRefs)
	}
	for len(data) > 0 {
		end := bytes.IndexByte(data, 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: named refs: %d bytes after the last record", ErrFormat, len(data))
		}
		rec := data[:end]
		data = data[end+1:]
		idxStr, name, ok := bytes.Cut(rec, []byte(":"))
		if !ok {
			return nil, fmt.Errorf("%w: named ref %q has no colon", ErrFormat, rec)
		}
		if !utf8.Valid(rec) {
			return nil, fmt.Errorf("%w: named ref %q is not UTF-8", ErrFormat, rec)
		}
		if !digitsOnly(idxStr) {
			return nil, fmt.Errorf("%w: named ref %q: index is no number", ErrFormat, rec)
		}
		idx, err := strconv.Atoi(string(idxStr))
		if err != nil || idx >= len(streams) {
			return nil, fmt.Errorf("%w: named ref %q: index beyond the %d stream refs", ErrFormat, rec, len(streams))
		}
		if _, dup := named[string(name)]; dup {
			return nil, fmt.Errorf("%w: named ref %q given twice", ErrFormat, name)
		}
		named[string(name)] = streams[idx]
	}
	return named, nil
}

func digitsOnly(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// Next moves to the next chunk, skipping what is left of an inline one;
// it returns io.EOF after the last.
func (r *Reader) Next() (Chunk, error) {
	if r.err != nil {
		return Chunk{}, r.err
	}
	if r.remaining > 0 {
		if _, err := io.CopyN(io.Discard, r, r.remaining); err != nil {
			return Chunk{}, r.fail(err)
		}
	}
	var b [8]byte
	n, err := io.ReadFull(r.dec, b[:])
	if n == 0 && err == io.EOF {
		r.done = true
		r.err = io.EOF
		return Chunk{}, io.EOF
	}
	if err != nil {
		if err == io.ErrUnexpectedEOF {
			return Chunk{}, r.fail(fmt.Errorf("%w: stream ends inside a chunk header", ErrFormat))
		}
		return Chunk{}, r.fail(fmt.Errorf("%w: stream: %w", ErrFormat, err))
	}
	v := int64(binary.LittleEndian.Uint64(b[:]))
	if v >= 0 {
		if v >= int64(len(r.ObjectRefs)) {
			return Chunk{}, r.fail(fmt.Errorf("%w: chunk names object %d of %d", ErrFormat, v, len(r.ObjectRefs)))
		}
		return Chunk{External: true, Index: int(v), Object: r.ObjectRefs[v]}, nil
	}
	if v == math.MinInt64 {
		return Chunk{}, r.fail(fmt.Errorf("%w: inline chunk of 2^63 bytes", ErrFormat))
	}
	size := -v
	if r.inline+uint64(size) > r.StreamSize {
		return Chunk{}, r.fail(fmt.Errorf("%w: inline chunks longer than the stream size %d", ErrFormat, r.StreamSize))
	}
	r.inline += uint64(size)
	r.remaining = size
	return Chunk{Size: size}, nil
}

func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// Read reads the bytes of the current inline chunk; io.EOF at its end.
func (r *Reader) Read(p []byte) (int, error) {
	if r.remaining == 0 {
		return 0, io.EOF
	}
	if r.err != nil {
		return 0, r.err
	}
	if int64(len(p)) > r.remaining {
		p = p[:r.remaining]
	}
	n, err := r.dec.Read(p)
	r.remaining -= int64(n)
	if err == io.EOF && r.remaining > 0 {
		return n, r.fail(fmt.Errorf("%w: stream ends inside an inline chunk (%d bytes missing)", ErrFormat, r.remaining))
	}
	if err != nil && err != io.EOF {
		return n, r.fail(fmt.Errorf("%w: stream: %w", ErrFormat, err))
	}
	return n, nil
}

// InlineSize is the number of inline bytes met so far.
func (r *Reader) InlineSize() uint64 { return r.inline }

// Close releases the decompressor.
func (r *Reader) Close() error {
	if r.dec != nil {
		r.dec.Close()
		r.dec = nil
	}
	if r.err == nil {
		r.err = errors.New("split stream: reader closed")
	}
	return nil
}

// Section is one chunk with its inline bytes, as ReadAll gives it.
type Section struct {
	Inline []byte
	Object []byte // nil for inline
}

// ReadAll reads the remaining chunks of r, inline bytes in memory; at most
// limit inline bytes in all.
func ReadAll(r *Reader, limit int64) ([]Section, error) {
	var out []Section
	var total int64
	for {
		c, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if c.External {
			out = append(out, Section{Object: c.Object})
			continue
		}
		if total += c.Size; total > limit {
			return out, fmt.Errorf("split stream: more than %d inline bytes", limit)
		}
		buf := make([]byte, c.Size)
		if _, err := io.ReadFull(r, buf); err != nil {
			return out, err
		}
		out = append(out, Section{Inline: buf})
	}
}
