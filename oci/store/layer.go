package store

import (
	"bytes"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/splitstream"
	"github.com/composefs/composefs-go/verity"
)

const block = 512

// maxExtension bounds the data of a PAX or GNU long name/link header.
const maxExtension = 1 << 20

// HasLayer tells whether the layer diffID is stored; id is its stream's.
func HasLayer(repo *objects.Repository, diffID string) (id []byte, ok bool, err error) {
	if _, err := checkDigest(diffID); err != nil {
		return nil, false, fmt.Errorf("layer: %w", err)
	}
	return repo.HasStream(LayerID(diffID))
}

// ImportLayer stores the uncompressed layer tar read from tar as the
// stream oci-layer-<diffID>, split as composefs-rs splits it: tar headers,
// extension headers, padding and regular files (types '0', NUL, '7') of at
// most InlineMax bytes inline, larger regular files as objects. The tar
// must hash to diffID, else nothing is registered. A layer already stored
// is kept and tar is not read: stored is false then. It returns the
// stream's object id.
func ImportLayer(repo *objects.Repository, diffID string, tar io.Reader) (id []byte, stored bool, err error) {
	alg, err := checkDigest(diffID)
	if err != nil {
		return nil, false, fmt.Errorf("layer: %w", err)
	}
	if id, ok, err := repo.HasStream(LayerID(diffID)); err != nil || ok {
		return id, false, err
	}
	w, err := splitstream.NewWriter(repo, repo.Algorithm(), splitstream.ContentTypeLayer)
	if err != nil {
		return nil, false, err
	}
	h := digestOf(alg)
	if err := splitTar(w, io.TeeReader(tar, h)); err != nil {
		return nil, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	if got := fmt.Sprintf("%s:%x", alg, h.Sum(nil)); got != diffID {
		return nil, false, fmt.Errorf("layer %s: the tar's digest is %s", diffID, got)
	}
	data, err := w.Finish()
	if err != nil {
		return nil, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	id, err = repo.WriteStream(LayerID(diffID), data, "")
	if err != nil {
		return nil, false, fmt.Errorf("layer %s: %w", diffID, err)
	}
	return id, true, nil
}

// splitTar copies the tar in r into w, big regular files as objects.
func splitTar(w *splitstream.Writer, r io.Reader) error {
	var hdr [block]byte
	paxSize := int64(-1) // the size a PAX header gave the next entry
	for {
		n, err := io.ReadFull(r, hdr[:])
		if n == 0 && err == io.EOF {
			return nil // the end, without end-of-archive blocks
		}
		if err != nil {
			return fmt.Errorf("tar header at byte %d: %w", w.Size(), unexpected(err))
		}
		if hdr == [block]byte{} {
			// The end of the archive: this block, the next, and any
			// padding after them are kept as they are.
			w.Write(hdr[:])
			if _, err := io.Copy(w, r); err != nil {
				return fmt.Errorf("after the end of the tar archive: %w", err)
			}
			return nil
		}
		at := w.Size()
		if err := checkChecksum(&hdr); err != nil {
			return fmt.Errorf("tar header at byte %d: %w", at, err)
		}
		size, err := numeric(hdr[124:136])
		if err != nil {
			return fmt.Errorf("tar header at byte %d: size: %w", at, err)
		}
		w.Write(hdr[:])
		typ := hdr[156]
		switch typ {
		case 'x', 'g', 'L', 'K':
			if size > maxExtension {
				return fmt.Errorf("tar header at byte %d: %q extension of %d bytes (at most %d)", at, typ, size, maxExtension)
			}
			data := make([]byte, padded(size))
			if _, err := io.ReadFull(r, data); err != nil {
				return fmt.Errorf("tar extension at byte %d: %w", at, unexpected(err))
			}
			w.Write(data)
			if typ == 'x' {
				if paxSize, err = paxRecords(data[:size]); err != nil {
					return fmt.Errorf("PAX header at byte %d: %w", at, err)
				}
			}
			continue
		case 'S':
			return fmt.Errorf("tar entry at byte %d: sparse files are not supported", at)
		}
		if paxSize >= 0 {
			size = paxSize
		}
		paxSize = -1
		if size < 0 || size > maxEntrySize {
			return fmt.Errorf("tar entry at byte %d: size %d out of range", at, size)
		}
		if headerOnly(typ) {
			// Whatever the size field says, no data follows, as
			// archive/tar (and so the Builder) reads it: both must
			// see the same entries.
			size = 0
		}
		if (typ == '0' || typ == 0 || typ == '7') && size > InlineMax {
			if _, err := w.WriteExternal(io.LimitReader(r, size), size); err != nil {
				return fmt.Errorf("tar entry at byte %d: %w", at, unexpected(err))
			}
			if _, err := io.CopyN(w, r, padded(size)-size); err == io.EOF {
				// A layer that ends without the last entry's padding
				// (and the end-of-archive blocks), as umoci 0.4
				// writes them: what umoci unpack reads, this reads.
				return nil
			} else if err != nil {
				return fmt.Errorf("tar entry at byte %d: padding: %w", at, unexpected(err))
			}
			continue
		}
		got, err := io.CopyN(w, r, padded(size))
		if err == io.EOF && got >= size {
			return nil // the content whole, then the end: as above
		}
		if err != nil {
			return fmt.Errorf("tar entry at byte %d: %w", at, unexpected(err))
		}
	}
}

// maxEntrySize bounds an entry's size, so that its padded size cannot
// overflow: far beyond any file (the Builder takes at most 2^53).
const maxEntrySize = 1 << 62

// headerOnly tells the entry types that carry no data: links, devices,
// directories and fifos.
func headerOnly(typ byte) bool {
	switch typ {
	case '1', '2', '3', '4', '5', '6':
		return true
	}
	return false
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func padded(n int64) int64 { return (n + block - 1) / block * block }

// checkChecksum checks a header's checksum, summed unsigned or signed.
func checkChecksum(h *[block]byte) error {
	want, err := numeric(h[148:156])
	if err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	var u, s int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		u += int64(c)
		s += int64(int8(c))
	}
	if want != u && want != s {
		return fmt.Errorf("checksum %d, the header sums to %d", want, u)
	}
	return nil
}

// numeric reads a tar number field: octal (space or NUL ended) or GNU
// base-256; negative or overflowing values are errors.
func numeric(f []byte) (int64, error) {
	if len(f) > 0 && f[0]&0x80 != 0 {
		if f[0] != 0x80 {
			return 0, fmt.Errorf("negative or too large base-256 number % x", f)
		}
		var v int64
		for _, c := range f[1:] {
			if v > (1<<63-1)>>8 {
				return 0, fmt.Errorf("base-256 number % x overflows", f)
			}
			v = v<<8 | int64(c)
		}
		return v, nil
	}
	s := bytes.Trim(f, " \x00")
	if i := bytes.IndexAny(s, " \x00"); i >= 0 {
		s = s[:i]
	}
	if len(s) == 0 {
		return 0, nil
	}
	v, err := strconv.ParseInt(string(s), 8, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("bad octal number %q", f)
	}
	return v, nil
}

// paxRecords reads "len key=value\n" records and gives the "size" one
// (-1 when absent). GNU sparse records are refused, as composefs-rs
// refuses sparse files.
func paxRecords(data []byte) (int64, error) {
	size := int64(-1)
	for len(data) > 0 {
		sp := bytes.IndexByte(data, ' ')
		if sp <= 0 {
			return 0, errors.New("record without a length")
		}
		n, err := strconv.Atoi(string(data[:sp]))
		if err != nil || n <= sp+1 || n > len(data) || data[n-1] != '\n' {
			return 0, fmt.Errorf("record length %q", data[:sp])
		}
		key, value, ok := bytes.Cut(data[sp+1:n-1], []byte("="))
		if !ok {
			return 0, fmt.Errorf("record %q without '='", data[sp+1:n-1])
		}
		switch {
		case string(key) == "size":
			v, err := strconv.ParseInt(string(value), 10, 64)
			if err != nil || v < 0 {
				return 0, fmt.Errorf("size %q", value)
			}
			size = v
		case bytes.HasPrefix(key, []byte("GNU.sparse.")):
			return 0, errors.New("sparse files are not supported")
		}
		data = data[n:]
	}
	return size, nil
}

// LayerTar gives back the tar of the stored layer diffID, bit for bit:
// inline bytes from its stream, each external chunk from its object,
// checked against the object's digest as it is read. At the end the
// length must be the stream's and the tar must hash to diffID; any
// mismatch is an error wrapping ErrCorrupt, which names the layer.
func LayerTar(repo *objects.Repository, diffID string) (io.ReadCloser, error) {
	alg, err := checkDigest(diffID)
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	f, sr, err := openLayerStream(repo, diffID)
	if err != nil {
		return nil, err
	}
	return &layerReader{repo: repo, diffID: diffID, file: f, sr: sr, sum: digestOf(alg), alg: alg}, nil
}

// openLayerStream opens the split stream of the stored layer diffID (a
// checked digest), checked against its object id, and reads its
// header and references: what LayerTar and MergeLayer read it with.
func openLayerStream(repo *objects.Repository, diffID string) (*os.File, *splitstream.Reader, error) {
	f, _, err := repo.OpenStream(LayerID(diffID))
	if errors.Is(err, objects.ErrNoStream) {
		return nil, nil, fmt.Errorf("layer %s: %w", diffID, ErrNotFound)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("layer %s: %w", diffID, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("layer %s: %w", diffID, err)
	}
	sr, err := splitstream.Open(f, st.Size(), repo.Algorithm())
	if err == nil && sr.ContentType != splitstream.ContentTypeLayer {
		err = fmt.Errorf("content type %#x, not a layer's", sr.ContentType)
	}
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("layer %s: its stream: %w: %w", diffID, ErrCorrupt, err)
	}
	return f, sr, nil
}

type layerReader struct {
	repo   *objects.Repository
	diffID string
	alg    string
	file   io.Closer
	sr     *splitstream.Reader
	sum    hash.Hash
	size   uint64

	cur    io.ReadCloser // the object being read, or nil
	curID  []byte
	hasher *verity.Hasher
	inline bool
	err    error
}

func (l *layerReader) fail(err error) error {
	l.err = fmt.Errorf("layer %s: %w", l.diffID, err)
	return l.err
}

func (l *layerReader) Read(p []byte) (int, error) {
	for l.err == nil {
		if l.inline {
			n, err := l.sr.Read(p)
			l.account(p[:n])
			if err == io.EOF {
				l.inline = false
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				return n, l.fail(fmt.Errorf("its stream: %w: %w", ErrCorrupt, err))
			}
			return n, nil
		}
		if l.cur != nil {
			n, err := l.cur.Read(p)
			l.account(p[:n])
			l.hasher.Write(p[:n])
			if err == io.EOF {
				l.cur.Close()
				l.cur = nil
				if got := l.hasher.Sum(); !bytes.Equal(got, l.curID) {
					return n, l.fail(fmt.Errorf("%w: object %s: %w", ErrCorrupt, objects.PayloadForDigest(l.curID),
						&verity.MismatchError{Alg: l.repo.Algorithm(), Expected: l.curID, Actual: got}))
				}
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				return n, l.fail(err)
			}
			return n, nil
		}
		c, err := l.sr.Next()
		if err == io.EOF {
			return 0, l.finish()
		}
		if err != nil {
			return 0, l.fail(fmt.Errorf("its stream: %w: %w", ErrCorrupt, err))
		}
		if !c.External {
			l.inline = true
			continue
		}
		obj, err := l.repo.OpenDigest(c.Object)
		if err != nil {
			return 0, l.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
		}
		l.cur, l.curID, l.hasher = obj, c.Object, verity.NewHasher(l.repo.Algorithm())
	}
	return 0, l.err
}

func (l *layerReader) account(p []byte) {
	l.size += uint64(len(p))
	l.sum.Write(p)
}

// finish checks the whole: its length, then its digest.
func (l *layerReader) finish() error {
	if l.size != l.sr.StreamSize {
		return l.fail(fmt.Errorf("its stream: %w: %d bytes, the stream says %d", ErrCorrupt, l.size, l.sr.StreamSize))
	}
	if got := fmt.Sprintf("%s:%x", l.alg, l.sum.Sum(nil)); got != l.diffID {
		return l.fail(fmt.Errorf("its stream: %w: the tar's digest is %s", ErrCorrupt, got))
	}
	l.err = io.EOF
	return io.EOF
}

func (l *layerReader) Close() error {
	if l.cur != nil {
		l.cur.Close()
		l.cur = nil
	}
	l.sr.Close()
	if l.err == nil {
		l.err = errors.New("layer reader closed")
	}
	return l.file.Close()
}
