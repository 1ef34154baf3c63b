package oci

import (
	"bytes"
	"encoding/hex"
	"fmt"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/objects"
	"golang.org/x/sys/unix"
)

// Entries gives the merged tree after the transform t as dumpfile
// entries in dumpfile order: "/" first, each directory's names in bytewise
// order, depth first. Of the names of a hardlinked inode, the first in
// that order holds it and the others are Hardlink entries naming it, as
// in composefs-rs' dumpfile. Regular files larger than InlineMax bytes
// have Payload and Digest; smaller ones Content.
func (b *Builder) Entries(t Transform) ([]dumpfile.Entry, error) {
	x, err := b.transform(t)
	if err != nil {
		return nil, err
	}
	w := &entryWriter{x: x, first: map[*leaf]string{}, nlink: map[*leaf]uint32{}}
	w.countLinks(b.root, true)
	w.dir("/", b.root, x.root, true)
	return w.out, nil
}

type entryWriter struct {
	x     *transformed
	out   []dumpfile.Entry
	first map[*leaf]string
	nlink map[*leaf]uint32
}

func (w *entryWriter) countLinks(d *dirNode, top bool) {
	for name, c := range d.children {
		switch {
		case top && name == "run" && w.x.run != nil:
		case c.dir != nil:
			w.countLinks(c.dir, false)
		default:
			w.nlink[c.leaf]++
		}
	}
}

func (w *entryWriter) dir(path string, d *dirNode, m meta, top bool) {
	subdirs := uint32(0)
	for _, c := range d.children {
		if c.dir != nil {
			subdirs++
		}
	}
	w.out = append(w.out, dumpfile.Entry{
		Path:   path,
		Mode:   unix.S_IFDIR | m.perm,
		Nlink:  2 + subdirs,
		UID:    m.uid,
		GID:    m.gid,
		Mtime:  m.mtime,
		Xattrs: w.x.xattrs(m.xattrs),
	})
	prefix := path
	if prefix != "/" {
		prefix += "/"
	}
	for _, name := range d.sortedNames() {
		c := d.children[name]
		p := prefix + name
		switch {
		case top && name == "run" && w.x.run != nil:
			w.dir(p, w.x.run, w.x.run.meta, false)
		case c.dir != nil:
			w.dir(p, c.dir, c.dir.meta, false)
		default:
			w.leaf(p, c.leaf)
		}
	}
}

func (w *entryWriter) leaf(path string, l *leaf) {
	if first, ok := w.first[l]; ok {
		w.out = append(w.out, dumpfile.Entry{Path: path, Mode: l.fileType | l.perm, Hardlink: first})
		return
	}
	w.first[l] = path
	e := dumpfile.Entry{
		Path:   path,
		Size:   l.size,
		Mode:   l.fileType | l.perm,
		Nlink:  w.nlink[l],
		UID:    l.uid,
		GID:    l.gid,
		Rdev:   l.rdev,
		Mtime:  l.mtime,
		Xattrs: w.x.xattrs(l.xattrs),
	}
	switch {
	case l.fileType == unix.S_IFLNK:
		e.Payload = l.target
	case l.digest != nil:
		e.Payload = objects.PayloadForDigest(l.digest)
		e.Digest = hex.EncodeToString(l.digest)
	default:
		e.Content = l.content
	}
	w.out = append(w.out, e)
}

// Image gives the composefs image of the merged tree after the transform
// t in the given format version (0, 1 or 2; composefs-rs' cfsctl writes
// its repository's, 1 for a repository cfsctl init made).
func (b *Builder) Image(t Transform, version int) ([]byte, error) {
	entries, err := b.Entries(t)
	if err != nil {
		return nil, err
	}
	return WriteImage(entries, version)
}

// WriteImage writes entries as a composefs image of format version as
// composefs-rs does: 1 and 2 exactly, 0 stepping up to 1 when the tree
// holds a whiteout (a 0/0 character device), as C mkcomposefs does.
func WriteImage(entries []dumpfile.Entry, version int) ([]byte, error) {
	if version < 0 || version > 2 {
		return nil, fmt.Errorf("unknown composefs image format version %d", version)
	}
	opts := erofs.WriteOptions{MinVersion: version, MaxVersion: version}
	if version == 0 {
		opts.MaxVersion = 1
	}
	var buf bytes.Buffer
	if err := erofs.Write(&buf, entries, opts); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Commit writes the image of the merged tree after the transform t into
// repo, in the repository's format version, links it as images/<id> and
// returns its id. Its objects were written by ApplyLayer when repo was
// the Builder's ObjectWriter.
func (b *Builder) Commit(repo *objects.Repository, t Transform) (id []byte, err error) {
	image, err := b.Image(t, repo.ErofsVersion())
	if err != nil {
		return nil, err
	}
	return repo.WriteImage(image)
}
