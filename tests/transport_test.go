package tests

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
		if rings, _ := daemonRings(t, mnt); rings != 0 {
			t.Errorf("--no-io-uring daemon of %s holds %d io_uring rings", mnt, rings)
		}
	}}
	if !fuseuring.KernelEnabled() { // ./tests/run turns it on as root
		t.Logf("FUSE over io_uring is off in this kernel: testing /dev/fuse only (./tests/run turns it on)")
		return []transport{dev}
	}
	ring := transport{name: "io_uring", check: func(t *testing.T, mnt string) {
		rings, done := daemonRings(t, mnt)
		if rings == 0 || done == 0 {
			t.Errorf("daemon of %s: %d io_uring rings, %d completions: the mount did not use io_uring", mnt, rings, done)
		}
	}}
	return []transport{ring, dev}
}

// checkDefaultTransport checks that a mount made without transport
// arguments uses io_uring if and only if the kernel offers it.
func checkDefaultTransport(t *testing.T, mnt string) {
	t.Helper()
	transports(t)[0].check(t, mnt)
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
