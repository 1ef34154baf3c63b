package ocitest

import (
	"archive/tar"
	"bytes"
	"path"
	"testing"
	"time"
)

// Tar builds a layer tar entry by entry:
//
//	layer := ocitest.NewTar(t).
//		Dir("etc").
//		File("etc/passwd", "root:x:0:0::/root:/bin/sh\n", ocitest.Mode(0o644)).
//		Symlink("bin", "usr/bin").
//		Whiteout("etc/old").
//		Bytes()
type Tar struct {
	t   testing.TB
	buf bytes.Buffer
	w   *tar.Writer
}

// NewTar starts a tar.
func NewTar(t testing.TB) *Tar {
	b := &Tar{t: t}
	b.w = tar.NewWriter(&b.buf)
	return b
}

// Entry changes an entry's header before it is written.
type Entry func(*tar.Header)

// Mode sets the permission bits (and setuid, setgid, sticky).
func Mode(m int64) Entry { return func(h *tar.Header) { h.Mode = m } }

// Owner sets the uid and gid.
func Owner(uid, gid int) Entry { return func(h *tar.Header) { h.Uid, h.Gid = uid, gid } }

// MTime sets the modification time (PAX keeps nanoseconds).
func MTime(t time.Time) Entry { return func(h *tar.Header) { h.ModTime = t } }

// Xattr adds an extended attribute, written as a PAX SCHILY.xattr record.
func Xattr(name, value string) Entry {
	return func(h *tar.Header) {
		if h.PAXRecords == nil {
			h.PAXRecords = map[string]string{}
		}
		h.PAXRecords["SCHILY.xattr."+name] = value
	}
}

// epoch is the default modification time, so that tars built alike are
// the same bytes.
var epoch = time.Unix(1700000000, 0)

func (b *Tar) add(h *tar.Header, content []byte, opts []Entry) *Tar {
	b.t.Helper()
	h.ModTime = epoch
	h.Format = tar.FormatPAX
	for _, o := range opts {
		o(h)
	}
	if err := b.w.WriteHeader(h); err != nil {
		b.t.Fatalf("tar %s: %v", h.Name, err)
	}
	if len(content) > 0 {
		if _, err := b.w.Write(content); err != nil {
			b.t.Fatalf("tar %s: %v", h.Name, err)
		}
	}
	return b
}

// File adds a regular file (mode 0644 unless Mode says otherwise).
func (b *Tar) File(name, content string, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))}, []byte(content), opts)
}

// Dir adds a directory (mode 0755).
func (b *Tar) Dir(name string, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: 0o755}, nil, opts)
}

// Symlink adds a symbolic link to target.
func (b *Tar) Symlink(name, target string, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}, nil, opts)
}

// Hardlink adds a hard link to target, a path in this or an earlier
// layer.
func (b *Tar) Hardlink(name, target string, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o644}, nil, opts)
}

// Whiteout adds the .wh. marker that deletes name from the layers below.
func (b *Tar) Whiteout(name string) *Tar {
	dir, base := path.Split(name)
	return b.add(&tar.Header{Typeflag: tar.TypeReg, Name: dir + ".wh." + base, Mode: 0o644}, nil, nil)
}

// Opaque adds the .wh..wh..opq marker that hides what the layers below
// have in directory dir.
func (b *Tar) Opaque(dir string) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeReg, Name: path.Join(dir, ".wh..wh..opq"), Mode: 0o644}, nil, nil)
}

// CharDevice adds a character device.
func (b *Tar) CharDevice(name string, major, minor int64, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeChar, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor}, nil, opts)
}

// BlockDevice adds a block device.
func (b *Tar) BlockDevice(name string, major, minor int64, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeBlock, Name: name, Mode: 0o660, Devmajor: major, Devminor: minor}, nil, opts)
}

// Fifo adds a named pipe.
func (b *Tar) Fifo(name string, opts ...Entry) *Tar {
	return b.add(&tar.Header{Typeflag: tar.TypeFifo, Name: name, Mode: 0o644}, nil, opts)
}

// Header adds an entry from a header of the caller's, for what the
// helpers do not cover.
func (b *Tar) Header(h *tar.Header, content []byte) *Tar {
	b.t.Helper()
	if err := b.w.WriteHeader(h); err != nil {
		b.t.Fatalf("tar %s: %v", h.Name, err)
	}
	if _, err := b.w.Write(content); err != nil {
		b.t.Fatalf("tar %s: %v", h.Name, err)
	}
	return b
}

// Bytes ends the tar and returns it.
func (b *Tar) Bytes() []byte {
	b.t.Helper()
	if err := b.w.Close(); err != nil {
		b.t.Fatal(err)
	}
	return b.buf.Bytes()
}
