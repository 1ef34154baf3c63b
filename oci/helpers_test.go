package oci

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// memStore is an ObjectWriter in memory.
type memStore map[string][]byte

func (m memStore) WriteObject(r io.Reader, size int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != size {
		return nil, io.ErrUnexpectedEOF
	}
	d := verity.DigestBytes(verity.SHA256, data)
	m[hex.EncodeToString(d)] = data
	return d, nil
}

// ent is one tar entry of a test layer.
type ent struct {
	hdr  tar.Header
	body string
}

var epoch = time.Unix(1700000000, 0)

func dir(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: epoch}}
}

func file(name, body string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: epoch}, body: body}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: epoch}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, Mode: 0o600, Uid: 77, ModTime: epoch}}
}

func with(e ent, f func(h *tar.Header)) ent {
	f(&e.hdr)
	return e
}

// layer makes an uncompressed PAX tar of the entries.
func layer(t testing.TB, entries ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// build applies the layers to a new Builder over store.
func build(t testing.TB, store memStore, layers ...[]byte) *Builder {
	t.Helper()
	b := NewBuilder(store)
	for i, l := range layers {
		id, err := b.ApplyLayer(bytes.NewReader(l))
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		sum := sha256.Sum256(l)
		if want := "sha256:" + hex.EncodeToString(sum[:]); id != want {
			t.Fatalf("layer %d diff_id %s, want %s", i, id, want)
		}
	}
	return b
}

// show renders an entry compactly: path, type+mode in octal, nlink,
// uid:gid, mtime, then what the type carries, then sorted xattrs.
func show(e dumpfile.Entry) string {
	if e.Hardlink != "" {
		return e.Path + " => " + e.Hardlink
	}
	s := fmt.Sprintf("%s %o %d %d:%d %d.%d", e.Path, e.Mode, e.Nlink, e.UID, e.GID, e.Mtime.Sec, e.Mtime.Nsec)
	switch e.Mode & 0o170000 {
	case 0o100000:
		if e.Digest != "" {
			s += fmt.Sprintf(" size=%d digest=%s", e.Size, e.Digest[:8])
		} else {
			s += fmt.Sprintf(" %q", e.Content)
		}
	case 0o120000:
		s += " -> " + e.Payload
	case 0o020000, 0o060000:
		s += fmt.Sprintf(" rdev=%d", e.Rdev)
	}
	var xs []string
	for _, x := range e.Xattrs {
		xs = append(xs, fmt.Sprintf("%s=%q", x.Name, x.Value))
	}
	slices.Sort(xs)
	if len(xs) > 0 {
		s += " " + strings.Join(xs, " ")
	}
	return s
}

func showAll(es []dumpfile.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, show(e))
	}
	return out
}

// paths lists the entries' paths.
func paths(es []dumpfile.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Path)
	}
	return out
}

func entriesOf(t testing.TB, b *Builder, tr Transform) []dumpfile.Entry {
	t.Helper()
	es, err := b.Entries(tr)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func digest8(data string) string {
	return hex.EncodeToString(verity.DigestBytes(verity.SHA256, []byte(data)))[:8]
}

func hexDigest(data string) string {
	return hex.EncodeToString(verity.DigestBytes(verity.SHA256, []byte(data)))
}

// retype gives the first header of a ustar layer (no PAX header before
// it) another type flag, as Go's tar writer would not.
func retype(l []byte, typeflag byte) []byte {
	l = bytes.Clone(l)
	h := l[:512]
	h[156] = typeflag
	copy(h[148:156], "        ")
	sum := 0
	for _, c := range h {
		sum += int(c)
	}
	copy(h[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return l
}
