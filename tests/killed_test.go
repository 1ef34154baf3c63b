package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDaemonKilled kills composefs-fuse's daemon with SIGKILL, as the OOM
// killer would: the mount then answers ENOTCONN at once rather than
// hanging, umount clears it, and a new composefs-fuse mounted on the same
// directory serves the tree again. On each transport: over io_uring the
// kernel has the daemon's ring entries to let go of too.
func TestDaemonKilled(t *testing.T) {
	requireRoot(t)
	tree := genTree(43, 80)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	image := tree.image(t, 1)
	kernel := kernelMount(t, image, objects)
	// The largest file, whose object is passed through, and an inline
	// one, whose bytes the daemon reads: one read before the kill, the
	// other left for after.
	var large, inline string
	var largeSize uint64
	for _, e := range tree.entries {
		switch {
		case !e.IsRegular() || e.Hardlink != "":
		case e.Payload != "" && e.Size > largeSize:
			large, largeSize = e.Path, e.Size
		case e.Payload == "" && e.Size > 0 && inline == "":
			inline = e.Path
		}
	}
	if large == "" || inline == "" {
		t.Fatalf("the tree has no external file (%q) or no inline one (%q)", large, inline)
	}
	want := map[string][]byte{}
	for _, p := range []string{large, inline} {
		b, err := os.ReadFile(filepath.Join(kernel, p))
		if err != nil {
			t.Fatalf("through the kernel: %v", err)
		}
		want[p] = b
	}
	same := func(t *testing.T, mnt, p string) {
		t.Helper()
		got, err := os.ReadFile(filepath.Join(mnt, p))
		if err != nil || !bytes.Equal(got, want[p]) {
			t.Fatalf("%q: %d bytes, %v; the kernel's has %d", p, len(got), err, len(want[p]))
		}
	}

	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			args := append([]string{"--basedir", objects}, tr.args...)
			mnt := fuseMount(t, image, args...)
			same(t, mnt, large)
			tr.check(t, mnt)
			pid := daemonPID(mnt)
			if pid == "" {
				t.Fatalf("no daemon serves %s", mnt)
			}
			killDaemon(t, pid)

			// Every access that needs the server fails with ENOTCONN;
			// the watchdog turns a hang into a failure.
			withWatchdog(t, mnt, 10*time.Second, func() {
				notConnected(t, func() error { _, err := os.ReadDir(mnt); return err }, "listing the mount")
				notConnected(t, func() error { _, err := os.ReadFile(filepath.Join(mnt, inline)); return err }, "reading "+inline)
			})

			if out, err := run(t, 30*time.Second, "umount", mnt); err != nil {
				t.Fatalf("umount of the killed daemon's mount: %v\n%s", err, out)
			}
			if typ := mountedType(mnt); typ != "" {
				t.Fatalf("after umount %s is still mounted (%s)", mnt, typ)
			}

			if out, err := tryFuseMount(t, image, mnt, args...); err != nil {
				t.Fatalf("composefs-fuse again on %s: %v\n%s", mnt, err, out)
			}
			withWatchdog(t, mnt, time.Minute, func() {
				same(t, mnt, inline)
				same(t, mnt, large)
			})
			if again := daemonPID(mnt); again == "" || again == pid {
				t.Errorf("the new mount's daemon is %q, the killed one was %s", again, pid)
			}
			tr.check(t, mnt)
		})
	}
}

// notConnected checks that access, on the mount of a killed daemon, fails
// with ENOTCONN. Over io_uring the kernel lets go of the daemon's ring
// after the daemon has exited, and only then aborts the connection: a
// request made in between is ended with ECANCELED (its ring entry's task
// is dead) or ECONNABORTED (pending when the connection was aborted), a
// few milliseconds later. Those are accepted until the abort is through,
// for at most 5 s; success never is.
func notConnected(t *testing.T, access func() error, what string) {
	t.Helper()
	began := time.Now()
	var early []string
	for {
		err := access()
		switch {
		case errors.Is(err, syscall.ENOTCONN):
			if len(early) > 0 {
				t.Logf("%s: %s, then ENOTCONN %v after the first try", what, strings.Join(early, ", "), time.Since(began).Round(time.Microsecond))
			}
			return
		case errors.Is(err, syscall.ECANCELED), errors.Is(err, syscall.ECONNABORTED):
			var errno syscall.Errno
			errors.As(err, &errno)
			early = append(early, errno.Error())
		default:
			t.Errorf("%s on the mount of a killed daemon: %v, want ENOTCONN", what, err)
			return
		}
		if time.Since(began) > 5*time.Second {
			t.Errorf("%s on the mount of a killed daemon: still %v 5 s on, want ENOTCONN", what, err)
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// killDaemon sends SIGKILL to pid and waits until all its threads have
// exited, and with them closed its files (/dev/fuse among them): the
// process gone, or a zombie with no thread left but its first. A zombie
// alone is not enough: the first thread turns into one as soon as it has
// exited itself, while the others still hold the files they share.
func killDaemon(t *testing.T, pid string) {
	t.Helper()
	n, err := strconv.Atoi(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s: %v", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
		if err != nil {
			return
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		threads, err := os.ReadDir(filepath.Join("/proc", pid, "task"))
		if err != nil {
			return
		}
		if len(f) > 0 && (f[0] == "Z" || f[0] == "X") && len(threads) <= 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon %s still runs 10 s after SIGKILL (%d threads): %s", pid, len(threads), s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
