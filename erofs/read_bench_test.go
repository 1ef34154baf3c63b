package erofs

import (
	"os"
	"path/filepath"
	"testing"
)

// benchImage opens the largest golden image and its largest directory.
func benchImage(b *testing.B) (*Image, Inode, []string) {
	imgs, _ := goldenImages(b)
	var path string
	var size int64
	for _, p := range imgs {
		if st, err := os.Stat(p); err == nil && st.Size() > size {
			path, size = p, st.Size()
		}
	}
	im := openGolden(b, path)
	var best Inode
	var bestNames []string
	queue := []uint64{im.RootNid()}
	for len(queue) > 0 {
		in, err := im.Inode(queue[0])
		queue = queue[1:]
		if err != nil {
			b.Fatal(err)
		}
		if !in.IsDir() {
			continue
		}
		var names []string
		im.ReadDir(&in, func(name string, nid uint64, _ uint8) error {
			names = append(names, name)
			queue = append(queue, nid)
			return nil
		})
		if len(names) > len(bestNames) {
			best, bestNames = in, names
		}
	}
	b.Logf("%s: directory inode %d, %d entries, %d blocks", filepath.Base(path), best.Nid, len(bestNames), best.blocks())
	return im, best, bestNames
}

func BenchmarkLookup(b *testing.B) {
	im, dir, names := benchImage(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := im.Lookup(&dir, names[i%len(names)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLookupMissing(b *testing.B) {
	im, dir, names := benchImage(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, _, err := im.Lookup(&dir, names[i%len(names)]+"~"); err == nil {
			b.Fatal("found")
		}
	}
}

func BenchmarkReadDir(b *testing.B) {
	im, dir, names := benchImage(b)
	b.ReportMetric(float64(len(names)), "entries/op")
	b.ResetTimer()
	for b.Loop() {
		n := 0
		if err := im.ReadDir(&dir, func(string, uint64, uint8) error { n++; return nil }); err != nil || n != len(names) {
			b.Fatal(err, n)
		}
	}
}

// xattrInodes collects the inodes of the directory's entries.
func xattrInodes(b *testing.B, im *Image, dir Inode) []Inode {
	var ins []Inode
	im.ReadDir(&dir, func(_ string, nid uint64, _ uint8) error {
		in, err := im.Inode(nid)
		if err == nil && in.XattrCount > 0 {
			ins = append(ins, in)
		}
		return err
	})
	if len(ins) == 0 {
		b.Skip("no xattrs")
	}
	return ins
}

func BenchmarkXattrs(b *testing.B) {
	im, dir, _ := benchImage(b)
	ins := xattrInodes(b, im, dir)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := im.Xattrs(&ins[i%len(ins)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGetXattr(b *testing.B) {
	im, dir, _ := benchImage(b)
	ins := xattrInodes(b, im, dir)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, found, err := im.GetXattr(&ins[i%len(ins)], "user.foo2"); err != nil || !found {
			b.Fatal(err, found)
		}
	}
}

func BenchmarkInode(b *testing.B) {
	im, dir, _ := benchImage(b)
	for b.Loop() {
		if _, err := im.Inode(dir.Nid); err != nil {
			b.Fatal(err)
		}
	}
}
