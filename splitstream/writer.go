package splitstream

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/composefs/composefs-go/verity"
)

// ObjectWriter stores content as an object and gives its fs-verity digest;
// objects.Repository.WriteObject is one.
type ObjectWriter interface {
	WriteObject(src io.Reader, size int64) (digest []byte, err error)
}

// Writer builds a split stream: inline bytes (Write), external chunks
// (WriteExternal, AddExternal) and named stream references (AddStreamRef),
// then Finish gives the file. Adjacent inline bytes become one chunk, so
// the inline bytes since the last external chunk are held in memory until
// the next one; as in composefs-rs, object references are numbered in
// order of first use, stream references likewise, and named references
// are written sorted by name.
type Writer struct {
	store       ObjectWriter
	alg         verity.Algorithm
	contentType uint64

	enc     *zstd.Encoder
	stream  bytes.Buffer
	pending []byte
	size    uint64
	err     error

	objects    [][]byte
	objectIdx  map[string]int
	streams    [][]byte
	streamIdx  map[string]int
	named      map[string]int
	finished   bool
	scratch    [8]byte
	extObjects int
}

// newEncoder is the zstd encoder used for both compressed sections: one
// frame per section, no checksum, written even when empty (as the Rust
// zstd crate does).
func newEncoder(w io.Writer) (*zstd.Encoder, error) {
	return zstd.NewWriter(w, zstd.WithEncoderCRC(false), zstd.WithZeroFrames(true),
		zstd.WithEncoderConcurrency(1), zstd.WithEncoderLevel(zstd.SpeedDefault))
}

// NewWriter starts a split stream of the given content type for a store
// of algorithm alg; store may be nil when only AddExternal is used.
func NewWriter(store ObjectWriter, alg verity.Algorithm, contentType uint64) (*Writer, error) {
	if err := checkAlgorithm(alg); err != nil {
		return nil, err
	}
	w := &Writer{store: store, alg: alg, contentType: contentType,
		objectIdx: map[string]int{}, streamIdx: map[string]int{}, named: map[string]int{}}
	enc, err := newEncoder(&w.stream)
	if err != nil {
		return nil, fmt.Errorf("split stream: %w", err)
	}
	w.enc = enc
	return w, nil
}

// Write appends inline bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if err := w.usable(); err != nil {
		return 0, err
	}
	w.pending = append(w.pending, p...)
	w.size += uint64(len(p))
	return len(p), nil
}

func (w *Writer) usable() error {
	if w.finished {
		return errors.New("split stream: writer already finished")
	}
	return w.err
}

// flush writes the pending inline bytes as one chunk.
func (w *Writer) flush() error {
	if len(w.pending) == 0 {
		return nil
	}
	binary.LittleEndian.PutUint64(w.scratch[:], uint64(-int64(len(w.pending))))
	if _, err := w.enc.Write(w.scratch[:]); err != nil {
		w.err = fmt.Errorf("split stream: %w", err)
		return w.err
	}
	if _, err := w.enc.Write(w.pending); err != nil {
		w.err = fmt.Errorf("split stream: %w", err)
		return w.err
	}
	w.pending = w.pending[:0]
	return nil
}

// WriteExternal stores size bytes of src as an object through the
// writer's store and appends a chunk naming it; it returns the digest.
func (w *Writer) WriteExternal(src io.Reader, size int64) ([]byte, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	if w.store == nil {
		return nil, errors.New("split stream: no object store to write external content to")
	}
	digest, err := w.store.WriteObject(src, size)
	if err != nil {
		return nil, err
	}
	if err := w.AddExternal(digest, size); err != nil {
		return nil, err
	}
	return digest, nil
}

// AddExternal appends a chunk naming an object already stored, of size
// bytes, by its digest.
func (w *Writer) AddExternal(digest []byte, size int64) error {
	if err := w.usable(); err != nil {
		return err
	}
	if len(digest) != w.alg.Size() {
		return fmt.Errorf("split stream: object digest of %d bytes for %s", len(digest), w.alg)
	}
	if size < 0 {
		return fmt.Errorf("split stream: negative object size %d", size)
	}
	if err := w.flush(); err != nil {
		return err
	}
	idx, ok := w.objectIdx[string(digest)]
	if !ok {
		idx = len(w.objects)
		w.objects = append(w.objects, slices.Clone(digest))
		w.objectIdx[string(digest)] = idx
	}
	binary.LittleEndian.PutUint64(w.scratch[:], uint64(idx))
	if _, err := w.enc.Write(w.scratch[:]); err != nil {
		w.err = fmt.Errorf("split stream: %w", err)
		return w.err
	}
	w.size += uint64(size)
	w.extObjects++
	return nil
}

// AddStreamRef names another stream (or any object: composefs-rs names
// images this way too) by its digest. A name given twice keeps the last
// digest. Names may not hold NUL bytes.
func (w *Writer) AddStreamRef(name string, digest []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if len(digest) != w.alg.Size() {
		return fmt.Errorf("split stream: reference %q: digest of %d bytes for %s", name, len(digest), w.alg)
	}
	if strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("split stream: reference name %q holds a NUL byte", name)
	}
	idx, ok := w.streamIdx[string(digest)]
	if !ok {
		idx = len(w.streams)
		w.streams = append(w.streams, slices.Clone(digest))
		w.streamIdx[string(digest)] = idx
	}
	w.named[name] = idx
	return nil
}

// Size is the length of the file the stream stands for so far: inline
// bytes plus the sizes given for external chunks.
func (w *Writer) Size() uint64 { return w.size }

// ExternalChunks is the number of external chunks written so far.
func (w *Writer) ExternalChunks() int { return w.extObjects }

// Finish ends the stream and returns the split stream file's bytes. The
// Writer cannot be used afterwards.
func (w *Writer) Finish() ([]byte, error) {
	if err := w.usable(); err != nil {
		return nil, err
	}
	if err := w.flush(); err != nil {
		return nil, err
	}
	w.finished = true
	if err := w.enc.Close(); err != nil {
		return nil, fmt.Errorf("split stream: %w", err)
	}
	var named bytes.Buffer
	enc, err := newEncoder(&named)
	if err != nil {
		return nil, fmt.Errorf("split stream: %w", err)
	}
	names := make([]string, 0, len(w.named))
	for n := range w.named {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		rec := strconv.Itoa(w.named[n]) + ":" + n + "\x00"
		if _, err := io.WriteString(enc, rec); err != nil {
			return nil, fmt.Errorf("split stream: named references: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("split stream: named references: %w", err)
	}

	ds := uint64(w.alg.Size())
	var in info
	at := uint64(headerSize + infoSize)
	next := func(n uint64) fileRange {
		r := fileRange{at, at + n}
		at += n
		return r
	}
	in.streamRefs = next(ds * uint64(len(w.streams)))
	in.objectRefs = next(ds * uint64(len(w.objects)))
	in.namedRefs = next(uint64(named.Len()))
	in.stream = next(uint64(w.stream.Len()))
	in.contentType = w.contentType
	in.streamSize = w.size
	if at > math.MaxInt64 {
		return nil, errors.New("split stream: too large")
	}

	out := make([]byte, headerSize+infoSize, at)
	header{algorithm: uint8(w.alg), lgBlockSize: lgBlockSize, info: fileRange{headerSize, headerSize + infoSize}}.put(out)
	in.put(out[headerSize:])
	for _, d := range w.streams {
		out = append(out, d...)
	}
	for _, d := range w.objects {
		out = append(out, d...)
	}
	out = append(out, named.Bytes()...)
	out = append(out, w.stream.Bytes()...)
	return out, nil
}
