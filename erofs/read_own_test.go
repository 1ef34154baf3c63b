package erofs

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// ownDump is a tree for the reader's tests that need no golden data: the
// project's writer images it in each layout version. It has what the
// reader must handle, each at a path the tests name:
//   - /a: files of every kind at the paths TestReadAtSemantics and
//     TestXattrsAndComposefs look at (also present in C's extra-features
//     image, which those tests read as well when the golden data is there);
//   - /big: a directory spanning several blocks, an inline file over a
//     block (plain blocks and a tail; V0 and V1 only), a symlink near
//     PATH_MAX, external
//     files large enough to be chunked, with and without a digest;
//   - shared xattrs (one value on many inodes) and inline ones, an
//     overlay xattr that the writer escapes, owners beyond 16 bits and
//     sizes beyond 32 (extended inodes) beside small ones (compact).
func ownDump(v int) string {
	var b strings.Builder
	const sel = "security.selinux=system_u:object_r:usr_t:s0\\x00"
	digest := "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	lines := []string{
		"/ 0 40755 4 0 0 0 1000.0 - - - " + sel,
		"/a 0 40755 2 0 0 0 1000.0 - - - " + sel,
		"/a/ext1 4096 100644 2 0 0 0 1000.0 ab/" + digest[2:] + " - " + digest + " " + sel,
		"/a/hl 4096 @100644 2 0 0 0 1000.0 /a/ext1 - - ",
		"/a/nodigest 12345678901 100644 1 70000 70000 0 2000.5 12/3456 - - user.foo=bar trusted.overlay.opaque=y",
		"/a/inl 5 100600 1 0 0 0 1000.0 - hello - ",
		"/a/empty 0 100600 1 0 0 0 1000.0 - - - ",
		"/a/wh 0 20000 1 0 0 0 1000.0 - - - ",
		"/a/lnk 7 120777 1 0 0 0 1000.0 /target - - ",
		"/b\\x20sp 0 40700 2 5 6 0 999.123 - - - user.x=\\x3d\\x00\\xff",
		"/b\\x20sp/fifo 0 10644 1 0 0 0 1000.0 - - - ",
		"/b\\x20sp/cdev 0 20644 1 0 0 259 1000.0 - - - ",
		"/b\\x20sp/bdev 0 60600 1 0 6 2049 1000.0 - - - " + sel,
		"/big 0 40755 2 0 0 0 1000.0 - - - ",
	}
	b.WriteString(strings.Join(lines, "\n") + "\n")
	// Over a block (C's writer inlines up to 5000 bytes): a full block and
	// an 800-byte tail. V2 keeps inline data within one block.
	blocks := BlockSize + 800
	if v == 2 {
		blocks = 3000
	}
	fmt.Fprintf(&b, "/big/blocks %d 100644 1 0 0 0 1000.0 - %s - \n", blocks, strings.Repeat("0123456789abcdef", blocks/16+1)[:blocks])
	fmt.Fprintf(&b, "/big/chunked %d 100644 1 0 0 0 1000.0 cd/%s - %s \n", int64(1)<<36, digest[4:]+"ef", "ef"+digest[2:])
	fmt.Fprintf(&b, "/big/longlink %d 120777 1 0 0 0 1000.0 %s - - \n", 4000, strings.Repeat("l/", 2000))
	for i := range 300 {
		fmt.Fprintf(&b, "/big/name-%03d-%s 0 100644 1 %d 0 0 %d.%d - - - %s\n", i, strings.Repeat("n", i%40), i, 1000+i, i, sel)
	}
	return b.String()
}

// ownImage is the project's image of ownDump in layout version v, and the
// entries it was made from.
func ownImage(t testing.TB, v int) ([]byte, []dumpfile.Entry) {
	t.Helper()
	entries, err := dumpfile.ParseAll(strings.NewReader(ownDump(v)), dumpfile.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return writeImage(t, entries, WriteOptions{MinVersion: v, MaxVersion: v}), entries
}

// newImage opens image bytes the test knows to be sound.
func newImage(t testing.TB, data []byte) *Image {
	t.Helper()
	im, err := NewImage(data)
	if err != nil {
		t.Fatalf("NewImage: %v", err)
	}
	return im
}

// forExtraFeatures runs fn over the images TestReadAtSemantics and its
// kind look into: ours in each version listed, then C's extra-features V1
// image (a subtest that skips without the golden data).
func forExtraFeatures(t *testing.T, versions []int, fn func(t *testing.T, base []byte)) {
	for _, v := range versions {
		t.Run(fmt.Sprintf("own/v%d", v), func(t *testing.T) {
			base, _ := ownImage(t, v)
			fn(t, base)
		})
	}
	t.Run("golden/extra-features.v1", func(t *testing.T) {
		fn(t, loadGolden(t, "c/images/extra-features.v1.cfs"))
	})
}

// TestOwnImages reads our images of ownDump back through the reader's
// inode-level API, entry by entry, against the dump they were made from,
// and checks that they hold every on-disk form the reader must decode: a
// test of the reader that needs nothing beside the repository.
func TestOwnImages(t *testing.T) {
	for v := range 3 {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			data, entries := ownImage(t, v)
			im := newImage(t, data)
			forms := map[string]int{}
			nids := map[string]uint64{}
			for _, e := range entries {
				in := lookupPath(t, im, e.Path)
				nids[e.Path] = in.Nid
				if e.Hardlink != "" {
					if in.Nid != nids[e.Hardlink] {
						t.Errorf("%s: inode %d, but it is a hardlink to %s (inode %d)", e.Path, in.Nid, e.Hardlink, nids[e.Hardlink])
					}
					forms["hardlink"]++
					continue
				}
				checkOwnEntry(t, im, &in, &e, forms)
			}
			want := []string{"extended inode", "flat plain", "flat inline", "chunk based",
				"multi-block directory", "shared xattr", "inline xattr", "symlink", "device", "hardlink", "external", "inline file"}
			if v < 2 {
				// V2 writes every inode extended and keeps inline data
				// within a block.
				want = append(want, "compact inode", "inline file over a block")
			}
			for _, f := range want {
				if forms[f] == 0 {
					t.Errorf("no %s in the image", f)
				}
			}
			t.Logf("forms read: %v", forms)
		})
	}
}

// checkOwnEntry compares one inode with the entry it was written from, and
// counts the on-disk forms it shows in forms.
func checkOwnEntry(t *testing.T, im *Image, in *Inode, e *dumpfile.Entry, forms map[string]int) {
	t.Helper()
	if in.Extended {
		forms["extended inode"]++
	} else {
		forms["compact inode"]++
	}
	switch in.Layout {
	case LayoutFlatPlain:
		forms["flat plain"]++
	case LayoutFlatInline:
		forms["flat inline"]++
	case LayoutChunkBased:
		forms["chunk based"]++
	}
	if !e.IsWhiteout() && (in.Mode != e.Mode || in.UID != e.UID || in.GID != e.GID) {
		t.Errorf("%s: mode %o uid %d gid %d, written %o %d %d", e.Path, in.Mode, in.UID, in.GID, e.Mode, e.UID, e.GID)
	}
	if !e.IsDir() && in.Size != e.Size {
		t.Errorf("%s: size %d, written %d", e.Path, in.Size, e.Size)
	}
	xs, err := im.Xattrs(in)
	if err != nil {
		t.Fatalf("%s: Xattrs: %v", e.Path, err)
	}
	for _, x := range xs {
		if x.Shared {
			forms["shared xattr"]++
		} else {
			forms["inline xattr"]++
		}
	}
	for _, x := range e.Xattrs {
		if strings.HasPrefix(x.Name, "trusted.overlay.") {
			continue // escaped on disk: the dump walk's business
		}
		if v, found, err := im.GetXattr(in, x.Name); err != nil || !found || !bytes.Equal(v, x.Value) {
			t.Errorf("%s: GetXattr(%q) = %q, %v, %v; written %q", e.Path, x.Name, v, found, err, x.Value)
		}
	}
	switch {
	case e.IsDir():
		if in.blocks() > 1 {
			forms["multi-block directory"]++
		}
	case e.IsSymlink():
		forms["symlink"]++
		if target, err := im.Readlink(in); err != nil || target != e.Payload {
			t.Errorf("%s: Readlink = %.40q…, %v; written %.40q…", e.Path, target, err, e.Payload)
		}
	case e.Type() == dumpfile.TypeChar && !e.IsWhiteout() || e.Type() == dumpfile.TypeBlock:
		forms["device"]++
		if uint64(in.Rdev) != e.Rdev {
			t.Errorf("%s: rdev %#x, written %#x", e.Path, in.Rdev, e.Rdev)
		}
	case e.IsExternal():
		forms["external"]++
		payload, ok, err := im.Redirect(in)
		if err != nil || !ok || payload != e.Payload {
			t.Errorf("%s: Redirect = %q, %v, %v; written %q", e.Path, payload, ok, err, e.Payload)
		}
		_, digest, present, err := im.Metacopy(in)
		if err != nil || !present || hex.EncodeToString(digest) != e.Digest {
			t.Errorf("%s: Metacopy = %x, %v, %v; written %q", e.Path, digest, present, err, e.Digest)
		}
	case e.IsRegular() && len(e.Content) > 0:
		forms["inline file"]++
		if in.Size > BlockSize {
			forms["inline file over a block"]++
		}
		got := make([]byte, in.Size+10)
		if n, err := im.ReadAt(in, got, 0); err != io.EOF || !bytes.Equal(got[:n], e.Content) {
			t.Errorf("%s: read %d bytes (%v), differ from what was written", e.Path, n, err)
		}
		// Reads straddling each block boundary.
		for b := int64(BlockSize); b < int64(in.Size); b += BlockSize {
			part := make([]byte, 100)
			n, err := im.ReadAt(in, part, b-50)
			if err != nil && err != io.EOF || !bytes.Equal(part[:n], e.Content[b-50:min(int64(len(e.Content)), b+50)]) {
				t.Errorf("%s: read across block boundary %d: %v", e.Path, b, err)
			}
		}
	}
}
