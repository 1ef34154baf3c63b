package erofs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
)

// normEntry is what a path should look like after a write and a read:
// the fields an image keeps, in a comparable form.
type normEntry struct {
	mode, uid, gid, nlink uint32
	size, rdev            uint64
	mtime                 dumpfile.Timespec
	payload, digest       string
	content               string
	xattrs                string
	names                 string // all names of the inode, sorted
}

func xattrString(xs []dumpfile.Xattr) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = fmt.Sprintf("%q=%q", x.Name, x.Value)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// owners maps every path to the path of the entry holding its inode.
func owners(entries []dumpfile.Entry) map[string]string {
	link := map[string]string{}
	for _, e := range entries {
		if e.Hardlink != "" {
			link[e.Path] = e.Hardlink
		}
	}
	own := map[string]string{}
	for _, e := range entries {
		p := e.Path
		for i := 0; i <= len(link); i++ {
			t, ok := link[p]
			if !ok {
				break
			}
			p = t
		}
		own[e.Path] = p
	}
	return own
}

// expectEntries predicts the reader's view of what was written.
func expectEntries(entries []dumpfile.Entry, version int) map[string]normEntry {
	own := owners(entries)
	byPath := map[string]*dumpfile.Entry{}
	for i := range entries {
		byPath[entries[i].Path] = &entries[i]
	}
	names := map[string][]string{}
	for p, o := range own {
		names[o] = append(names[o], p)
	}
	// Directories holding a whiteout gain opaque=x in version 1.
	whiteoutDirs := map[string]bool{}
	for _, e := range entries {
		if e.Hardlink == "" && e.Mode&ModeFmt == ModeChr && uint32(e.Rdev) == 0 {
			whiteoutDirs[parentPath(e.Path)] = true
		}
	}
	subdirs := map[string]uint32{}
	for _, e := range entries {
		if e.Hardlink == "" && e.Mode&ModeFmt == ModeDir && e.Path != "/" {
			subdirs[parentPath(e.Path)]++
		}
	}
	out := map[string]normEntry{}
	for p, o := range own {
		e := byPath[o]
		n := normEntry{mode: e.Mode & 0o177777, uid: e.UID, gid: e.GID, mtime: e.Mtime, nlink: e.Nlink}
		xs := slices.Clone(e.Xattrs)
		ft := e.Mode & ModeFmt
		switch ft {
		case ModeDir:
			n.nlink = 2 + subdirs[o]
			if version == 1 && whiteoutDirs[o] {
				xs = append(xs, dumpfile.Xattr{Name: overlayOpaque, Value: []byte("x")}, dumpfile.Xattr{Name: userOverlayOpaque, Value: []byte("x")})
			}
		case ModeReg:
			n.size = e.Size
			if len(e.Content) > 0 {
				n.content = string(e.Content)
			} else if e.Size > 0 || version == 2 {
				n.payload, n.digest = e.Payload, e.Digest
			}
		case ModeLnk:
			n.size = uint64(len(e.Payload))
			n.payload = e.Payload
		case ModeChr, ModeBlk:
			n.rdev = uint64(uint32(e.Rdev))
		}
		if version == 2 {
			n.mtime.Nsec = 0
			if ft != ModeDir {
				n.nlink = uint32(len(names[o]))
			}
		}
		n.xattrs = xattrString(xs)
		nm := slices.Clone(names[o])
		slices.Sort(nm)
		n.names = strings.Join(nm, "\x00")
		out[p] = n
	}
	return out
}

func parentPath(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// readBack is the reader's view in the same form.
func readBack(entries []dumpfile.Entry) map[string]normEntry {
	own := owners(entries)
	names := map[string][]string{}
	for p, o := range own {
		names[o] = append(names[o], p)
	}
	byPath := map[string]*dumpfile.Entry{}
	for i := range entries {
		byPath[entries[i].Path] = &entries[i]
	}
	out := map[string]normEntry{}
	for p, o := range own {
		e := byPath[o]
		n := normEntry{mode: e.Mode, uid: e.UID, gid: e.GID, mtime: e.Mtime, nlink: e.Nlink,
			rdev: e.Rdev, payload: e.Payload, digest: e.Digest, content: string(e.Content), xattrs: xattrString(e.Xattrs)}
		if e.Mode&ModeFmt != ModeDir {
			n.size = e.Size
		}
		nm := slices.Clone(names[o])
		slices.Sort(nm)
		n.names = strings.Join(nm, "\x00")
		out[p] = n
	}
	return out
}

func fsckPath(t testing.TB) string {
	p, err := exec.LookPath("fsck.erofs")
	if err != nil {
		return ""
	}
	return p
}

// fsckImage runs fsck.erofs on an image when it is installed.
func fsckImage(t testing.TB, fsck string, img []byte) {
	t.Helper()
	if fsck == "" {
		return
	}
	f := filepath.Join(t.TempDir(), "img.cfs")
	if err := os.WriteFile(f, img, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fsck, f).CombinedOutput(); err != nil {
		t.Errorf("fsck.erofs: %v\n%s", err, out)
	}
}

// TestWriteRandomTrees: random trees written in every version read back
// as what was written, and fsck.erofs accepts the images.
func TestWriteRandomTrees(t *testing.T) {
	fsck := fsckPath(t)
	if fsck == "" {
		t.Log("fsck.erofs not installed: images not checked by it")
	}
	seeds := 25
	if testing.Short() {
		seeds = 5
	}
	for _, version := range []int{0, 1, 2} {
		for seed := range seeds {
			t.Run(fmt.Sprintf("v%d/seed%d", version, seed), func(t *testing.T) {
				entries := newTreeGen(uint64(seed*3+version), version == 2).generate(600)
				opts := WriteOptions{MinVersion: version, MaxVersion: version}
				img := writeImage(t, entries, opts)
				// Writing is deterministic.
				if again := writeImage(t, entries, opts); !bytes.Equal(img, again) {
					t.Fatal("two writes of the same tree differ")
				}
				got, h := walkEntries(t, img)
				if int(h.ComposefsVersion) != version {
					t.Fatalf("composefs_version %d, want %d", h.ComposefsVersion, version)
				}
				want := expectEntries(entries, version)
				have := readBack(got)
				compareNorm(t, want, have)
				fsckImage(t, fsck, img)
				// And the read-back tree writes the same image.
				if again := writeImage(t, got, opts); !bytes.Equal(img, again) {
					t.Errorf("image → entries → image differs at byte %d", firstDiff(img, again))
				}
			})
		}
	}
}

func compareNorm(t *testing.T, want, have map[string]normEntry) {
	t.Helper()
	bad := 0
	for p, w := range want {
		h, ok := have[p]
		switch {
		case !ok:
			t.Errorf("%q missing from the image", p)
		case h != w:
			t.Errorf("%q:\n got %+v\nwant %+v", p, h, w)
		default:
			continue
		}
		if bad++; bad > 5 {
			t.FailNow()
		}
	}
	for p := range have {
		if _, ok := want[p]; !ok {
			t.Errorf("%q in the image but not in the tree", p)
		}
	}
}
