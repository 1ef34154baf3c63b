package erofs

import (
	"errors"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// inodeAt finds path in a clean image and returns its inode.
func inodeAt(t *testing.T, data []byte, path string) Inode {
	t.Helper()
	im, err := NewImage(data)
	if err != nil {
		t.Fatal(err)
	}
	return lookupPath(t, im, path)
}

// direntOffset returns the byte offset of dirent i in the first block of
// directory dir.
func direntOffset(t *testing.T, data []byte, dir Inode, i int) int {
	t.Helper()
	base := dir.tailOff
	if dir.Layout == LayoutFlatPlain || dir.Size > BlockSize {
		base = uint64(dir.StartBlock) << BlockBits
	}
	return int(base) + i*direntSize
}

// direntIndex finds name's index in the first block of directory dir.
func direntIndex(t *testing.T, data []byte, dir Inode, name string) int {
	t.Helper()
	im, _ := NewImage(data)
	d, err := im.dirBlock(&dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < d.count; i++ {
		n, _, _, err := d.entry(i)
		if err != nil {
			t.Fatal(err)
		}
		if string(n) == name {
			return i
		}
	}
	t.Fatalf("%q not in the first block of inode %d", name, dir.Nid)
	return 0
}

// TestDamageTargeted damages each structure of a V1 image in a way the
// reader must notice.
func TestDamageTargeted(t *testing.T) {
	forExtraFeatures(t, []int{1}, damageTargeted)
}

func damageTargeted(t *testing.T, base []byte) {
	root := inodeAt(t, base, "/")
	a := inodeAt(t, base, "/a")
	ext := inodeAt(t, base, "/a/ext1")
	lnk := inodeAt(t, base, "/a/lnk")
	nodigest := inodeAt(t, base, "/a/nodigest")
	put16 := func(b []byte, off int, v uint16) { littleEndian.PutUint16(b[off:], v) }
	put32 := func(b []byte, off int, v uint32) { littleEndian.PutUint32(b[off:], v) }
	put64 := func(b []byte, off int, v uint64) { littleEndian.PutUint64(b[off:], v) }
	aIdx := func(name string) int { return direntIndex(t, base, a, name) }
	rootIdx := func(name string) int { return direntIndex(t, base, root, name) }

	cases := []struct {
		name   string
		damage func(b []byte)
		open   bool // NewImage itself must refuse
	}{
		{"root nid out of range", func(b []byte) { put16(b, superblockOffset+sbOffRootNid, 0xffff) }, true},
		{"meta_blkaddr past the end", func(b []byte) { put32(b, superblockOffset+sbOffMetaBlkAddr, 1000) }, true},
		{"bad EROFS magic", func(b []byte) { put32(b, superblockOffset, 0x12345678) }, true},
		{"bad composefs magic", func(b []byte) { put32(b, 0, 0x12345678) }, true},
		{"dirent nid out of range", func(b []byte) {
			put64(b, direntOffset(t, b, a, aIdx("inl")), 1<<40)
		}, false},
		{"dirent nid overflowing", func(b []byte) {
			put64(b, direntOffset(t, b, a, aIdx("inl")), ^uint64(0))
		}, false},
		{"first nameoff not a dirent multiple", func(b []byte) {
			put16(b, direntOffset(t, b, a, 0)+8, 13)
		}, false},
		{"first nameoff zero", func(b []byte) { put16(b, direntOffset(t, b, a, 0)+8, 0) }, false},
		{"first nameoff past the block", func(b []byte) { put16(b, direntOffset(t, b, a, 0)+8, 0xfff0) }, false},
		{"nameoff garbage", func(b []byte) { put16(b, direntOffset(t, b, a, 3)+8, 0xffff) }, false},
		{"nameoff going backwards", func(b []byte) { put16(b, direntOffset(t, b, a, 3)+8, 2) }, false},
		{"names out of order", func(b []byte) {
			// swap the first letters of two names: "empty" < "ext1" no more
			i := direntOffset(t, b, a, aIdx("empty"))
			off := int(littleEndian.Uint16(b[i+8:])) + int(a.tailOff)
			b[off] = 'z'
		}, false},
		{"xattr count huge", func(b []byte) { put16(b, int(a.off)+inodeOffXattrCount, 0xffff) }, false},
		{"shared xattr count huge", func(b []byte) { b[int(a.xattrOff)+4] = 0xff }, false},
		{"shared xattr id huge", func(b []byte) { put32(b, int(ext.xattrOff)+xattrIbodyHeaderSize, 0xfffffff0) }, false},
		{"inline xattr value size huge", func(b []byte) {
			put16(b, int(nodigest.xattrOff)+xattrIbodyHeaderSize+2, 0xffff)
		}, false},
		{"xattr name index unknown", func(b []byte) { b[int(nodigest.xattrOff)+xattrIbodyHeaderSize+1] = 0x33 }, false},
		{"xattr long prefix without a table", func(b []byte) { b[int(nodigest.xattrOff)+xattrIbodyHeaderSize+1] = 0x81 }, false},
		{"inode mode without type", func(b []byte) { put16(b, int(ext.off)+inodeOffMode, 0o644) }, false},
		{"symlink size huge", func(b []byte) { put64(b, int(lnk.off)+extendedOffSize, 1<<40) }, false},
		{"symlink tail crossing a block", func(b []byte) { put64(b, int(lnk.off)+extendedOffSize, 4000) }, false},
		{"chunk map larger than the image", func(b []byte) {
			put64(b, int(ext.off)+extendedOffSize, 1<<62)
			put16(b, int(ext.off)+extendedOffU, 0)
		}, false},
		{"directory size huge", func(b []byte) { put64(b, int(a.off)+extendedOffSize, 1<<50) }, false},
		{"directory data block past the end", func(b []byte) {
			put32(b, int(root.off)+extendedOffU, 0xfffff)
		}, false},
		{"cycle: subdirectory entry is the root", func(b []byte) {
			put64(b, direntOffset(t, b, root, rootIdx("b sp")), root.Nid)
		}, false},
		{"cycle: directory contains itself", func(b []byte) {
			put64(b, direntOffset(t, b, a, aIdx("empty")), a.Nid)
		}, false},
		{"directory hardlink", func(b []byte) {
			put64(b, direntOffset(t, b, root, rootIdx("b sp")), a.Nid)
		}, false},
		{"inline content larger than C allows", func(b []byte) {
			inl := inodeAt(t, b, "/a/inl")
			put64(b, int(inl.off)+extendedOffSize, 20000)
			put16(b, int(inl.off)+inodeOffFormat, LayoutFlatPlain<<inodeDatalayoutBit|1)
			put32(b, int(inl.off)+extendedOffU, 0)
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			data := append([]byte(nil), base...)
			c.damage(data)
			im, err := NewImage(data)
			if c.open {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("NewImage: %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewImage: %v", err)
			}
			err = survive(t, c.name, data)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v, want ErrCorrupt", err)
			}
			// The dump walk alone must notice, the cursor must stay bounded.
			werr := im.Walk(func(e *dumpfile.Entry) error { return nil })
			t.Logf("Walk: %v", werr)
			if err := exerciseCursor(im); err != nil && !acceptable(err) {
				t.Fatalf("directory cursor: %v", err)
			}
		})
	}
}
