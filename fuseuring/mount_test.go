//go:build linux

package fuseuring

import (
	"errors"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// tinyFS is a root directory holding one file, "hello", that reads "hi\n".
// Init starts the transport on the connection, as fusefs does.
type tinyFS struct {
	fuse.RawFileSystem
	before   map[int]bool
	logger   *log.Logger
	t        *Transport
	startErr error
}

const helloNode = 2

func (f *tinyFS) Init(s *fuse.Server) {
	fd := -1
	for d := range DeviceFDs() {
		if !f.before[d] {
			fd = d
		}
	}
	f.t, f.startErr = Start(f, Config{FD: fd, MaxWrite: 1 << 20, Logger: f.logger})
}

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

// mountTiny mounts a tinyFS offering io_uring, and checks that it reads.
func mountTiny(t *testing.T) *tinyFS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if !KernelEnabled() {
		t.Skip("FUSE over io_uring is off in this kernel: echo Y > /sys/module/fuse/parameters/enable_uring (./tests/run does)")
	}
	logs := &strings.Builder{}
	f := &tinyFS{RawFileSystem: fuse.NewDefaultRawFileSystem(), before: DeviceFDs(), logger: log.New(logs, "", 0)}
	mnt := t.TempDir()
	server, err := fuse.NewServer(f, mnt, &fuse.MountOptions{
		DirectMount:       true,
		ExtraCapabilities: fuse.CAP_OVER_IO_URING,
	})
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve()
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		server.Wait()
		f.t.Stop()
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := server.WaitMount(); err != nil {
			t.Errorf("WaitMount: %v", err)
			return
		}
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
		if err := AbortConnection(mnt); err != nil {
			t.Logf("aborting: %v", err)
		}
		t.Fatalf("the mount hung; log:\n%s", logs.String())
	}
	return f
}

// TestMountServes: with io_uring offered and taken, the requests of a real
// mount come through the rings.
func TestMountServes(t *testing.T) {
	f := mountTiny(t)
	if f.startErr != nil {
		t.Fatal(f.startErr)
	}
	if n := f.t.Served(); n < 3 {
		t.Errorf("%d requests through the rings", n)
	}
}

// TestSetupFailureFallsBack: when one ring cannot be made, the kernel is
// told to give up io_uring, and the mount works through /dev/fuse.
func TestSetupFailureFallsBack(t *testing.T) {
	testSetupFails = func(thread int) error {
		if thread == 1 {
			return errors.New("no ring for this test")
		}
		return nil
	}
	defer func() { testSetupFails = nil }()
	f := mountTiny(t)
	if f.startErr == nil || errors.Is(f.startErr, ErrStuck) {
		t.Errorf("Start: %v, want a failure that fell back", f.startErr)
	}
	if f.t != nil {
		t.Errorf("a transport after a failed start")
	}
}
