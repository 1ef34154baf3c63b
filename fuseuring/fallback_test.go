//go:build linux

package fuseuring_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/fuseconn"
	"github.com/composefs/composefs-go/fuseuring"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// rootFS is an empty root directory, all a mount needs to answer.
type rootFS struct{ fuse.RawFileSystem }

func (rootFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	out.Ino, out.Mode, out.Nlink = in.NodeId, fuse.S_IFDIR|0o755, 2
	return fuse.OK
}

// TestSetupFailureFallsBack: when one ring cannot be made, the kernel is
// told to give up io_uring, and the mount works through /dev/fuse.
func TestSetupFailureFallsBack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if !fuseuring.KernelEnabled() {
		t.Skip("FUSE over io_uring is off in this kernel")
	}
	fuseuring.SetTestSetupFails(func(thread int) error {
		if thread == 1 {
			return errors.New("no ring for this test")
		}
		return nil
	})
	defer fuseuring.SetTestSetupFails(nil)
	logs := &logbuf.Buffer{}
	mnt := t.TempDir()
	c, err := fuseconn.Mount(mnt, rootFS{fuse.NewDefaultRawFileSystem()}, fuseconn.Options{
		Logger:  logs.Logger(),
		IOUring: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Unmount()
	done := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(mnt, "."))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stat: %v", err)
		}
	case <-time.After(20 * time.Second):
		fuseuring.AbortConnection(mnt)
		t.Fatalf("the mount hung; log:\n%s", logs.String())
	}
	if n := c.RingRequests(); n != 0 {
		t.Errorf("%d requests through rings that failed to start", n)
	}
	if !strings.Contains(logs.String(), "serving through /dev/fuse") {
		t.Errorf("log lacks the fall back:\n%s", logs.String())
	}
}
