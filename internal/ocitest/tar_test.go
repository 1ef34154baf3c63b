package ocitest

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
	"time"
)

// TestTar: what the builder writes reads back as the entries asked for.
func TestTar(t *testing.T) {
	mtime := time.Unix(1600000000, 123456789)
	b := NewTar(t).
		Dir("etc", Mode(0o700)).
		File("etc/a", "hello", Owner(1, 2), MTime(mtime), Xattr("security.capability", "\x01\x00")).
		Symlink("etc/l", "a").
		Hardlink("etc/h", "etc/a").
		Whiteout("etc/gone").
		Opaque("var").
		CharDevice("dev/null", 1, 3).
		BlockDevice("dev/sda", 8, 0).
		Fifo("run/p").
		Bytes()
	type want struct {
		name string
		typ  byte
		link string
	}
	wants := []want{
		{"etc/", tar.TypeDir, ""}, {"etc/a", tar.TypeReg, ""}, {"etc/l", tar.TypeSymlink, "a"},
		{"etc/h", tar.TypeLink, "etc/a"}, {"etc/.wh.gone", tar.TypeReg, ""}, {"var/.wh..wh..opq", tar.TypeReg, ""},
		{"dev/null", tar.TypeChar, ""}, {"dev/sda", tar.TypeBlock, ""}, {"run/p", tar.TypeFifo, ""},
	}
	tr := tar.NewReader(bytes.NewReader(b))
	for i, w := range wants {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if h.Name != w.name || h.Typeflag != w.typ || h.Linkname != w.link {
			t.Errorf("entry %d: %q type %c link %q; want %+v", i, h.Name, h.Typeflag, h.Linkname, w)
		}
		switch h.Name {
		case "etc/":
			if h.Mode != 0o700 {
				t.Errorf("etc mode %o", h.Mode)
			}
		case "etc/a":
			data, _ := io.ReadAll(tr)
			if string(data) != "hello" || h.Uid != 1 || h.Gid != 2 || !h.ModTime.Equal(mtime) ||
				h.PAXRecords["SCHILY.xattr.security.capability"] != "\x01\x00" {
				t.Errorf("etc/a: %q %+v", data, h)
			}
		case "dev/null":
			if h.Devmajor != 1 || h.Devminor != 3 {
				t.Errorf("dev/null %d,%d", h.Devmajor, h.Devminor)
			}
		}
	}
	if _, err := tr.Next(); err != io.EOF {
		t.Errorf("after the entries: %v", err)
	}
}
