//go:build linux

package fuseconn

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/fuseuring"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// tinyFS is a root directory holding one file, "hello", that reads "hi\n".
type tinyFS struct {
	fuse.RawFileSystem
}

const helloNode = 2

func (f *tinyFS) attr(node uint64, a *fuse.Attr) {
	a.Ino = node
	if node == fuse.FUSE_ROOT_ID {
		a.Mode, a.Nlink = fuse.S_IFDIR|0o755, 2
		return
	}
	a.Mode, a.Nlink, a.Size = fuse.S_IFREG|0o644, 1, 3
}

func (f *tinyFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	if h.NodeId != fuse.FUSE_ROOT_ID || name != "hello" {
		return fuse.ENOENT
	}
	out.NodeId = helloNode
	f.attr(helloNode, &out.Attr)
	return fuse.OK
}

func (f *tinyFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	f.attr(in.NodeId, &out.Attr)
	return fuse.OK
}

func (f *tinyFS) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	return fuse.OK
}

func (f *tinyFS) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	data := []byte("hi\n")
	if in.Offset >= uint64(len(data)) {
		return fuse.ReadResultData(nil), fuse.OK
	}
	return fuse.ReadResultData(data[in.Offset:]), fuse.OK
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
}

// mountTest mounts fs on a new directory, logging into logs, and unmounts
// it when the test ends.
func mountTest(t *testing.T, fs fuse.RawFileSystem, ring bool, logs *logbuf.Buffer) (c *Conn, mnt string) {
	t.Helper()
	mnt = t.TempDir()
	c, err := Mount(mnt, fs, Options{
		Protocol: fuse.MountOptions{MaxWrite: 1 << 20},
		Logger:   logs.Logger(),
		IOUring:  ring,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
			c.Wait()
		}
	})
	return c, mnt
}

// mountTiny mounts a tinyFS and checks that it reads, within a time limit
// (a connection waiting for rings hangs every request).
func mountTiny(t *testing.T, ring bool) *Conn {
	t.Helper()
	logs := &logbuf.Buffer{}
	c, mnt := mountTest(t, &tinyFS{fuse.NewDefaultRawFileSystem()}, ring, logs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if b, err := os.ReadFile(filepath.Join(mnt, "hello")); err != nil || string(b) != "hi\n" {
			t.Errorf("hello: %q, %v", b, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "nothing")); !errors.Is(err, syscall.ENOENT) {
			t.Errorf("nothing: %v, want ENOENT", err)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		// Abort, so that the stuck requests and the server end.
		if err := fuseuring.AbortConnection(mnt); err != nil {
			t.Logf("aborting: %v", err)
		}
		t.Fatalf("the mount hung; log:\n%s", logs.String())
	}
	return c
}

// TestMountServes: a mount serves over /dev/fuse alone, and with io_uring
// offered and taken, its requests come through the rings.
func TestMountServes(t *testing.T) {
	requireRoot(t)
	if c := mountTiny(t, false); c.RingRequests() != 0 {
		t.Errorf("%d requests through rings not asked for", c.RingRequests())
	}
	if !fuseuring.KernelEnabled() {
		t.Skip("FUSE over io_uring is off in this kernel: echo Y > /sys/module/fuse/parameters/enable_uring (./tests/run does)")
	}
	if c := mountTiny(t, true); c.RingRequests() < 3 {
		t.Errorf("%d requests through the rings", c.RingRequests())
	}
}

// TestUnmountEnds: Unmount returns once serving has ended, and Wait too.
func TestUnmountEnds(t *testing.T) {
	requireRoot(t)
	c := mountTiny(t, fuseuring.KernelEnabled())
	if err := c.Unmount(); err != nil {
		t.Fatal(err)
	}
	c.Wait()
	if _, err := os.Stat(filepath.Join(c.Dir(), "hello")); err == nil {
		t.Errorf("hello still there after unmount")
	}
}

// TestRingStuckAborts: when the kernel took the io_uring offer but no ring
// can serve it, the connection is aborted and Mount fails, rather than
// every request waiting forever.
func TestRingStuckAborts(t *testing.T) {
	requireRoot(t)
	if !fuseuring.KernelEnabled() {
		t.Skip("FUSE over io_uring is off in this kernel")
	}
	testRingFails = func() error { return errors.New("no ring for this test") }
	defer func() { testRingFails = nil }()
	logs := &logbuf.Buffer{}
	mnt := t.TempDir()
	done := make(chan error, 1)
	go func() {
		c, err := Mount(mnt, &tinyFS{fuse.NewDefaultRawFileSystem()}, Options{
			Logger:  logs.Logger(),
			IOUring: true,
		})
		if err == nil {
			c.Unmount()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("Mount succeeded with no way to serve it")
		}
	case <-time.After(20 * time.Second):
		syscall.Unmount(mnt, syscall.MNT_DETACH)
		t.Fatalf("Mount hung; log:\n%s", logs.String())
	}
	syscall.Unmount(mnt, syscall.MNT_DETACH)
	if !strings.Contains(logs.String(), "aborting the connection") {
		t.Errorf("log lacks the abort:\n%s", logs.String())
	}
}
