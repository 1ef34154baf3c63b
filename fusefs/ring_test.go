package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
)

// requireRingKernel skips unless the fuse module offers io_uring: it is
// off unless turned on (./tests/run turns it on for the suite).
func requireRingKernel(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if !fuseuring.KernelEnabled() {
		t.Skip("FUSE over io_uring is off in this kernel: echo Y > /sys/module/fuse/parameters/enable_uring (./tests/run does)")
	}
}

// view lists what a mount shows of every entry: type and permissions,
// owner, size, links, rdev, mtime, symlink target, xattrs and contents (or
// the error reading them gives). Both views come from this process's own
// mounts: how the kernel's differs is tests/' business.
func view(t *testing.T, root string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			// A whiteout is listed but not found, as the kernel has it.
			got[rel] = "lstat: " + err.Error()
			return nil
		}
		rec := fmt.Sprintf("mode %o uid %d gid %d size %d nlink %d rdev %d mtime %d.%09d",
			st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Rdev, st.Mtim.Sec, st.Mtim.Nsec)
		if target, err := os.Readlink(p); err == nil {
			rec += " -> " + target
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, name := range names {
				if name == "" {
					continue
				}
				v := make([]byte, 4096)
				m, err := unix.Lgetxattr(p, name, v)
				rec += fmt.Sprintf(" %s=%q(%v)", name, v[:max(m, 0)], err)
			}
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			rec += fmt.Sprintf(" content %d bytes %x err %v", len(b), b[:min(len(b), 16)], errors.Unwrap(err))
		}
		got[rel] = rec
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", root, err)
	}
	return got
}

// TestRingMount serves the test tree over io_uring and over /dev/fuse, in
// this process: both must show the same, a damaged object must answer EIO
// through the ring too, and requests must really have come through it.
func TestRingMount(t *testing.T) {
	requireRingKernel(t)
	tt := newTestTree(t)
	for _, v := range []int{0, 1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			img := imageFromDump(t, tt.dump, v)
			_, ringConn, ringMnt := mountFS(t, img, testConfig{Store: tt.store}, MountOptions{})
			_, devConn, devMnt := mountFS(t, img, testConfig{Store: tt.store}, MountOptions{NoIOUring: true})

			want, got := view(t, devMnt), view(t, ringMnt)
			if len(want) < 10 {
				t.Fatalf("only %d entries through /dev/fuse", len(want))
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("%s:\n  /dev/fuse: %s\n  io_uring:  %s", p, w, got[p])
				}
			}
			for p := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: only through io_uring", p)
				}
			}
			if b, err := os.ReadFile(filepath.Join(ringMnt, "dir", "ext")); err != nil || !bytes.Equal(b, tt.ext.Content) {
				t.Errorf("ext: %d bytes, %v", len(b), err)
			}
			if _, err := os.ReadFile(filepath.Join(ringMnt, "dir", "bad")); !errors.Is(err, syscall.EIO) {
				t.Errorf("bad: %v, want EIO", err)
			}
			if _, err := os.ReadFile(filepath.Join(ringMnt, "dir", "missing")); !errors.Is(err, syscall.ENOENT) {
				t.Errorf("missing: %v, want ENOENT", err)
			}
			if err := os.WriteFile(filepath.Join(ringMnt, "new"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
				t.Errorf("create: %v, want EROFS", err)
			}
			if n := ringConn.RingRequests(); n < uint64(len(want)) {
				t.Errorf("%d requests through io_uring for %d entries", n, len(want))
			}
			if n := devConn.RingRequests(); n != 0 {
				t.Errorf("%d requests through io_uring on a --no-io-uring mount", n)
			}
		})
	}
}
