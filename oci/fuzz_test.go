package oci

import (
	"archive/tar"
	"bytes"
	"testing"
)

// FuzzApplyLayer: any bytes as a layer, on top of a small tree, never
// panic, and what is accepted can be written as an image or is refused
// with an error.
func FuzzApplyLayer(f *testing.F) {
	base := layer(f, dir("usr/", 0o755), file("usr/f", "content of f, long enough to be an object..........."), dir("run/", 0o755), file("run/x", "x"))
	f.Add(base)
	f.Add(layer(f, file("usr/.wh.f", ""), file("usr/.wh..wh..opq", ""), hardlink("g", "usr/f"), dir("usr/f", 0o700)))
	f.Add(layer(f, with(file("a", "x"), func(h *tar.Header) {
		h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "1", "SCHILY.xattr.security.capability": "c"}
	}), symlink("l", "/x"), ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "c", Devmajor: 1, Devminor: 2}}))
	f.Add(retype(layer(f, file("f", "x")), tar.TypeGNUSparse))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewBuilder(memStore{})
		if _, err := b.ApplyLayer(bytes.NewReader(base)); err != nil {
			t.Fatal(err)
		}
		if _, err := b.ApplyLayer(bytes.NewReader(data)); err != nil {
			return
		}
		for _, tr := range []Transform{TransformNone, TransformDefault, TransformKeepUserXattrs} {
			es, err := b.Entries(tr)
			if err != nil {
				continue
			}
			for _, v := range []int{0, 1, 2} {
				WriteImage(es, v)
			}
		}
	})
}
