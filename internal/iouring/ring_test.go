//go:build linux

package iouring

import (
	"errors"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EPERM) {
		t.Skipf("io_uring not available here: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestNop submits no-op entries and sees each complete with its user data.
func TestNop(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := newRing(t, 2)
	for i := range 2 {
		e := r.Next()
		if e == nil {
			t.Fatalf("entry %d: queue full", i)
		}
		e[0] = 0 // IORING_OP_NOP
		e[32] = byte(10 + i)
	}
	if e := r.Next(); e != nil {
		t.Errorf("a third entry from a ring of two")
	}
	var got []uint64
	for len(got) < 2 {
		if err := r.Enter(true, time.Second); err != nil {
			t.Fatal(err)
		}
		r.Completions(func(ud uint64, res int32) {
			if res != 0 {
				t.Errorf("nop %d: result %d", ud, res)
			}
			got = append(got, ud)
		})
	}
	if got[0] != 10 || got[1] != 11 {
		t.Errorf("completions %v, want [10 11]", got)
	}
	if r.Next() == nil {
		t.Errorf("no free entry once both were consumed")
	}
}

// TestWaitTimeout: a wait with nothing in flight ends after its timeout.
func TestWaitTimeout(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r := newRing(t, 1)
	start := time.Now()
	if err := r.Enter(true, 20*time.Millisecond); err != ErrTimeout {
		t.Fatalf("Enter: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d < 15*time.Millisecond {
		t.Errorf("returned after %v", d)
	}
}
