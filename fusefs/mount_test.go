package fusefs

import (
	"bytes"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestMountParallel mounts the test tree in this process and reads it from
// many goroutines at once (run it with -race): the kernel's side of the
// node logic the other tests call directly.
func TestMountParallel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	tt := newTestTree(t)
	img := imageFromDump(t, tt.dump, 1)
	logger := log.New(&syncBuffer{}, "", 0)
	mnt := t.TempDir()
	fsys, err := New(img, Config{Store: tt.store, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	server, err := Mount(mnt, fsys, MountOptions{Logger: logger})
	if err != nil {
		t.Skipf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := server.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
	})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				n := 0
				err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
					if err != nil {
						return err
					}
					n++
					return nil
				})
				if err != nil || n < 10 {
					errs <- err
					return
				}
				got, err := os.ReadFile(filepath.Join(mnt, "dir", "ext"))
				if err != nil || !bytes.Equal(got, tt.ext.content) {
					errs <- err
					return
				}
				if _, err := os.ReadFile(filepath.Join(mnt, "dir", "bad")); err == nil {
					errs <- os.ErrInvalid
					return
				}
				if i%2 == 0 {
					if b, err := os.ReadFile(filepath.Join(mnt, "dir", "hl")); err != nil || string(b) != "hello" {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("parallel reader: %v", err)
	}
}
