package store

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/splitstream"
)

// Merger gives a stored layer to a Builder that merges layers into an
// image (oci.Builder.ApplyStoredLayer(m, m)) without reading the content
// of its files stored as objects: as a reader of the layer's tar it skips
// an external chunk (Seek) rather than read it, and as an ObjectWriter it
// answers a file whose content is the external chunk at hand with that
// chunk's object id. Nothing is hashed: the layer was checked against its
// diff_id when it was imported, its stream is checked against the stream's
// object id as it is opened, and each object is checked against its id
// whenever it is read (a mount's verity). This makes a second pull of an
// image, and compute-id or dump, cost reading the streams only.
type Merger struct {
	repo   *objects.Repository
	diffID string
	file   io.Closer
	sr     *splitstream.Reader
	pos    int64

	inline bool // reading an inline chunk
	ext    *extChunk
	err    error
}

// extChunk is the external chunk at hand: its object, its size, and how
// much of it was read or skipped.
type extChunk struct {
	id   []byte
	obj  *os.File
	size int64
	off  int64
}

// MergeLayer opens the stored layer diffID for merging.
func MergeLayer(repo *objects.Repository, diffID string) (*Merger, error) {
	if _, err := checkDigest(diffID); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	f, sr, err := openLayerStream(repo, diffID)
	if err != nil {
		return nil, err
	}
	return &Merger{repo: repo, diffID: diffID, file: f, sr: sr}, nil
}

func (m *Merger) fail(err error) error {
	if m.err == nil {
		m.err = fmt.Errorf("layer %s: %w", m.diffID, err)
	}
	return m.err
}

// advance moves past a finished chunk to the next one; io.EOF after the
// last.
func (m *Merger) advance() error {
	if m.inline {
		// A zero-length read says whether the inline chunk has more.
		if _, err := m.sr.Read(nil); err != io.EOF {
			if err != nil {
				return m.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
			}
			return nil
		}
		m.inline = false
	}
	if m.ext != nil {
		if m.ext.off < m.ext.size {
			return nil
		}
		m.ext.obj.Close()
		m.ext = nil
	}
	c, err := m.sr.Next()
	if err == io.EOF {
		return io.EOF
	}
	if err != nil {
		return m.fail(fmt.Errorf("its stream: %w: %w", ErrCorrupt, err))
	}
	if !c.External {
		m.inline = true
		return nil
	}
	obj, err := m.repo.OpenDigest(c.Object)
	if err != nil {
		return m.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
	}
	st, err := obj.Stat()
	if err != nil {
		obj.Close()
		return m.fail(err)
	}
	m.ext = &extChunk{id: c.Object, obj: obj, size: st.Size()}
	return nil
}

// Read reads the layer's tar: inline bytes from the stream, an external
// chunk's from its object (what a Seek did not skip).
func (m *Merger) Read(p []byte) (int, error) {
	for m.err == nil {
		switch {
		case m.inline:
			n, err := m.sr.Read(p)
			m.pos += int64(n)
			if err == io.EOF {
				m.inline = false
				if n == 0 {
					continue
				}
				return n, nil
			}
			if err != nil {
				return n, m.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
			}
			return n, nil
		case m.ext != nil && m.ext.off < m.ext.size:
			if rest := m.ext.size - m.ext.off; int64(len(p)) > rest {
				p = p[:rest]
			}
			n, err := m.ext.obj.ReadAt(p, m.ext.off)
			m.ext.off += int64(n)
			m.pos += int64(n)
			if err == io.EOF && m.ext.off < m.ext.size {
				return n, m.fail(fmt.Errorf("%w: object %s shrank", ErrCorrupt, objects.PayloadForDigest(m.ext.id)))
			}
			if err != nil && err != io.EOF {
				return n, m.fail(err)
			}
			return n, nil
		}
		if err := m.advance(); err != nil {
			return 0, err
		}
	}
	return 0, m.err
}

// Seek skips forward (whence io.SeekCurrent only): through external
// chunks without reading them, through inline bytes by reading them.
// archive/tar skips the content a Builder did not read this way.
func (m *Merger) Seek(offset int64, whence int) (int64, error) {
	if whence != io.SeekCurrent || offset < 0 {
		return m.pos, errors.New("merger: only skips forward")
	}
	for offset > 0 && m.err == nil {
		switch {
		case m.inline:
			n, err := io.CopyN(io.Discard, m.sr, offset)
			m.pos += n
			offset -= n
			if err == io.EOF {
				m.inline = false
				continue
			}
			if err != nil {
				return m.pos, m.fail(fmt.Errorf("%w: %w", ErrCorrupt, err))
			}
		case m.ext != nil && m.ext.off < m.ext.size:
			n := min(offset, m.ext.size-m.ext.off)
			m.ext.off += n
			m.pos += n
			offset -= n
		default:
			if err := m.advance(); err == io.EOF {
				return m.pos, io.ErrUnexpectedEOF
			} else if err != nil {
				return m.pos, err
			}
		}
	}
	return m.pos, m.err
}

// WriteObject is the ObjectWriter of the Builder: the content of size
// bytes that begins here is the external chunk at hand when its object has
// that size, and the chunk's id is its digest, nothing read. Other content
// means the stream was split otherwise than the tar reads (a hostile
// layer): an error, since an object stored here would be named by no
// stream, and gc would take it from the image.
func (m *Merger) WriteObject(r io.Reader, size int64) ([]byte, error) {
	if m.err == nil && (m.ext == nil || m.ext.off == m.ext.size) {
		if err := m.advance(); err != nil && err != io.EOF {
			return nil, err
		}
	}
	if m.ext != nil && m.ext.off == 0 && m.ext.size == size {
		return m.ext.id, nil
	}
	return nil, m.fail(fmt.Errorf("%w: a file of %d bytes is not one of the stream's objects: the layer's split and its tar disagree", ErrCorrupt, size))
}

// Close releases the stream and the object at hand.
func (m *Merger) Close() error {
	if m.ext != nil {
		m.ext.obj.Close()
		m.ext = nil
	}
	m.sr.Close()
	return m.file.Close()
}
