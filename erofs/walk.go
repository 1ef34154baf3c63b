package erofs

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// maxDepth bounds directory nesting: a path of PATH_MAX (4096) bytes holds
// at most 2048 components, so anything deeper is damage (or a cycle).
const maxDepth = 2048

// Walk calls fn for every path of the image, depth-first in on-disk order,
// as C's composefs-info dump shows the tree: the composefs encoding
// reversed (whiteout stubs of V0/V1 images dropped, trusted.overlay.overlay.*
// unescaped, private trusted.overlay.* hidden, escaped whiteouts back to
// chardev 0/0, redirect and metacopy as payload and digest), and a nid seen
// again as Entry.Hardlink to the path it was first seen at, the other fields
// copied from that first entry. fn may keep e; its byte slices do not alias
// the image. An error from fn stops the walk and is returned.
func (im *Image) Walk(fn func(e *dumpfile.Entry) error) error {
	return im.WalkFilter(nil, fn)
}

// WalkFilter is Walk restricted to the root's children named in top
// (composefs-info --filter); an empty top means all of them.
func (im *Image) WalkFilter(top []string, fn func(e *dumpfile.Entry) error) error {
	w := &walker{im: im, fn: fn, first: map[uint64]string{}, linked: map[uint64]*dumpfile.Entry{}, dirs: map[uint64]bool{}}
	if len(top) > 0 {
		w.filter = map[string]bool{}
		for _, n := range top {
			w.filter[n] = true
		}
	}
	root, err := im.Inode(im.RootNid())
	if err != nil {
		return err
	}
	if !root.IsDir() {
		return fmt.Errorf("inode %d: root is not a directory (mode %#o): %w", root.Nid, root.Mode, ErrCorrupt)
	}
	return w.dir(&root, "/", 0)
}

type walker struct {
	im     *Image
	fn     func(*dumpfile.Entry) error
	filter map[string]bool
	// first maps the nid of every non-directory visited to its path, for
	// hardlinks; linked keeps the entries of those with several links, to
	// repeat without decoding again. dirs holds the directories: a second
	// visit is a cycle or a directory hardlink.
	first  map[uint64]string
	linked map[uint64]*dumpfile.Entry
	dirs   map[uint64]bool
}

func (w *walker) dir(in *Inode, path string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("%s: inode %d: directories nested deeper than %d: %w", path, in.Nid, maxDepth, ErrCorrupt)
	}
	w.dirs[in.Nid] = true
	e, err := w.im.dumpEntry(in, path)
	if err != nil {
		return err
	}
	if err := w.fn(e); err != nil {
		return err
	}
	prefix := path
	if prefix != "/" {
		prefix += "/"
	}
	atRoot := depth == 0
	return w.im.ReadDir(in, func(name string, nid uint64, _ uint8) error {
		if atRoot && w.filter != nil && !w.filter[name] {
			return nil
		}
		child := prefix + name
		if w.dirs[nid] {
			return fmt.Errorf("%s: inode %d: directory reached twice (cycle or directory hardlink): %w", child, nid, ErrCorrupt)
		}
		if e, ok := w.linked[nid]; ok {
			link := *e
			link.Path, link.Hardlink = child, e.Path
			return w.fn(&link)
		}
		cin, err := w.im.Inode(nid)
		if err != nil {
			return fmt.Errorf("%s: %w", child, err)
		}
		if w.im.hasStubs() && isWhiteout(&cin) {
			// C's reader drops every chardev 0/0 of a V0/V1 image: in
			// images it writes these are exactly the root's stubs.
			if cin.Nlink > 1 {
				return fmt.Errorf("%s: inode %d: whiteout with %d links: %w", child, nid, cin.Nlink, ErrCorrupt)
			}
			return nil
		}
		if cin.IsDir() {
			return w.dir(&cin, child, depth+1)
		}
		e, err := w.im.dumpEntry(&cin, child)
		if err != nil {
			return err
		}
		if firstPath, ok := w.first[nid]; ok {
			// Seen before with a single link (else it would be in
			// linked): damage, but C shows it as a hardlink all the same.
			e.Path, e.Hardlink = child, firstPath
			return w.fn(e)
		}
		w.first[nid] = child
		if cin.Nlink > 1 {
			keep := *e
			w.linked[nid] = &keep
		}
		return w.fn(e)
	})
}

// dumpEntry builds the dump view of one inode.
func (im *Image) dumpEntry(in *Inode, path string) (*dumpfile.Entry, error) {
	e := &dumpfile.Entry{
		Path:  path,
		Size:  in.Size,
		Mode:  in.Mode,
		Nlink: in.Nlink,
		UID:   in.UID,
		GID:   in.GID,
		Rdev:  uint64(in.Rdev),
		Mtime: dumpfile.Timespec{Sec: in.MtimeSec, Nsec: in.MtimeNsec},
	}
	var err error
	switch {
	case in.IsSymlink():
		if e.Payload, err = im.Readlink(in); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	case in.IsRegular() && in.Size != 0 && in.Layout != LayoutChunkBased:
		// composefs keeps only small files in the image; C refuses to
		// load more, which also bounds what a damaged image makes us copy.
		if in.Size > dumpfile.InlineContentMax {
			return nil, fmt.Errorf("%s: inode %d: %d bytes of inline content, more than %d: %w",
				path, in.Nid, in.Size, dumpfile.InlineContentMax, ErrCorrupt)
		}
		if e.Content, err = im.contentBytes(in); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	}
	// C applies the xattrs inline ones first, each seeing the file type as
	// the ones before left it.
	err = im.eachXattr(in, true, func(r *xattrRef) (bool, error) {
		x, err := im.xattrFromRef(in, r)
		if err != nil {
			return true, err
		}
		applyDumpXattr(e, x.Name, x.Value)
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if n := dumpXattrSpace(e.Xattrs); n > maxDumpXattrSpace {
		return nil, fmt.Errorf("%s: inode %d: %d bytes of xattrs, more than %d: %w", path, in.Nid, n, maxDumpXattrSpace, ErrCorrupt)
	}
	return e, nil
}

// maxDumpXattrSpace is what C's reader lets one inode's xattrs take (an
// EROFS xattr body's u16 limit), counted as dumpXattrSpace does.
const maxDumpXattrSpace = 65535

// dumpXattrSpace counts xattrs as C does when it loads them: a header, and
// per xattr its name and value with twice the entry header less one for
// alignment.
func dumpXattrSpace(xs []dumpfile.Xattr) int {
	if len(xs) == 0 {
		return 0
	}
	n := xattrIbodyHeaderSize
	for _, x := range xs {
		n += 2*xattrEntryHeaderSize - 1 + len(x.Name) + len(x.Value)
	}
	return n
}

// applyDumpXattr folds one stored xattr into the dump entry.
func applyDumpXattr(e *dumpfile.Entry, name string, value []byte) {
	regular := e.Mode&ModeFmt == ModeReg
	switch name {
	case OverlayRedirect:
		if regular {
			e.Payload = redirectPayload(value)
		}
		return
	case overlayMetacopy:
		if regular {
			if _, d, err := verity.DecodeMetacopy(value); err == nil && d != nil {
				e.Digest = hex.EncodeToString(d)
			}
		}
		return
	case OverlayEscWhiteout:
		if regular {
			e.Mode = e.Mode&^ModeFmt | ModeChr
			e.Rdev, e.Size, e.Content = 0, 0, nil
			return
		}
	case overlayEscWhiteouts, userOverlayWhiteout, userOverlayWhiteouts:
		return
	}
	if strings.HasPrefix(name, OverlayXattrPrefix) {
		rest, escaped := strings.CutPrefix(name, OverlayEscapedPrefix)
		if !escaped {
			return // overlayfs' own
		}
		name = OverlayXattrPrefix + rest
	}
	// A repeated name replaces the earlier value and moves to the end.
	for i := range e.Xattrs {
		if e.Xattrs[i].Name == name {
			e.Xattrs = append(e.Xattrs[:i], e.Xattrs[i+1:]...)
			break
		}
	}
	e.Xattrs = append(e.Xattrs, dumpfile.Xattr{Name: name, Value: bytes.Clone(value)})
}
