package oci

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/composefs/composefs-go/dumpfile"
	"golang.org/x/sys/unix"
)

// ErrInvalidLayer is wrapped by every error about a layer's content: a
// tar stream that cannot be read, or an entry the tree cannot take (a
// path leaving the root, a hardlink to nothing, an absurd size, ...).
var ErrInvalidLayer = errors.New("invalid OCI layer")

// InlineMax is the largest regular file kept inline in the image rather
// than stored as an object: composefs-rs' INLINE_CONTENT_MAX_V0, which is
// also C mkcomposefs' choice for files it reads from a directory.
const InlineMax = dumpfile.RecommendedInlineContentMax

// Limits on what a layer may ask for.
const (
	// maxPathLen bounds an entry's path and a hardlink's target
	// (PATH_MAX); no longer path can be opened anyway.
	maxPathLen = 4096
	// maxDepth bounds how many directories deep a path may go.
	maxDepth = 1024
	// maxNodes bounds the names in the merged tree.
	maxNodes = 1 << 24
)

// ObjectWriter stores the content of a regular file and returns its
// fs-verity digest; *objects.Repository is one. It must read exactly
// size bytes from r.
type ObjectWriter interface {
	WriteObject(r io.Reader, size int64) (digest []byte, err error)
}

// Builder merges layers into one tree. Its zero value is not usable; call
// NewBuilder.
type Builder struct {
	objects ObjectWriter
	root    *dirNode
	// rootSet: a layer had an entry for the root itself.
	rootSet bool
	layers  int
	nodes   int
}

// NewBuilder returns a Builder with an empty tree whose regular files go
// to objects.
func NewBuilder(objects ObjectWriter) *Builder {
	return &Builder{objects: objects, root: newDir(meta{perm: 0o755})}
}

// ApplyLayer applies one uncompressed layer tar stream on top of the
// layers applied before, by the OCI image spec's rules, and returns the
// stream's digest as "sha256:<hex>" (the whole stream, read to its end,
// as the config's diff_id is). A whiteout (".wh.NAME") and an opaque
// directory (".wh..wh..opq") hide what lower layers put there, never what
// this layer adds. Errors about the content wrap ErrInvalidLayer and name
// the entry; an error leaves the tree partly changed, so the Builder
// should then be dropped.
func (b *Builder) ApplyLayer(r io.Reader) (diffID string, err error) {
	h := sha256.New()
	tee := io.TeeReader(r, h)
	if err := b.applyTar(tar.NewReader(tee)); err != nil {
		return "", err
	}
	// What follows the end of the archive (a tar's record padding) is
	// part of the stream the diff_id covers.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return "", fmt.Errorf("read layer: %w", err)
	}
	diffID = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return diffID, nil
}

// ApplyStoredLayer applies a layer that was checked when it was stored
// (oci/store's Merger): its tar is read from r, its files' content goes to
// objects, which may know their digests without reading it, and no
// diff_id is computed. An io.Seeker r lets what is not read be skipped.
func (b *Builder) ApplyStoredLayer(r io.Reader, objects ObjectWriter) error {
	saved := b.objects
	b.objects = objects
	defer func() { b.objects = saved }()
	return b.applyTar(tar.NewReader(r))
}

// applyTar applies the entries of one layer's tar.
func (b *Builder) applyTar(tr *tar.Reader) error {
	b.layers++
	layer := b.layers
	var last *tar.Header
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err == io.ErrUnexpectedEOF && hdr == nil && last != nil {
			// The last entry's content was read whole (apply reads
			// or hands on all of it), so only its padding and the
			// end-of-archive blocks are missing: a layer as umoci 0.4
			// writes it, and umoci unpack reads. A layer cut short
			// otherwise does not hash to its diff_id.
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: read tar: %w", ErrInvalidLayer, err)
		}
		last = hdr
		if err := b.apply(layer, hdr, tr); err != nil {
			name := hdr.Name
			if len(name) > 200 {
				name = name[:200] + "..."
			}
			return fmt.Errorf("%w: entry %q: %w", ErrInvalidLayer, name, err)
		}
	}
}

// cleanPath splits a tar path into its names below the root, the way
// composefs-rs reads it: leading and repeated slashes and "." components
// dropped. ".." is refused: a layer may not reach outside its root.
func cleanPath(p string) ([]string, error) {
	if len(p) > maxPathLen {
		return nil, fmt.Errorf("path of %d bytes (most: %d)", len(p), maxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return nil, errors.New("NUL byte in path")
	}
	var names []string
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return nil, errors.New(`".." in path: it would leave the image's root`)
		}
		if len(c) > dumpfile.NameMax {
			return nil, fmt.Errorf("file name of %d bytes (most: %d)", len(c), dumpfile.NameMax)
		}
		names = append(names, c)
	}
	if len(names) > maxDepth {
		return nil, fmt.Errorf("path %d directories deep (most: %d)", len(names), maxDepth)
	}
	return names, nil
}

// lookupDir walks names from the root through directories only.
func (b *Builder) lookupDir(names []string) (*dirNode, error) {
	d := b.root
	for i, n := range names {
		c, ok := d.children[n]
		if !ok {
			return nil, nil
		}
		if c.dir == nil {
			return nil, fmt.Errorf("/%s is not a directory", strings.Join(names[:i+1], "/"))
		}
		d = c.dir
	}
	return d, nil
}

// parentDir finds the directory that holds names' last component. A
// missing directory on the way is made (0755, root's, mtime 0), as an
// unpacking runtime does; composefs-rs refuses such a layer.
func (b *Builder) parentDir(layer int, names []string) (*dirNode, error) {
	d := b.root
	for i, n := range names[:len(names)-1] {
		c, ok := d.children[n]
		if !ok {
			if err := b.count(); err != nil {
				return nil, err
			}
			c = &node{dir: newDir(meta{perm: 0o755}), layer: layer}
			d.children[n] = c
		}
		if c.dir == nil {
			return nil, fmt.Errorf("parent /%s is not a directory", strings.Join(names[:i+1], "/"))
		}
		d = c.dir
	}
	return d, nil
}

func (b *Builder) count() error {
	b.nodes++
	if b.nodes > maxNodes {
		return fmt.Errorf("more than %d entries in the image", maxNodes)
	}
	return nil
}

// headerMeta reads the metadata every entry has.
func headerMeta(hdr *tar.Header) (meta, error) {
	var m meta
	if hdr.Uid < 0 || int64(hdr.Uid) > math.MaxUint32 || hdr.Gid < 0 || int64(hdr.Gid) > math.MaxUint32 {
		return m, fmt.Errorf("uid %d or gid %d out of range", hdr.Uid, hdr.Gid)
	}
	if hdr.Mode < 0 {
		return m, fmt.Errorf("negative mode %d", hdr.Mode)
	}
	m.perm = uint32(hdr.Mode) & 0o7777
	m.uid, m.gid = uint32(hdr.Uid), uint32(hdr.Gid)
	m.mtime = dumpfile.Timespec{Sec: hdr.ModTime.Unix(), Nsec: uint32(hdr.ModTime.Nanosecond())}
	space := 0
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if name == "" || len(name) > dumpfile.XattrNameMax || strings.IndexByte(name, 0) >= 0 {
			return m, fmt.Errorf("xattr name %q: empty, too long or with NUL", name)
		}
		if len(v) > dumpfile.XattrValueMax {
			return m, fmt.Errorf("xattr %s: value of %d bytes (most: %d)", name, len(v), dumpfile.XattrValueMax)
		}
		if space += len(name) + len(v); space > 4*dumpfile.XattrSpaceMax {
			return m, fmt.Errorf("xattrs of more than %d bytes", 4*dumpfile.XattrSpaceMax)
		}
		m.xattrs = setXattr(m.xattrs, name, []byte(v))
	}
	return m, nil
}

// apply adds one tar entry to the tree.
func (b *Builder) apply(layer int, hdr *tar.Header, content io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeGNUSparse:
		return errors.New("sparse files are not supported")
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return errors.New("sparse files are not supported")
		}
	}
	names, err := cleanPath(hdr.Name)
	if err != nil {
		return err
	}
	m, err := headerMeta(hdr)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		// The root itself: only its metadata.
		if hdr.Typeflag != tar.TypeDir {
			return errors.New("the root must be a directory")
		}
		b.root.meta = m
		b.rootSet = true
		return nil
	}
	base := names[len(names)-1]
	if hidden, ok := strings.CutPrefix(base, ".wh."); ok {
		return b.whiteout(layer, names[:len(names)-1], hidden)
	}

	var n *node
	switch hdr.Typeflag {
	case tar.TypeDir:
		n = &node{dir: newDir(m)}
	case tar.TypeLink:
		target, err := cleanPath(hdr.Linkname)
		if err != nil {
			return fmt.Errorf("hardlink target: %w", err)
		}
		l, err := b.lookupLeaf(target)
		if err != nil {
			return err
		}
		n = &node{leaf: l}
	default:
		l, err := b.readLeaf(hdr, m, content)
		if err != nil {
			return err
		}
		n = &node{leaf: l}
	}
	n.layer = layer

	parent, err := b.parentDir(layer, names)
	if err != nil {
		return err
	}
	old, exists := parent.children[base]
	if exists && old.dir != nil && n.dir != nil {
		// A directory over a directory: new metadata, old content.
		old.dir.meta = n.dir.meta
		old.layer = layer
		return nil
	}
	if !exists {
		if err := b.count(); err != nil {
			return err
		}
	}
	parent.children[base] = n
	return nil
}

// whiteout applies ".wh.NAME" (or ".wh..wh..opq") found in the directory
// dirNames: what lower layers put there goes.
func (b *Builder) whiteout(layer int, dirNames []string, hidden string) error {
	d, err := b.lookupDir(dirNames)
	if err != nil || d == nil {
		// Nothing below to hide.
		return err
	}
	if hidden == ".wh..opq" {
		d.pruneLower(layer)
		return nil
	}
	c, ok := d.children[hidden]
	switch {
	case !ok:
	case c.layer != layer:
		delete(d.children, hidden)
	case c.dir != nil:
		// Put here by this very layer, over a directory of lower ones.
		c.dir.pruneLower(layer)
	}
	return nil
}

// lookupLeaf finds the inode a hardlink names: an existing non-directory,
// from this layer or a lower one.
func (b *Builder) lookupLeaf(names []string) (*leaf, error) {
	where := "/" + strings.Join(names, "/")
	if len(names) == 0 {
		return nil, errors.New("hardlink to the root directory")
	}
	d, err := b.lookupDir(names[:len(names)-1])
	if err != nil {
		return nil, fmt.Errorf("hardlink target %s: %w", where, err)
	}
	var c *node
	if d != nil {
		c = d.children[names[len(names)-1]]
	}
	if c == nil {
		return nil, fmt.Errorf("hardlink to %s, which does not exist", where)
	}
	if c.dir != nil {
		return nil, fmt.Errorf("hardlink to directory %s", where)
	}
	return c.leaf, nil
}

// readLeaf makes the inode of a regular file, symlink, device or fifo,
// storing a regular file's content.
func (b *Builder) readLeaf(hdr *tar.Header, m meta, content io.Reader) (*leaf, error) {
	l := &leaf{meta: m}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeCont:
		l.fileType = unix.S_IFREG
		if hdr.Size < 0 || uint64(hdr.Size) > dumpfile.ExternalSizeMax {
			return nil, fmt.Errorf("file size %d out of range (most: %d)", hdr.Size, uint64(dumpfile.ExternalSizeMax))
		}
		l.size = uint64(hdr.Size)
		if hdr.Size <= InlineMax {
			l.content = make([]byte, hdr.Size)
			if _, err := io.ReadFull(content, l.content); err != nil {
				return nil, fmt.Errorf("read content: %w", err)
			}
			if hdr.Size == 0 {
				l.content = nil
			}
			break
		}
		if b.objects == nil {
			return nil, errors.New("no object writer for a file's content")
		}
		d, err := b.objects.WriteObject(content, hdr.Size)
		if err != nil {
			return nil, fmt.Errorf("store content: %w", err)
		}
		if len(d) != 32 && len(d) != 64 {
			return nil, fmt.Errorf("store content: digest of %d bytes", len(d))
		}
		l.digest = d
	case tar.TypeSymlink:
		l.fileType = unix.S_IFLNK
		switch {
		case hdr.Linkname == "":
			return nil, errors.New("symlink without a target")
		case len(hdr.Linkname) > dumpfile.PayloadMax:
			return nil, fmt.Errorf("symlink target of %d bytes (most: %d)", len(hdr.Linkname), dumpfile.PayloadMax)
		case strings.IndexByte(hdr.Linkname, 0) >= 0:
			return nil, errors.New("NUL byte in symlink target")
		}
		l.target = hdr.Linkname
		l.size = uint64(len(hdr.Linkname))
	case tar.TypeChar, tar.TypeBlock:
		l.fileType = unix.S_IFCHR
		if hdr.Typeflag == tar.TypeBlock {
			l.fileType = unix.S_IFBLK
		}
		if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
			return nil, fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
		}
		l.rdev = unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	case tar.TypeFifo:
		l.fileType = unix.S_IFIFO
	default:
		return nil, fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	return l, nil
}
