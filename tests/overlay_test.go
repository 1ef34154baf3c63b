package tests

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// plainErofsImage images src with mkfs.erofs, which writes whatever xattrs
// it finds, unescaped: the way to put overlayfs' own xattrs (whiteouts,
// metacopy without redirect, relative redirects...) in an image, which no
// composefs writer does. A composefs header in the unused first bytes
// makes it a composefs image.
func plainErofsImage(t *testing.T, src string) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.erofs")
	if err != nil {
		t.Skip("mkfs.erofs not installed (apt-get install -y erofs-utils)")
	}
	img := filepath.Join(tempDir(t, "image"), "plain.cfs")
	if out, err := run(t, time.Minute, mkfs, "--quiet", img, src); err != nil {
		t.Fatalf("mkfs.erofs: %v\n%s", err, out)
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xd078629a) // magic
	binary.LittleEndian.PutUint32(hdr[4:], 1)          // header version
	binary.LittleEndian.PutUint32(hdr[12:], 1)         // composefs_version
	if _, err := f.WriteAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestOverlaySemantics compares composefs-fuse with the kernel on what
// overlayfs makes of its own xattrs and of whiteouts, wherever they are.
func TestOverlaySemantics(t *testing.T) {
	requireRoot(t)
	src := tempDir(t, "src")
	objects := tempDir(t, "objects")
	o := newObject([]byte("the object's content, longer than the stub"))
	o.Put(t, objects, o.Content)

	type node struct {
		path   string
		kind   byte // d dir, f file, c chardev 0/0, s symlink
		data   string
		xattrs map[string]string
	}
	mc := string([]byte{})
	nodes := []node{
		{"wh-root", 'c', "", nil},
		{"xw-root", 'f', "", map[string]string{"trusted.overlay.whiteout": ""}},
		{"d", 'd', "", map[string]string{"trusted.overlay.whiteouts": "", "user.overlay.whiteouts": ""}},
		{"d/wh", 'c', "", nil},
		{"d/xw", 'f', "", map[string]string{"trusted.overlay.whiteout": ""}},
		{"d/xw-nonempty", 'f', "data", map[string]string{"trusted.overlay.whiteout": ""}},
		{"d/xw-user", 'f', "", map[string]string{"user.overlay.whiteout": ""}},
		{"d/escaped", 'f', "", map[string]string{"trusted.overlay.overlay.whiteout": "", "trusted.overlay.overlay.x": "1"}},
		{"opaque", 'd', "", map[string]string{"trusted.overlay.opaque": "y"}},
		{"opaque/wh", 'c', "", nil},
		{"opaque/f", 'f', "x", nil},
		{"redirdir", 'd', "", map[string]string{"trusted.overlay.redirect": "/elsewhere"}},
		{"redirdir/f", 'f', "y", nil},
		{"external", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "/" + o.Payload}},
		{"external-missing", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "/00/00"}},
		{"metacopy-only", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc}},
		{"metacopy-relative", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": o.Payload}},
		{"metacopy-bad", 'f', "stub", map[string]string{"trusted.overlay.metacopy": "abc", "trusted.overlay.redirect": "/" + o.Payload}},
		{"metacopy-root-redirect", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "/"}},
		{"metacopy-double-slash", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "/ab//cd"}},
		{"metacopy-trailing-slash", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "/" + o.Payload + "/"}},
		{"metacopy-name", 'f', "stub", map[string]string{"trusted.overlay.metacopy": mc, "trusted.overlay.redirect": "name"}},
		{"badredirdir", 'd', "", map[string]string{"trusted.overlay.redirect": "x/y"}},
		{"relredirdir", 'd', "", map[string]string{"trusted.overlay.redirect": "x"}},
		{"redirect-invalid", 'f', "own", map[string]string{"trusted.overlay.redirect": "x/y"}},
		{"redirect-only", 'f', "own data", map[string]string{"trusted.overlay.redirect": "/" + o.Payload}},
		{"private", 'f', "p", map[string]string{"trusted.overlay.origin": "o", "trusted.overlay.impure": "y", "trusted.overlay.nlink": "2", "trusted.other": "t", "security.x": "s"}},
		{"link", 's', "target", nil},
	}
	for _, n := range nodes {
		p := filepath.Join(src, n.path)
		var err error
		switch n.kind {
		case 'd':
			err = os.Mkdir(p, 0o755)
		case 'f':
			err = os.WriteFile(p, []byte(n.data), 0o644)
		case 'c':
			err = unix.Mknod(p, unix.S_IFCHR|0o644, 0)
		case 's':
			err = os.Symlink(n.data, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range n.xattrs {
			if err := unix.Lsetxattr(p, k, []byte(v), 0); err != nil {
				t.Fatalf("%s: setxattr %s: %v", n.path, k, err)
			}
		}
	}
	image := plainErofsImage(t, src)
	kernel := kernelMount(t, image, objects)
	// With passthrough, the object is read as overlayfs reads it: to its
	// own end, 42 bytes for "external", whose inode in the image says 4.
	ours := fuseMount(t, image, "--basedir", objects, "--verity=off", "--passthrough")
	withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
	// By default reads go through the kernel's page cache of the FUSE
	// file, which ends where its inode does: the first 4 bytes. Nothing
	// else differs.
	ours = fuseMount(t, image, "--basedir", objects, "--verity=off")
	withWatchdog(t, ours, time.Minute, func() { compareTreesExcept(t, kernel, ours, []string{"/external: Content"}) })
}
