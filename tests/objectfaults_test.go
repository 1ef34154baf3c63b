package tests

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestObjectsChangedUnderMount: objects deleted, truncated or rewritten in
// place under a live mount cost only their own file. With verity on, a
// changed object is never served after the change: each open (with
// --passthrough) or each read that misses the page cache (by default)
// either reuses the object checked before, unchanged, or checks it anew.
// The other files go on reading. By default the kernel keeps the checked
// bytes in its page cache, so the test drops a changed file's cached pages
// before reading it again, for the read to come to the daemon.
func TestObjectsChangedUnderMount(t *testing.T) {
	requireRoot(t)
	for _, args := range [][]string{nil, {"--no-io-uring"}, {"--passthrough"}} {
		t.Run(strings.Join(append([]string{"default"}, args...), ""), func(t *testing.T) {
			objects := tempDir(t, "objects")
			var objs []object
			var b strings.Builder
			b.WriteString("/ 0 40755 2 0 0 0 0.0 - - -\n")
			for i := range 4 {
				content := bytes.Repeat([]byte{byte('a' + i)}, 20_000+i)
				o := newObject(content)
				o.Put(t, objects, content)
				objs = append(objs, o)
				fmt.Fprintf(&b, "/f%d %d 100644 1 0 0 0 0.0 %s - %s\n", i, len(content), o.Payload, o.Digest)
			}
			path := func(i int) string { return filepath.Join(objects, objs[i].Payload) }
			// Clocks tick coarsely: a change within the tick of the
			// object's making would leave its times as they were when
			// it was checked. Checked with an mtime of long ago, any
			// change moves it.
			old := time.Unix(1_000_000, 0)
			for i := range objs {
				if err := os.Chtimes(path(i), old, old); err != nil {
					t.Fatal(err)
				}
			}
			mnt := fuseMount(t, writeImage(t, b.String(), 1), append([]string{"--basedir", objects}, args...)...)
			read := func(i int) ([]byte, error) {
				name := filepath.Join(mnt, fmt.Sprintf("f%d", i))
				if f, err := os.Open(name); err == nil {
					unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
					f.Close()
				}
				return readErrno(name)
			}
			for i := range objs {
				if got, err := read(i); err != nil || !bytes.Equal(got, objs[i].Content) {
					t.Fatalf("f%d before any change: %d bytes, %v", i, len(got), err)
				}
			}

			// f0 rewritten in place, same size.
			f, err := os.OpenFile(path(0), os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt([]byte("rewritten"), 10); err != nil {
				t.Fatal(err)
			}
			f.Close()
			if got, err := read(0); err != syscall.EIO {
				t.Errorf("f0 rewritten: %d bytes (%q...), %v; want EIO", len(got), got[:min(len(got), 20)], err)
			}
			// f1 truncated.
			if err := os.Truncate(path(1), 100); err != nil {
				t.Fatal(err)
			}
			if got, err := read(1); err != syscall.EIO {
				t.Errorf("f1 truncated: %d bytes, %v; want EIO", len(got), err)
			}
			// f2 deleted: the object checked before may still be
			// served, or the file is gone; nothing else.
			if err := os.Remove(path(2)); err != nil {
				t.Fatal(err)
			}
			if got, err := read(2); err != nil && err != syscall.ENOENT || err == nil && !bytes.Equal(got, objs[2].Content) {
				t.Errorf("f2 deleted: %d bytes, %v; want its checked content or ENOENT", len(got), err)
			}
			// f3 untouched, and the mount still up.
			if got, err := read(3); err != nil || !bytes.Equal(got, objs[3].Content) {
				t.Errorf("f3 after the others changed: %d bytes, %v", len(got), err)
			}
		})
	}
}
