package tests

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/composefs/composefs-go/fuseuring"
)

// transport is one way composefs-fuse talks to the kernel, as a test mounts
// with it: the extra arguments, and a check, after the mount was used,
// that the daemon really served it that way.
type transport struct {
	name  string
	args  []string
	check func(t *testing.T, mnt string)
}

// transports are the ways to test a mount: io_uring where the kernel
// offers it, and /dev/fuse always.
func transports(t *testing.T) []transport {
	dev := transport{name: "dev", args: []string{"--no-io-uring"}, check: func(t *testing.T, mnt string) {
		t.Helper()
		expectRings(t, mnt, false, "--no-io-uring")
	}}
	if !fuseuring.KernelEnabled() { // ./tests/run turns it on as root
		t.Logf("FUSE over io_uring is off in this kernel: testing /dev/fuse only (./tests/run turns it on)")
		return []transport{dev}
	}
	ring := transport{name: "io_uring", check: func(t *testing.T, mnt string) {
		t.Helper()
		sw := switchAt(t, mnt)
		if !sw.before || !sw.after {
			t.Logf("%s: the fuse module's enable_uring was %s: io_uring was not on offer for the whole mount, so its transport is not checked", mnt, sw)
			return
		}
		expectRings(t, mnt, true, "enable_uring Y")
	}}
	return []transport{ring, dev}
}

// checkDefaultTransport checks that a mount made without transport
// arguments uses io_uring if and only if the kernel offered it while the
// mount was made. Another run may turn the switch over at any time (the
// fuse module has one for the machine), so what counts is its value around
// the mount, not now.
func checkDefaultTransport(t *testing.T, mnt string) {
	t.Helper()
	sw := switchAt(t, mnt)
	if sw.before != sw.after {
		t.Logf("%s: the fuse module's enable_uring changed while it was mounted (%s): its transport is not checked", mnt, sw)
		return
	}
	expectRings(t, mnt, sw.before, "enable_uring "+sw.String())
}

// expectRings checks that the daemon of mnt served it over io_uring (rings
// holding completions) or, if not ring, holds no ring at all; why says what
// made the test expect that.
func expectRings(t *testing.T, mnt string, ring bool, why string) {
	t.Helper()
	rings, done := daemonRings(t, mnt)
	switch {
	case ring && (rings == 0 || done == 0):
		t.Errorf("daemon of %s (%s): %d io_uring rings, %d completions: the mount did not use io_uring", mnt, why, rings, done)
	case !ring && rings != 0:
		t.Errorf("daemon of %s (%s) holds %d io_uring rings", mnt, why, rings)
	}
}

// switchReading is the fuse module's io_uring switch (fuseuring.KernelSwitch)
// read just before a mount was started and just after it was live: the
// daemon reads it in between, as does the kernel when it answers the
// daemon's offer, so when both readings agree they are what the mount saw.
type switchReading struct{ before, after bool }

func (s switchReading) String() string {
	yn := map[bool]string{true: "Y", false: "N"}
	if s.before == s.after {
		return yn[s.before]
	}
	return yn[s.before] + " before the mount, " + yn[s.after] + " after"
}

var (
	switchMu    sync.Mutex
	mountSwitch = map[string]switchReading{}
)

// recordSwitch notes the switch around the mount on mnt; before is what it
// read before starting composefs-fuse.
func recordSwitch(mnt string, before bool) {
	sw := switchReading{before: before, after: fuseuring.KernelEnabled()}
	switchMu.Lock()
	defer switchMu.Unlock()
	mountSwitch[mnt] = sw
}

func switchAt(t *testing.T, mnt string) switchReading {
	t.Helper()
	switchMu.Lock()
	defer switchMu.Unlock()
	sw, ok := mountSwitch[mnt]
	if !ok {
		t.Fatalf("%s was not mounted by fuseMount or fuseForeground: no record of enable_uring around its mount", mnt)
	}
	return sw
}

// daemonRings finds the composefs-fuse process serving mnt and counts its
// io_uring rings and the completions they have delivered, from
// /proc/PID/fdinfo.
func daemonRings(t *testing.T, mnt string) (rings int, completions uint64) {
	t.Helper()
	pid := daemonPID(mnt)
	if pid == "" {
		t.Fatalf("no composefs-fuse process serves %s", mnt)
	}
	fds, err := os.ReadDir(filepath.Join("/proc", pid, "fd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc", pid, "fd", fd.Name()))
		if err != nil || target != "anon_inode:[io_uring]" {
			continue
		}
		rings++
		info, err := os.ReadFile(filepath.Join("/proc", pid, "fdinfo", fd.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(info))
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "CqHead:"); ok {
				n, _ := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
				completions += n
			}
		}
	}
	return rings, completions
}

// daemonPID is the process whose command line names composefs-fuse and
// mnt, or "".
func daemonPID(mnt string) string {
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		cmd, err := os.ReadFile(filepath.Join("/proc", p.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		if len(args) > 0 && filepath.Base(args[0]) == "composefs-fuse" && containsArg(args, mnt) {
			return p.Name()
		}
	}
	return ""
}

func containsArg(args []string, s string) bool {
	for _, a := range args {
		if a == s {
			return true
		}
	}
	return false
}
