package tests

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/verity"
)

// mkVariant is one way of running mkcomposefs on the source tree.
type mkVariant struct {
	name string
	args []string
	// version is the composefs_version the image must have.
	version uint32
	// hardlinks: files hardlinked in the source stay one inode.
	hardlinks bool
	// The source options: --use-epoch, --skip-devices, --user-xattrs,
	// --skip-xattrs.
	useEpoch, skipDevices, userXattrs, skipXattrs bool
}

var mkVariants = []mkVariant{
	// C's defaults (min 0, max 1): the tree's whiteouts lift it to 1.
	{name: "default", version: 1},
	{name: "v0", args: []string{"--min-version=0", "--max-version=0", "--threads=1"}, version: 0},
	{name: "v1", args: []string{"--min-version=1"}, version: 1},
	{name: "hardlinks", args: []string{"--hardlinks"}, version: 1, hardlinks: true},
	// Without devices there is no whiteout to lift the version.
	{name: "epoch-nodev-userxattrs", args: []string{"--use-epoch", "--skip-devices", "--user-xattrs"}, version: 0,
		useEpoch: true, skipDevices: true, userXattrs: true},
	{name: "skip-xattrs", args: []string{"--skip-xattrs"}, version: 1, skipXattrs: true},
	// Version 2 keeps symlink targets inline: the longest ones are taken
	// out of the tree before these (see TestMkcomposefsFromDirectory).
	{name: "v2", args: []string{"--min-version=2", "--max-version=2"}, version: 2},
	{name: "v2-hardlinks", args: []string{"--min-version=2", "--max-version=2", "--hardlinks"}, version: 2, hardlinks: true},
}

// TestMkcomposefsFromDirectory images a real directory tree with the
// mkcomposefs command (objects in a fresh --digest-store), in every layout
// version and with --hardlinks, mounts each image with the kernel (EROFS,
// then overlayfs with the store as data-only layer) and checks that the
// mount shows the source tree: names, types, modes, owners, sizes, device
// numbers, mtimes, symlink targets, contents and xattrs (the user's own
// trusted.overlay.* under their own names). fsck.erofs must accept every
// image and every object must be named by its fs-verity digest.
//
// Where the mount shows something else by design:
//   - a directory's size and link count are the image's own;
//   - files hardlinked in the source are separate inodes (nlink 1) unless
//     --hardlinks, as C mkcomposefs;
//   - version 2 keeps whole seconds of mtimes (as composefs-rs);
//   - a whiteout (chardev 0/0) is, in versions 0 and 1, an empty regular
//     file marked trusted.overlay.whiteout and user.overlay.whiteout, its
//     directory marked ...overlay.whiteouts (and ...overlay.opaque=x in
//     version 1): C's escaped whiteouts, which act when this mount is a
//     lower layer of another overlay. In version 2 it stays a whiteout, which
//     overlayfs hides from lookup.
func TestMkcomposefsFromDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes device nodes, sets owners and trusted.* xattrs, mounts EROFS and overlayfs")
	}
	mk := buildCmd(t, "mkcomposefs")
	fsck, err := exec.LookPath("fsck.erofs")
	if err != nil {
		t.Log("fsck.erofs not installed (apt-get install -y erofs-utils): images not checked by it")
	}
	src := tempDir(t, "src")
	tree := buildSourceTree(t, src)
	source := takeSnapshot(t, src)
	if n := len(source.Entries); n != len(tree.paths)+1 {
		t.Fatalf("source snapshot has %d paths, built %d", n, len(tree.paths)+1)
	}
	trimmed := false
	for _, v := range mkVariants {
		if v.version == 2 && !trimmed {
			t.Run("v2-refuses-long-symlink", func(t *testing.T) { checkV2RefusesLongSymlink(t, mk, src) })
			// The tree without what version 2 cannot hold, for the rest.
			tree.removeLinks(t, "/links/len-4050", "/links/len-4095")
			source, trimmed = takeSnapshot(t, src), true
		}
		t.Run(v.name, func(t *testing.T) {
			// mkcomposefs creates the store directory, as C does.
			store := filepath.Join(tempDir(t, "store"), "objects")
			img := filepath.Join(tempDir(t, "image"), "image.cfs")
			args := append(append([]string{"--digest-store=" + store}, v.args...), src, img)
			if out, err := run(t, time.Minute, mk, args...); err != nil {
				t.Fatalf("mkcomposefs %q: %v\n%s", args, err, out)
			}
			checkComposefsVersion(t, img, v.version)
			if fsck != "" {
				if out, err := run(t, time.Minute, fsck, img); err != nil {
					t.Errorf("fsck.erofs %s: %v\n%s", v.name, err, out)
				}
			}
			checkStore(t, store)
			mnt := kernelMount(t, img, store)
			want := expectedView(source, v)
			got := takeSnapshot(t, mnt)
			diffs := viewDiffs(want, got)
			for i, d := range diffs {
				if i == 40 {
					t.Errorf("... and %d more differences", len(diffs)-i)
					break
				}
				t.Errorf("mount differs from the source: %s", d)
			}
			if len(diffs) == 0 {
				t.Logf("%d paths as the source has them (%d left out, %d whiteouts hidden)", len(want.Entries), len(want.hidden), len(want.whiteouts))
			}
		})
	}
}

// checkComposefsVersion reads the composefs header's version field.
func checkComposefsVersion(t *testing.T, img string, want uint32) {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [16]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		t.Fatalf("%s: header: %v", img, err)
	}
	if m := binary.LittleEndian.Uint32(hdr[0:]); m != 0xd078629a {
		t.Fatalf("%s: composefs magic %#x", img, m)
	}
	if v := binary.LittleEndian.Uint32(hdr[12:]); v != want {
		t.Errorf("composefs_version %d, want %d", v, want)
	}
}

// checkStore: every object of the digest store is a regular file named
// XX/REST after its own fs-verity digest.
func checkStore(t *testing.T, store string) {
	t.Helper()
	n := 0
	err := filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(store, p)
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		digest, err := verity.DigestFile(verity.SHA256, f)
		if err != nil {
			return err
		}
		h := hex.EncodeToString(digest)
		if !d.Type().IsRegular() || rel != h[:2]+"/"+h[2:] {
			t.Errorf("store object %s (%v) has digest %s", rel, d.Type(), h)
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("digest store: %v", err)
	}
	if n == 0 {
		t.Error("the digest store is empty")
	}
}

// expectedSnapshot is the view a mount should give of the source: a
// snapshot, the paths left out of the image and the whiteouts overlayfs
// hides.
type expectedSnapshot struct {
	*snapshot
	hidden, whiteouts map[string]bool
}

const emptyContent = "0 bytes e3b0c44298fc1c149afbf4c8" // contentHash of nothing

// expectedView predicts the mount of an image of the source tree.
func expectedView(src *snapshot, v mkVariant) expectedSnapshot {
	want := expectedSnapshot{
		snapshot:  &snapshot{Entries: map[string]*entryRecord{}, Listings: map[string][]string{}},
		hidden:    map[string]bool{},
		whiteouts: map[string]bool{},
	}
	whiteoutDirs := map[string]bool{}
	for p, e := range src.Entries {
		c := *e
		c.Xattrs = slices.Clone(e.Xattrs)
		c.Ino, c.DirIno = 0, 0
		switch {
		case v.useEpoch:
			c.Mtime = [2]int64{}
		case v.version == 2:
			c.Mtime[1] = 0
		}
		switch {
		case v.skipXattrs:
			c.Xattrs = nil
		case v.userXattrs:
			c.Xattrs = slices.DeleteFunc(c.Xattrs, func(x string) bool { return !strings.HasPrefix(x, "user.") })
		}
		if t := e.Mode & unix.S_IFMT; v.skipDevices && (t == unix.S_IFCHR || t == unix.S_IFBLK) {
			want.hidden[p] = true
			continue
		}
		switch {
		case e.Mode&unix.S_IFMT == unix.S_IFDIR:
			c.Size, c.Nlink = 0, 0
		case !v.hardlinks:
			c.Nlink, c.Hardlinks = 1, p
		}
		if e.Mode&unix.S_IFMT == unix.S_IFCHR && e.Rdev == 0 {
			if v.version == 2 {
				want.whiteouts[p] = true
				continue
			}
			c.Mode = unix.S_IFREG | e.Mode&0o7777
			c.DirType, c.Rdev, c.Size, c.Content = unix.DT_REG, 0, 0, emptyContent
			c.Xattrs = append(c.Xattrs, "trusted.overlay.whiteout=", "user.overlay.whiteout=")
			whiteoutDirs[filepath.Dir(p)] = true
		}
		want.Entries[p] = &c
	}
	for d := range whiteoutDirs {
		e := want.Entries[d]
		e.Xattrs = append(e.Xattrs, "trusted.overlay.whiteouts=", "user.overlay.whiteouts=")
		if v.version == 1 {
			e.Xattrs = append(e.Xattrs, "trusted.overlay.opaque=78", "user.overlay.opaque=78")
		}
	}
	for d, names := range src.Listings {
		want.Listings[d] = slices.DeleteFunc(slices.Clone(names), func(n string) bool {
			p := filepath.Join(d, n)
			return want.hidden[p] || want.whiteouts[p]
		})
	}
	return want
}

// viewDiffs lists how the mount (got) differs from the expectation. A
// whiteout may be listed by readdir (overlayfs passes the listing of a
// directory with no layer below it through) but must not be found.
func viewDiffs(want expectedSnapshot, got *snapshot) []string {
	var diffs []string
	for p := range want.whiteouts {
		if g, ok := got.Entries[p]; ok {
			if g.StatErr != "ENOENT" {
				diffs = append(diffs, fmt.Sprintf("%s: whiteout visible (%+v)", p, *g))
			}
			delete(got.Entries, p)
		}
	}
	for d, names := range got.Listings {
		got.Listings[d] = slices.DeleteFunc(names, func(n string) bool { return want.whiteouts[filepath.Join(d, n)] })
	}
	sorted := unionKeys(want.Entries, got.Entries)
	for _, p := range sorted {
		w, g := want.Entries[p], got.Entries[p]
		switch {
		case w == nil:
			diffs = append(diffs, fmt.Sprintf("%q: in the mount only", p))
			continue
		case g == nil:
			diffs = append(diffs, fmt.Sprintf("%q: missing from the mount", p))
			continue
		}
		gc := *g
		gc.Ino, gc.DirIno = 0, 0
		if gc.Mode&unix.S_IFMT == unix.S_IFDIR {
			gc.Size, gc.Nlink = 0, 0
		}
		// Listing order is the file system's own.
		gc.Xattrs = sortedCopy(g.Xattrs)
		wc := *w
		wc.Xattrs = sortedCopy(w.Xattrs)
		wv, gv := reflect.ValueOf(wc), reflect.ValueOf(gc)
		for i := range wv.NumField() {
			if !reflect.DeepEqual(wv.Field(i).Interface(), gv.Field(i).Interface()) {
				diffs = append(diffs, fmt.Sprintf("%q: %s is %v in the mount, %v expected", p, wv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface()))
			}
		}
	}
	for d, wl := range want.Listings {
		if gl := got.Listings[d]; !slices.Equal(wl, gl) {
			diffs = append(diffs, fmt.Sprintf("%q: listing %q in the mount, %q expected", d, gl, wl))
		}
	}
	return diffs
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	if len(c) == 0 {
		return nil
	}
	return c
}

// checkV2RefusesLongSymlink: version 2 keeps a symlink's target inline
// with its inode, so a 4095-byte target cannot be written; mkcomposefs must
// say which and leave no image.
func checkV2RefusesLongSymlink(t *testing.T, mk, src string) {
	img := filepath.Join(tempDir(t, "image"), "image.cfs")
	out, err := run(t, time.Minute, mk, "--min-version=2", "--max-version=2", src, img)
	if err == nil {
		t.Fatalf("mkcomposefs --min-version=2 wrote an image with a 4095-byte symlink target")
	}
	if !strings.Contains(out, "/links/len-4095") && !strings.Contains(out, "/links/len-4050") {
		t.Errorf("message does not name the symlink: %s", out)
	}
	if _, err := os.Stat(img); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed run left %s (%v)", img, err)
	}
}
