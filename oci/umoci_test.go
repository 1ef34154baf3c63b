package oci

import (
	"archive/tar"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/verity"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// umoci unpack is the oracle for the layer rules: the same layers, put
// into an OCI layout and unpacked by umoci, give the tree the Builder
// gives with TransformNone.
func TestUmociOracle(t *testing.T) {
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skip("umoci not installed (Debian package umoci)")
	}
	if os.Getuid() != 0 {
		t.Skip("needs root: umoci unpacks owners, devices and trusted.* xattrs only as root")
	}
	big := strings.Repeat("a larger file ", 40)
	ns := time.Unix(1690000000, 987654321)
	layers := [][]byte{
		layer(t,
			dir("./", 0o755),
			dir("bin/", 0o755),
			with(file("bin/tool", big), func(h *tar.Header) {
				h.Mode, h.Uid, h.Gid, h.ModTime = 0o4750, 1000, 100, ns
				h.PAXRecords = map[string]string{
					"SCHILY.xattr.user.kind":           "tool",
					"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
				}
			}),
			hardlink("bin/tool-link", "bin/tool"),
			symlink("bin/sh", "tool"),
			dir("etc/", 0o755), file("etc/hostname", "host\n"), file("etc/gone", "gone"),
			dir("var/", 0o755), dir("var/cache/", 0o700), file("var/cache/a", "a"), dir("var/cache/sub/", 0o755), file("var/cache/sub/b", "b"),
			dir("dev/", 0o755),
			ent{hdr: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: epoch}},
			ent{hdr: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop0", Mode: 0o660, Devmajor: 7, Devminor: 0, ModTime: epoch}},
			ent{hdr: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/pipe", Mode: 0o600, ModTime: epoch}},
			dir("tmp/", 0o1777),
			dir("swap/", 0o755), file("swap/x", "x"),
			dir("opq/", 0o755), file("opq/old", "old"),
		),
		layer(t,
			file("etc/.wh.gone", ""),
			dir("var/cache/", 0o750),
			file("var/cache/.wh..wh..opq", ""),
			file("var/cache/new", "new"),
			hardlink("etc/tool-too", "bin/tool"), // to a lower layer's file
			file("swap", "a file where a directory was"),
			dir("bin/", 0o755),
			// The opaque marker after an entry of its own layer hides
			// only the lower layer's.
			file("opq/mine", "mine"), file("opq/.wh..wh..opq", ""),
		),
		layer(t,
			dir("swap/", 0o700), file("swap/again", "again"),
			file("bin/.wh.tool", ""), // the other names keep the inode
		),
	}
	b := build(t, memStore{}, layers...)
	want := showAll(entriesOf(t, b, TransformNone))

	work := t.TempDir()
	image := filepath.Join(work, "image")
	run(t, "umoci", "init", "--layout", image)
	run(t, "umoci", "new", "--image", image+":test")
	for _, l := range layers {
		p := filepath.Join(work, "layer.tar")
		require.NoError(t, os.WriteFile(p, l, 0o644))
		run(t, "umoci", "raw", "add-layer", "--image", image+":test", p)
	}
	bundle := filepath.Join(work, "bundle")
	run(t, "umoci", "unpack", "--image", image+":test", bundle)
	got := showAll(scanTree(t, filepath.Join(bundle, "rootfs")))
	// The root's mtime is umoci's to set (it makes the directory).
	want[0] = want[0][:strings.LastIndexByte(want[0], ' ')]
	got[0] = got[0][:strings.LastIndexByte(got[0], ' ')]
	assert.Equal(t, want, got)
	t.Logf("umoci's tree:\n%s", strings.Join(got, "\n"))
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
}

// scanTree describes a directory tree as Entries describes the Builder's:
// dumpfile order, hardlinks as Hardlink to the first name.
func scanTree(t *testing.T, root string) []dumpfile.Entry {
	t.Helper()
	var out []dumpfile.Entry
	first := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := "/" + strings.TrimPrefix(strings.TrimPrefix(p, root), "/")
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		ft := st.Mode & unix.S_IFMT
		if ft != unix.S_IFDIR && st.Nlink > 1 {
			if f, ok := first[st.Ino]; ok {
				out = append(out, dumpfile.Entry{Path: rel, Mode: st.Mode, Hardlink: f})
				return nil
			}
			first[st.Ino] = rel
		}
		e := dumpfile.Entry{
			Path: rel, Mode: st.Mode, Nlink: uint32(st.Nlink), UID: st.Uid, GID: st.Gid,
			Mtime: dumpfile.Timespec{Sec: st.Mtim.Sec, Nsec: uint32(st.Mtim.Nsec)},
			Size:  uint64(st.Size),
		}
		switch ft {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if len(data) > InlineMax {
				e.Digest = hex.EncodeToString(verity.DigestBytes(verity.SHA256, data))
			} else {
				e.Content = data
			}
		case unix.S_IFLNK:
			e.Payload, _ = os.Readlink(p)
		case unix.S_IFCHR, unix.S_IFBLK:
			e.Rdev = st.Rdev
		}
		e.Xattrs = listXattrs(t, p)
		out = append(out, e)
		return nil
	})
	require.NoError(t, err)
	return out
}

func listXattrs(t *testing.T, p string) []dumpfile.Xattr {
	buf := make([]byte, 1<<16)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return nil
	}
	var xs []dumpfile.Xattr
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		v := make([]byte, 1<<16)
		m, err := unix.Lgetxattr(p, name, v)
		require.NoError(t, err, "%s %s", p, name)
		xs = append(xs, dumpfile.Xattr{Name: name, Value: v[:m]})
	}
	slices.SortFunc(xs, func(a, b dumpfile.Xattr) int { return strings.Compare(a.Name, b.Name) })
	return xs
}
