//go:build linux

package fuseconn

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/composefs/composefs-go/fuseuring"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// waitingFS answers a LOOKUP of "first" only once it has answered one of
// "second": a request whose handler waits on another request, without
// saying so (Conn.WillWait), as one whose object store is itself served by
// this connection would.
type waitingFS struct {
	fuse.RawFileSystem
	firstAsked, second chan struct{}
}

func (f *waitingFS) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	switch name {
	case "first":
		out.NodeId = 2
		close(f.firstAsked)
		select {
		case <-f.second:
		case <-time.After(20 * time.Second):
		}
	case "second":
		out.NodeId = 3
		defer close(f.second)
	default:
		return fuse.ENOENT
	}
	out.Attr.Ino, out.Attr.Mode, out.Attr.Nlink = out.NodeId, fuse.S_IFREG|0o644, 1
	return fuse.OK
}

func (f *waitingFS) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	out.Attr.Ino, out.Attr.Mode, out.Attr.Nlink = in.NodeId, fuse.S_IFREG|0o644, 1
	if in.NodeId == fuse.FUSE_ROOT_ID {
		out.Attr.Mode, out.Attr.Nlink = fuse.S_IFDIR|0o755, 2
	}
	return fuse.OK
}

// TestStuckReaderGetsCompany: a reader serves the request it read itself,
// with no other reader started first, yet a request that waits on a later
// one does not hang the mount: another reader starts once the first has
// made no progress for a while. Without that, the LOOKUP of "second" would
// never be read and both stats would hang.
func TestStuckReaderGetsCompany(t *testing.T) {
	requireRoot(t)
	logs := &logbuf.Buffer{}
	fs := &waitingFS{fuse.NewDefaultRawFileSystem(), make(chan struct{}), make(chan struct{})}
	c, mnt := mountTest(t, fs, false, logs)
	// The stats before and of "first" from one thread (one pid to the
	// kernel), so that one reader serves them, with no other started.
	first := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		for deadline := time.Now().Add(5 * time.Second); ; {
			os.Stat(filepath.Join(mnt, "nothing"))
			c.readers.mu.Lock()
			total := c.readers.total
			c.readers.mu.Unlock()
			if total == 1 {
				break
			}
			if time.Now().After(deadline) {
				first <- fmt.Errorf("%d readers, want one", total)
				return
			}
		}
		_, err := os.Stat(filepath.Join(mnt, "first"))
		first <- err
	}()
	select {
	case <-fs.firstAsked:
	case err := <-first:
		t.Fatalf("first: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no LOOKUP of first")
	}
	second := make(chan error, 1)
	go func() {
		_, err := os.Stat(filepath.Join(mnt, "second"))
		second <- err
	}()
	for _, ch := range []chan error{second, first} {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("stat: %v", err)
			}
		case <-time.After(10 * time.Second):
			if err := fuseuring.AbortConnection(mnt); err != nil {
				t.Logf("aborting: %v", err)
			}
			t.Fatalf("a request waiting on another hung the mount; log:\n%s", logs.String())
		}
	}
}

// request is a FUSE request header of opcode op from thread pid.
func request(op, pid uint32) []byte {
	b := make([]byte, sizeOfInHeader)
	*(*uint32)(unsafe.Pointer(&b[4])) = op
	*(*uint32)(unsafe.Pointer(&b[32])) = pid
	return b
}

// TestFromAnother: a request starts another reader when another thread
// than the last one named asked it; FORGET, INTERRUPT and the kernel's own
// requests name none. (The function alone: read acts on it with one call,
// and TestStuckReaderGetsCompany relies on one thread starting none.)
func TestFromAnother(t *testing.T) {
	const lookup, read = 1, 15
	var r readers
	for i, c := range []struct {
		req  []byte
		want bool
	}{
		{request(lookup, 100), true}, // after none
		{request(read, 100), false},
		{request(opForget, 0), false},
		{request(opBatchForget, 0), false},
		{request(opInterrupt, 7), false},
		{request(read, 0), false}, // the kernel's
		{request(lookup, 100), false},
		{request(lookup, 200)[:20], false}, // too short to tell
		{request(lookup, 200), true},
		{request(lookup, 100), true},
	} {
		if got := r.fromAnother(c.req); got != c.want {
			t.Errorf("request %d: fromAnother %v, want %v", i, got, c.want)
		}
	}
}
