package fusefs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/fuseconn"
	"github.com/composefs/composefs-go/internal/fixture"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// TestMountParallel mounts the test tree in this process and reads it from
// many goroutines at once (run it with -race): the kernel's side of the
// node logic the other tests call directly.
func TestMountParallel(t *testing.T) {
	tt := newTestTree(t)
	mnt := mountInProcess(t, imageFromDump(t, tt.dump, 1), testConfig{Store: tt.store})
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
				if err != nil || !bytes.Equal(got, tt.ext.Content) {
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

// mountInProcess mounts img in this process, for as long as the test runs.
func mountInProcess(t *testing.T, img *erofs.Image, cfg testConfig) string {
	t.Helper()
	_, _, mnt := mountFS(t, img, cfg, MountOptions{})
	return mnt
}

// mountFS mounts img with mo and returns the file system, its connection
// and where it is.
func mountFS(t *testing.T, img *erofs.Image, cfg testConfig, mo MountOptions) (*FS, *fuseconn.Conn, string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = logbuf.Discard()
	}
	mnt := t.TempDir()
	fsys, err := newFS(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mo.Logger = cfg.Logger
	conn, err := Mount(mnt, fsys, mo)
	if err != nil {
		t.Skipf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Unmount(); err != nil {
			syscall.Unmount(mnt, syscall.MNT_DETACH)
		}
		conn.Wait()
		fsys.Close()
	})
	return fsys, conn, mnt
}

// TestTruncatedImage cuts the image file short under a live mount: the
// requests that touch the lost part fail with EIO (the mapping faults, and
// the fault becomes an error, not a crash of this process), the rest of
// the mount keeps working.
func TestTruncatedImage(t *testing.T) {
	var b strings.Builder
	b.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/a 0 40755 2 0 0 0 0.0 - - -\n/z 0 40755 2 0 0 0 0.0 - - -\n")
	for i := range 2000 {
		fmt.Fprintf(&b, "/z/entry-%05d 0 100644 1 0 0 0 0.0 - - -\n", i)
	}
	p := filepath.Join(t.TempDir(), "image.cfs")
	if err := os.WriteFile(p, fixture.Image(t, b.String(), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	img, err := erofs.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	logs := &logbuf.Buffer{}
	mnt := mountInProcess(t, img, testConfig{Logger: logs.Logger()})
	if _, err := os.Stat(filepath.Join(mnt, "a")); err != nil {
		t.Fatal(err)
	}
	// Keep the header, the superblock and the root; lose the rest.
	if err := os.Truncate(p, 8192); err != nil {
		t.Fatal(err)
	}
	_, err = os.ReadDir(filepath.Join(mnt, "z"))
	if !errors.Is(err, syscall.EIO) {
		t.Errorf("listing a directory lost to truncation: %v, want EIO", err)
	}
	if !strings.Contains(logs.String(), "fault reading the image") {
		t.Errorf("no log line for the fault:\n%s", logs.String())
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Errorf("the mount died: %v", err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "a")); err != nil {
		t.Errorf("a cached entry: %v", err)
	}
}
