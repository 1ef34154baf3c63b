package erofs

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/composefs/composefs-go/dumpfile"
)

// ErrInvalidTree is wrapped by every error about the writer's input: a tree
// that cannot be written as an image (missing parents, bad hardlinks,
// oversized xattrs or content, ...).
var ErrInvalidTree = errors.New("invalid composefs tree")

// WriteOptions selects the image format.
//
// composefs_version 0 and 1 are C mkcomposefs' layout; the image starts at
// MinVersion and steps up to 1 when the tree holds a whiteout and MaxVersion
// allows it, as C does (C's tool defaults: MinVersion 0, MaxVersion 1).
// MinVersion 2 selects composefs-rs' own layout (composefs_version 2).
type WriteOptions struct {
	MinVersion int
	MaxVersion int
}

// Write writes the image of entries to w. Entries come in dumpfile order (a
// parent before its children, "/" first) as dumpfile.ParseAll returns them;
// hardlinks may point forward. The same entries and options always give the
// same bytes: for versions 0 and 1 those of C mkcomposefs, for version 2
// those of composefs-rs.
//
// Beyond what C writes, a 128-hex-digit (sha512) digest becomes a sha512
// metacopy xattr. Version 2 refuses what its layout cannot hold: inline data
// that does not fit in one block with its inode, device numbers over 32
// bits, files larger than one 8 TiB chunk.
//
// Every version refuses a hardlinked whiteout: a whiteout (character device
// 0/0) with nlink over 1 or that a hardlink reaches. The error wraps
// dumpfile.ErrHardlinkedWhiteout as well as ErrInvalidTree. A whiteout
// stands for an absence and has no second name: C's image reader refuses a
// whiteout inode with more than one link, and composefs-rs and this
// module's dumpfile parser refuse one on input.
//
// The input is checked completely before the first byte is written: an
// invalid tree (an error wrapping ErrInvalidTree) writes nothing to w.
func Write(w io.Writer, entries []dumpfile.Entry, opts WriteOptions) error {
	version, maxVersion, err := opts.versions()
	if err != nil {
		return err
	}
	t, err := buildTree(entries)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	out := &emitter{w: bw}
	if version == ComposefsVersion2 {
		err = writeV2(out, t)
	} else {
		err = writeC(out, t, version, maxVersion)
	}
	if err != nil {
		return err
	}
	if out.err != nil {
		return out.err
	}
	return bw.Flush()
}

// versions resolves the options to a starting version and a ceiling.
func (o WriteOptions) versions() (int, int, error) {
	lo, hi := o.MinVersion, o.MaxVersion
	if lo < 0 || hi < 0 || lo > ComposefsVersion2 || hi > ComposefsVersion2 {
		return 0, 0, fmt.Errorf("composefs version %d..%d: only 0, 1 and 2 exist", lo, hi)
	}
	if lo == ComposefsVersion2 {
		return ComposefsVersion2, ComposefsVersion2, nil
	}
	// Version 2 is a different layout, not a later step of 0 and 1.
	hi = min(hi, composefsVersion1)
	return lo, max(lo, hi), nil
}

// emitter writes the image sequentially, tracking the offset; the first
// write error sticks and later writes are dropped.
type emitter struct {
	w   *bufio.Writer
	pos uint64
	err error
}

var zeroBlock [BlockSize]byte

func (e *emitter) write(p []byte) {
	e.pos += uint64(len(p))
	if e.err == nil {
		_, e.err = e.w.Write(p)
	}
}

func (e *emitter) zeros(n uint64) {
	for n > 0 {
		k := min(n, BlockSize)
		e.write(zeroBlock[:k])
		n -= k
	}
}

// align pads with zeros to a multiple of a.
func (e *emitter) align(a uint64) {
	e.zeros(roundUp(e.pos, a) - e.pos)
}

func roundUp(x, a uint64) uint64 { return (x + a - 1) / a * a }
