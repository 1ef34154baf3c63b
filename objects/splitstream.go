package objects

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"github.com/klauspost/compress/zstd"
)

// Splitstreams, composefs-rs' way of storing a file (an OCI layer's tar,
// a config, a manifest) so that it can be rebuilt byte for byte while the
// large parts of it live in objects/: a header, an info section, the
// arrays of stream and object references, the zstd-compressed named
// references ("index:name\0" records) and the zstd-compressed chunk
// stream, each chunk an int64 (negative: that many inline bytes follow;
// else an index into the object references), all little-endian. The
// splitstream itself is an object, linked as streams/<name>.

// Content types composefs-rs' OCI code gives its splitstreams.
var (
	ContentTypeOCILayer    = contentType("ocilayer")
	ContentTypeOCIConfig   = contentType("ociconfg")
	ContentTypeOCIManifest = contentType("ocimanif")
	ContentTypeOCIBlob     = contentType("oci_blob")
)

func contentType(s string) uint64 { return binary.LittleEndian.Uint64([]byte(s)) }

const (
	splitstreamMagic      = "SplitStream"
	splitstreamHeaderSize = 32 // magic, version, flags, algorithm, lg_blocksize, info range
	splitstreamInfoSize   = 4*16 + 8 + 8
)

// SplitstreamWriter builds one splitstream; Repository.NewSplitstream
// makes one.
type SplitstreamWriter struct {
	repo        *Repository
	contentType uint64
	chunks      bytes.Buffer // the chunk stream, uncompressed
	inline      []byte       // inline bytes not yet made a chunk
	objectRefs  [][]byte
	objectIndex map[string]int
	streamRefs  [][]byte
	streamIndex map[string]int
	named       map[string]int
	size        uint64
}

// NewSplitstream starts a splitstream of the given content type.
func (r *Repository) NewSplitstream(contentType uint64) *SplitstreamWriter {
	return &SplitstreamWriter{
		repo: r, contentType: contentType,
		objectIndex: map[string]int{}, streamIndex: map[string]int{}, named: map[string]int{},
	}
}

// Write adds inline bytes.
func (w *SplitstreamWriter) Write(p []byte) (int, error) {
	w.inline = append(w.inline, p...)
	w.size += uint64(len(p))
	return len(p), nil
}

func (w *SplitstreamWriter) flushInline() {
	if len(w.inline) == 0 {
		return
	}
	binary.Write(&w.chunks, binary.LittleEndian, -int64(len(w.inline)))
	w.chunks.Write(w.inline)
	w.inline = w.inline[:0]
}

// AddExternal adds size bytes that are the content of the object digest.
func (w *SplitstreamWriter) AddExternal(digest []byte, size uint64) error {
	if len(digest) != w.repo.alg.Size() {
		return fmt.Errorf("splitstream: object digest of %d bytes in a %s repository", len(digest), w.repo.alg)
	}
	w.flushInline()
	i, ok := w.objectIndex[string(digest)]
	if !ok {
		i = len(w.objectRefs)
		w.objectIndex[string(digest)] = i
		w.objectRefs = append(w.objectRefs, slices.Clone(digest))
	}
	binary.Write(&w.chunks, binary.LittleEndian, int64(i))
	w.size += size
	return nil
}

// AddNamedRef names another splitstream (by its id) from this one, as an
// OCI config names its layers' streams by diff_id.
func (w *SplitstreamWriter) AddNamedRef(name string, streamID []byte) error {
	if len(streamID) != w.repo.alg.Size() {
		return fmt.Errorf("splitstream: stream id of %d bytes in a %s repository", len(streamID), w.repo.alg)
	}
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return fmt.Errorf("splitstream: named ref %q is empty or has a NUL byte", name)
	}
	i, ok := w.streamIndex[string(streamID)]
	if !ok {
		i = len(w.streamRefs)
		w.streamIndex[string(streamID)] = i
		w.streamRefs = append(w.streamRefs, slices.Clone(streamID))
	}
	w.named[name] = i
	return nil
}

// Bytes gives the splitstream file.
func (w *SplitstreamWriter) Bytes() ([]byte, error) {
	w.flushInline()
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, err
	}
	defer enc.Close()
	stream := enc.EncodeAll(w.chunks.Bytes(), nil)
	var names bytes.Buffer
	keys := make([]string, 0, len(w.named))
	for k := range w.named {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&names, "%d:%s\x00", w.named[k], k)
	}
	named := enc.EncodeAll(names.Bytes(), nil)

	var out bytes.Buffer
	le := binary.LittleEndian
	put := func(v any) { binary.Write(&out, le, v) }
	infoStart := uint64(splitstreamHeaderSize)
	streamRefsStart := infoStart + splitstreamInfoSize
	streamRefsEnd := streamRefsStart + uint64(len(w.streamRefs)*w.repo.alg.Size())
	objectRefsEnd := streamRefsEnd + uint64(len(w.objectRefs)*w.repo.alg.Size())
	namedEnd := objectRefsEnd + uint64(len(named))
	streamEnd := namedEnd + uint64(len(stream))

	out.WriteString(splitstreamMagic)
	put(uint8(0))  // version
	put(uint16(0)) // flags
	put(kernelAlgorithm(w.repo.alg))
	put(uint8(12)) // log2 of the fs-verity block size
	put([2]uint64{infoStart, infoStart + splitstreamInfoSize})
	put([2]uint64{streamRefsStart, streamRefsEnd})
	put([2]uint64{streamRefsEnd, objectRefsEnd})
	put([2]uint64{namedEnd, streamEnd}) // the chunk stream
	put([2]uint64{objectRefsEnd, namedEnd})
	put(w.contentType)
	put(w.size)
	for _, r := range w.streamRefs {
		out.Write(r)
	}
	for _, r := range w.objectRefs {
		out.Write(r)
	}
	out.Write(named)
	out.Write(stream)
	if uint64(out.Len()) != streamEnd {
		return nil, errors.New("splitstream: layout mismatch")
	}
	return out.Bytes(), nil
}

// kernelAlgorithm is the kernel's FS_VERITY_HASH_ALG_* number.
func kernelAlgorithm(alg verity.Algorithm) uint8 {
	if alg == verity.SHA512 {
		return 2
	}
	return 1
}

// Commit stores the splitstream as an object, links it as streams/<name>
// (replacing an older link of that name) and returns its id. composefs-rs
// names an OCI layer's stream "oci-layer-<diff_id>", a config's
// "oci-config-<digest>", a manifest's "oci-manifest-<digest>".
func (w *SplitstreamWriter) Commit(name string) (id []byte, err error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." || name == "refs" {
		return nil, fmt.Errorf("splitstream name %q: not a plain file name", name)
	}
	data, err := w.Bytes()
	if err != nil {
		return nil, err
	}
	id, err = w.repo.WriteObject(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	streams, err := w.repo.subdir("streams")
	if err != nil {
		return nil, errpath.New("repository", w.repo.path, err)
	}
	defer streams.Close()
	if err := replaceSymlink(int(streams.Fd()), name, "../objects/"+PayloadForDigest(id)); err != nil {
		return nil, fmt.Errorf("link stream %s in %s: %w", name, streams.Name(), err)
	}
	return id, nil
}

// ErrSplitstream is wrapped when a splitstream is malformed.
var ErrSplitstream = errors.New("invalid splitstream")

// maxSplitstreamSection bounds what a compressed section may expand to.
const maxSplitstreamSection = 1 << 30

// Splitstream is a parsed splitstream.
type Splitstream struct {
	Algorithm   verity.Algorithm
	ContentType uint64
	// Size is the size of the file it stores.
	Size uint64
	// ObjectRefs are the objects its external chunks name.
	ObjectRefs [][]byte
	// NamedRefs are the streams it names, by name.
	NamedRefs map[string][]byte
	// chunks is the decompressed chunk stream.
	chunks []byte
}

// ParseSplitstream reads a splitstream file, checking every range and
// chunk before use.
func ParseSplitstream(data []byte) (*Splitstream, error) {
	fail := func(format string, args ...any) (*Splitstream, error) {
		return nil, fmt.Errorf("%w: %s", ErrSplitstream, fmt.Sprintf(format, args...))
	}
	le := binary.LittleEndian
	if len(data) < splitstreamHeaderSize || string(data[:11]) != splitstreamMagic {
		return fail("no SplitStream header")
	}
	if data[11] != 0 {
		return fail("version %d", data[11])
	}
	s := &Splitstream{}
	switch data[14] {
	case 1:
		s.Algorithm = verity.SHA256
	case 2:
		s.Algorithm = verity.SHA512
	default:
		return fail("fs-verity algorithm %d", data[14])
	}
	if data[15] != 12 {
		return fail("fs-verity block size 2^%d", data[15])
	}
	rng := func(b []byte) ([]byte, bool) {
		start, end := le.Uint64(b), le.Uint64(b[8:])
		if start > end || end > uint64(len(data)) {
			return nil, false
		}
		return data[start:end], true
	}
	info, ok := rng(data[16:])
	if !ok || len(info) < splitstreamInfoSize {
		return fail("info section out of range")
	}
	var sections [4][]byte
	for i := range sections {
		if sections[i], ok = rng(info[16*i:]); !ok {
			return fail("section %d out of range", i)
		}
	}
	s.ContentType, s.Size = le.Uint64(info[64:]), le.Uint64(info[72:])
	size := s.Algorithm.Size()
	split := func(b []byte) ([][]byte, bool) {
		if len(b)%size != 0 {
			return nil, false
		}
		var out [][]byte
		for ; len(b) > 0; b = b[size:] {
			out = append(out, b[:size:size])
		}
		return out, true
	}
	streamRefs, ok1 := split(sections[0])
	objectRefs, ok2 := split(sections[1])
	if !ok1 || !ok2 {
		return fail("reference array not a whole number of digests")
	}
	s.ObjectRefs = objectRefs
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxSplitstreamSection), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	if s.chunks, err = dec.DecodeAll(sections[2], nil); err != nil {
		return fail("stream: %v", err)
	}
	names, err := dec.DecodeAll(sections[3], nil)
	if err != nil && len(sections[3]) > 0 {
		return fail("named refs: %v", err)
	}
	s.NamedRefs = map[string][]byte{}
	for len(names) > 0 {
		end := bytes.IndexByte(names, 0)
		if end < 0 {
			return fail("named ref without its NUL")
		}
		idx, name, found := strings.Cut(string(names[:end]), ":")
		names = names[end+1:]
		var i int
		if _, err := fmt.Sscanf(idx, "%d", &i); !found || err != nil || i < 0 || i >= len(streamRefs) || fmt.Sprint(i) != idx {
			return fail("named ref %q", idx+":"+name)
		}
		s.NamedRefs[name] = streamRefs[i]
	}
	// Check the chunks now, so that Rebuild meets no surprise.
	total := uint64(0)
	for c := s.chunks; len(c) > 0; {
		if len(c) < 8 {
			return fail("truncated chunk header")
		}
		n := int64(le.Uint64(c))
		c = c[8:]
		if n < 0 {
			if n == -1<<63 || uint64(-n) > uint64(len(c)) {
				return fail("inline chunk of %d bytes past the end", -n)
			}
			total += uint64(-n)
			c = c[-n:]
		} else if n >= int64(len(objectRefs)) {
			return fail("external chunk names object %d of %d", n, len(objectRefs))
		}
	}
	if total > s.Size {
		return fail("inline chunks of %d bytes in a stream of %d", total, s.Size)
	}
	return s, nil
}

// Rebuild rebuilds the stored file into w, taking external chunks from
// the store. The result must be Size bytes long.
func (s *Splitstream) Rebuild(w io.Writer, store Store) (int64, error) {
	le := binary.LittleEndian
	var written int64
	for c := s.chunks; len(c) > 0; {
		n := int64(le.Uint64(c))
		c = c[8:]
		if n < 0 {
			m, err := w.Write(c[:-n])
			written += int64(m)
			if err != nil {
				return written, err
			}
			c = c[-n:]
			continue
		}
		f, err := store.Open(PayloadForDigest(s.ObjectRefs[n]))
		if err != nil {
			return written, err
		}
		m, err := io.Copy(w, f)
		f.Close()
		written += m
		if err != nil {
			return written, err
		}
	}
	if uint64(written) != s.Size {
		return written, fmt.Errorf("%w: rebuilt %d bytes, the header says %d", ErrSplitstream, written, s.Size)
	}
	return written, nil
}
