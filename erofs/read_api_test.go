package erofs

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
)

// TestLookupEveryName: in every directory of our images and of every
// golden image, Lookup finds each name ReadDir lists, and misses names
// between them.
func TestLookupEveryName(t *testing.T) {
	for v := range 3 {
		t.Run(fmt.Sprintf("own/v%d", v), func(t *testing.T) {
			data, _ := ownImage(t, v)
			lookups, multiBlock := lookupEveryName(t, newImage(t, data), fmt.Sprintf("own v%d", v))
			if multiBlock == 0 {
				t.Error("no directory spanning several blocks was searched")
			}
			t.Logf("%d lookups, %d multi-block directories", lookups, multiBlock)
		})
	}
	t.Run("golden", func(t *testing.T) {
		c, v2 := goldenImages(t)
		lookups, multiBlock := 0, 0
		for _, path := range append(c, v2...) {
			l, m := lookupEveryName(t, openGolden(t, path), path)
			lookups, multiBlock = lookups+l, multiBlock+m
		}
		if multiBlock == 0 {
			t.Error("no directory spanning several blocks was searched")
		}
		t.Logf("%d lookups, %d multi-block directories", lookups, multiBlock)
	})
}

// lookupEveryName checks Lookup against ReadDir in every directory of im
// (named path in messages), and counts the lookups and the directories of
// more than one block.
func lookupEveryName(t *testing.T, im *Image, path string) (lookups, multiBlock int) {
	t.Helper()
	queue := []uint64{im.RootNid()}
	seen := map[uint64]bool{}
	for len(queue) > 0 {
		in, err := im.Inode(queue[0])
		queue = queue[1:]
		if err != nil {
			t.Fatal(err)
		}
		if !in.IsDir() || seen[in.Nid] {
			continue
		}
		seen[in.Nid] = true
		if in.blocks() > 1 {
			multiBlock++
		}
		names := map[string]uint64{}
		var order []string
		err = im.ReadDir(&in, func(name string, nid uint64, ft uint8) error {
			names[name] = nid
			order = append(order, name)
			queue = append(queue, nid)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range append(order, ".", "..") {
			nid, _, err := im.Lookup(&in, n)
			if err != nil {
				t.Fatalf("%s: inode %d: Lookup(%q): %v", path, in.Nid, n, err)
			}
			if want, ok := names[n]; ok && nid != want {
				t.Fatalf("%s: Lookup(%q) = %d, ReadDir says %d", path, n, nid, want)
			}
			lookups++
			for _, miss := range []string{n + "\x00", n[:len(n)-1] + "\x01", "\xff" + n} {
				if _, ok := names[miss]; ok || miss == "." || miss == ".." {
					continue
				}
				if _, _, err := im.Lookup(&in, miss); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("%s: Lookup(%q) of a missing name: %v", path, miss, err)
				}
				lookups++
			}
		}
	}
	return lookups, multiBlock
}

// TestDataAgainstC: file contents and symlink targets read through the
// layouts equal what C's dump shows.
func TestDataAgainstC(t *testing.T) {
	imgs, _ := goldenImages(t)
	d := goldenDir(t)
	files, links := 0, 0
	for _, path := range imgs {
		im := openGolden(t, path)
		text := readGz(t, filepath.Join(d, "c", "info", imageName(path)+".dump.gz"))
		err := dumpfile.Parse(bytes.NewReader(text), dumpfile.ParseOptions{}, func(e *dumpfile.Entry) error {
			if e.Hardlink != "" {
				return nil
			}
			switch {
			case e.IsRegular() && len(e.Content) > 0:
				in := lookupPath(t, im, e.Path)
				got := make([]byte, in.Size+10)
				n, err := im.ReadAt(&in, got, 0)
				if err != io.EOF || !bytes.Equal(got[:n], e.Content) {
					t.Errorf("%s: %s: read %d bytes (%v), differ from C's content", path, e.Path, n, err)
				}
				// A read across the first block boundary.
				if in.Size > BlockSize {
					part := make([]byte, 100)
					if n, err := im.ReadAt(&in, part, BlockSize-50); err != nil && err != io.EOF || !bytes.Equal(part[:n], e.Content[BlockSize-50:min(len(e.Content), BlockSize+50)]) {
						t.Errorf("%s: %s: read across a block: %v", path, e.Path, err)
					}
				}
				files++
			case e.IsSymlink():
				in := lookupPath(t, im, e.Path)
				if target, err := im.Readlink(&in); err != nil || target != e.Payload {
					t.Errorf("%s: %s: Readlink = %q, %v; C says %q", path, e.Path, target, err, e.Payload)
				}
				links++
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d file contents, %d symlink targets checked", files, links)
}

// TestReadAtSemantics: reads of inline and external files at and past
// their ends, and of what has no data, in each layout version.
func TestReadAtSemantics(t *testing.T) {
	forExtraFeatures(t, []int{0, 1, 2}, func(t *testing.T, base []byte) { readAtSemantics(t, newImage(t, base)) })
}

func readAtSemantics(t *testing.T, im *Image) {
	inl := lookupPath(t, im, "/a/inl")
	buf := make([]byte, 10)
	if n, err := im.ReadAt(&inl, buf, 0); n != 5 || err != io.EOF || string(buf[:5]) != "hello" {
		t.Errorf("ReadAt(0) = %d, %v, %q", n, err, buf[:n])
	}
	if n, err := im.ReadAt(&inl, buf[:3], 1); n != 3 || err != nil || string(buf[:3]) != "ell" {
		t.Errorf("ReadAt(1) = %d, %v, %q", n, err, buf[:n])
	}
	if n, err := im.ReadAt(&inl, buf, 5); n != 0 || err != io.EOF {
		t.Errorf("ReadAt(end) = %d, %v", n, err)
	}
	if _, err := im.ReadAt(&inl, buf, -1); err == nil {
		t.Error("ReadAt(-1) succeeded")
	}
	ext := lookupPath(t, im, "/a/ext1")
	big := bytes.Repeat([]byte{1}, 5000)
	if n, err := im.ReadAt(&ext, big, 0); n != 4096 || err != io.EOF || !bytes.Equal(big[:n], make([]byte, 4096)) {
		t.Errorf("external file: %d, %v, not zeros", n, err)
	}
	if holes, err := im.AllHoles(&ext); !holes || err != nil {
		t.Errorf("AllHoles(ext1) = %v, %v", holes, err)
	}
	root, _ := im.Inode(im.RootNid())
	cdev := lookupPath(t, im, "/b sp/cdev")
	if _, err := im.ReadAt(&cdev, buf, 0); err == nil {
		t.Error("ReadAt of a device succeeded")
	}
	if _, err := im.Readlink(&root); err == nil {
		t.Error("Readlink of a directory succeeded")
	}
}

// TestXattrsAndComposefs: shared and inline xattrs, overlay redirect and
// metacopy, and the whiteout stubs of V0 and V1 images (V2 has none).
func TestXattrsAndComposefs(t *testing.T) {
	forExtraFeatures(t, []int{0, 1}, func(t *testing.T, base []byte) { xattrsAndComposefs(t, newImage(t, base)) })
}

func xattrsAndComposefs(t *testing.T, im *Image) {
	ext := lookupPath(t, im, "/a/ext1")
	xs, err := im.Xattrs(&ext)
	if err != nil {
		t.Fatal(err)
	}
	if len(xs) != 3 || !xs[0].Shared || xs[0].Name != "security.selinux" || xs[0].NameIndex != xattrIndexSecurity ||
		xs[0].StoredName != "selinux" || xs[1].Shared || xs[1].Name != overlayMetacopy || xs[1].StoredName != "overlay.metacopy" ||
		xs[2].Name != OverlayRedirect {
		t.Fatalf("Xattrs = %+v", xs)
	}
	// The shared entry is where the index says.
	sb := im.Superblock()
	off := int64(sb.XattrBlkAddr)*BlockSize + int64(xs[0].SharedIndex)*4
	raw := make([]byte, 4+len("selinux"))
	copy(raw, im.data[off:])
	if raw[1] != xattrIndexSecurity || string(raw[4:]) != "selinux" {
		t.Errorf("shared xattr %d not at %d: % x", xs[0].SharedIndex, off, raw)
	}
	payload, ok, err := im.Redirect(&ext)
	if err != nil || !ok || payload != "ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" {
		t.Errorf("Redirect = %q, %v, %v", payload, ok, err)
	}
	alg, digest, present, err := im.Metacopy(&ext)
	if err != nil || !present || alg != verity.SHA256 || hex.EncodeToString(digest) != "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" {
		t.Errorf("Metacopy = %v %x %v %v", alg, digest, present, err)
	}
	nodigest := lookupPath(t, im, "/a/nodigest")
	if _, d, present, err := im.Metacopy(&nodigest); !present || d != nil || err != nil {
		t.Errorf("Metacopy without digest = %x %v %v", d, present, err)
	}
	if v, found, err := im.GetXattr(&nodigest, "user.foo"); !found || err != nil || string(v) != "bar" {
		t.Errorf("GetXattr(user.foo) = %q %v %v", v, found, err)
	}
	if _, found, err := im.GetXattr(&nodigest, "user.fo"); found || err != nil {
		t.Errorf("GetXattr(user.fo) = %v %v", found, err)
	}
	inl := lookupPath(t, im, "/a/inl")
	if _, _, present, err := im.Metacopy(&inl); present || err != nil {
		t.Errorf("Metacopy of an inline file: %v %v", present, err)
	}
	if _, ok, err := im.Redirect(&inl); ok || err != nil {
		t.Errorf("Redirect of an inline file: %v %v", ok, err)
	}
	// Stubs at the root, not elsewhere.
	root, _ := im.Inode(im.RootNid())
	nid, _, err := im.Lookup(&root, "7f")
	if err != nil {
		t.Fatal(err)
	}
	stub, _ := im.Inode(nid)
	wh := lookupPath(t, im, "/a/wh")
	cdev := lookupPath(t, im, "/b sp/cdev")
	if !IsWhiteoutStub("7f", &stub) || IsWhiteoutStub("7F", &stub) || IsWhiteoutStub("wh", &wh) || IsWhiteoutStub("00", &cdev) {
		t.Error("IsWhiteoutStub")
	}
}

// TestLongPrefixes: an xattr naming an entry of the long prefix table
// (appended to an image) reads back with the prefix expanded.
func TestLongPrefixes(t *testing.T) {
	forExtraFeatures(t, []int{0, 1}, longPrefixes)
}

func longPrefixes(t *testing.T, base []byte) {
	nodigest := inodeAt(t, base, "/a/nodigest")
	data := append(bytes.Clone(base), make([]byte, BlockSize)...)
	tab := len(base)
	item := append([]byte{xattrIndexUser}, "long."...)
	littleEndian.PutUint16(data[tab:], uint16(len(item)))
	copy(data[tab+2:], item)
	item2 := append([]byte{xattrIndexTrusted}, "x."...)
	next := (tab + 2 + len(item) + 3) &^ 3
	littleEndian.PutUint16(data[next:], uint16(len(item2)))
	copy(data[next+2:], item2)
	data[superblockOffset+sbOffXattrPrefixCount] = 2
	littleEndian.PutUint32(data[superblockOffset+sbOffXattrPrefixStart:], uint32(tab/4))
	littleEndian.PutUint32(data[superblockOffset+sbOffFeatureIncompat:], featureIncompatXattrPrefixes)
	// Find the inline "user.foo" entry and point it at long prefix 0.
	im, err := NewImage(data)
	if err != nil {
		t.Fatal(err)
	}
	body := data[nodigest.xattrOff : nodigest.xattrOff+uint64(nodigest.xattrSize)]
	i := bytes.Index(body, []byte("\x03\x01\x03\x00foobar"))
	if i < 0 {
		t.Fatal("no inline user.foo entry")
	}
	body[i+1] = xattrLongPrefix | 0
	v, ok, err := im.GetXattr(&nodigest, "user.long.foo")
	if err != nil || !ok || string(v) != "bar" {
		t.Fatalf("GetXattr(user.long.foo) = %q %v %v", v, ok, err)
	}
	xs, _ := im.Xattrs(&nodigest)
	var names []string
	for _, x := range xs {
		names = append(names, x.Name)
		if x.Name == "user.long.foo" && (x.NameIndex != 0x80 || x.StoredName != "foo") {
			t.Errorf("long-prefixed xattr: %+v", x)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "user.long.foo") {
		t.Errorf("Xattrs: %q", names)
	}
	if p, err := im.longPrefixes(); err != nil || len(p) != 2 || p[1] != "trusted.x." {
		t.Errorf("prefix table %q, %v", p, err)
	}
}

// TestOpenClose: Open maps a file, Close unmaps it, and the header checks
// refuse what the reader does not support.
func TestOpenClose(t *testing.T) {
	forExtraFeatures(t, []int{1}, func(t *testing.T, base []byte) {
		path := filepath.Join(t.TempDir(), "image.cfs")
		if err := os.WriteFile(path, base, 0o644); err != nil {
			t.Fatal(err)
		}
		openClose(t, path)
	})
}

func openClose(t *testing.T, path string) {
	im, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if im.Size() != st.Size() || im.RootNid() != 36 || im.Header().Magic != composefsMagic ||
		im.Header().ComposefsVersion != 1 || im.Superblock().Magic != erofsMagic {
		t.Errorf("header/superblock: %+v %+v", im.Header(), im.Superblock())
	}
	if err := im.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := im.Inode(36); !errors.Is(err, fs.ErrClosed) {
		t.Errorf("Inode after Close: %v", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: %v", err)
	}
	if _, err := Open(t.TempDir()); err == nil {
		t.Error("Open of a directory succeeded")
	}
	if _, err := NewImage(make([]byte, 100)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("NewImage of 100 bytes: %v", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		off int
		v   byte
	}{{4, 2}, {12, 3}, {superblockOffset + sbOffBlkSzBits, 13}, {superblockOffset + sbOffFeatureIncompat, 0x80},
		{superblockOffset + sbOffExtraDevices, 1}} {
		d := bytes.Clone(b)
		d[c.off] = c.v
		if _, err := NewImage(d); !errors.Is(err, ErrUnsupported) {
			t.Errorf("byte %d = %d: %v, want ErrUnsupported", c.off, c.v, err)
		}
	}
}
