package tests

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hugeSize is the object whose check takes long enough to be interrupted:
// hashing 16 GiB takes this machine kind seconds of both CPUs.
const hugeSize = 16 << 30

// TestInterruptStopsHashing: with --passthrough, a process opening a file
// whose object is being verified, killed while it waits, interrupts the
// OPEN: the daemon
// stops hashing (its CPU time stops growing), the killed process goes at
// once rather than when the hash would have ended, and the mount keeps
// serving. On both transports: INTERRUPT always comes through /dev/fuse,
// and must reach an OPEN that came through io_uring too. (By default there
// is no OPEN: the object is checked at the first READ, which the kernel
// sends from its read-ahead and never interrupts, so the check runs to its
// end and its digest is kept for the next read.)
func TestInterruptStopsHashing(t *testing.T) {
	requireRoot(t)
	objects := tempDir(t, "objects")
	// The hash never gets to its end, so the digest the image names does
	// not matter; the true one would take the test as long to compute as
	// the daemon takes to check it. A sparse file: 16 GiB of zeros that
	// take no room.
	const digest = "3d17d1c5a7b3e1aa2fb1b6c3f6c1a4b0d2e94f0c5e0b3a0f7d9c1e2b4a6f8d0e"
	hugePath := filepath.Join(objects, digest[:2], digest[2:])
	if err := os.MkdirAll(filepath.Dir(hugePath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hugePath, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(hugePath, hugeSize); err != nil {
		t.Fatal(err)
	}
	small := newObject(bytes.Repeat([]byte("small file "), 1000))
	small.Put(t, objects, small.Content)
	dump := "/ 0 40755 2 0 0 0 0.0 - - -\n" +
		fmt.Sprintf("/huge %d 100644 1 0 0 0 0.0 %s/%s - %s\n", int64(hugeSize), digest[:2], digest[2:], digest) +
		fmt.Sprintf("/small %d 100644 1 0 0 0 0.0 %s - %s\n", len(small.Content), small.Payload, small.Digest)
	image := writeImage(t, dump, 1)

	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			// No read-ahead: it would open and hash the object on its
			// own, which no INTERRUPT stops.
			args := append([]string{"--basedir", objects, "--no-read-ahead", "--passthrough"}, tr.args...)
			mnt := fuseMount(t, image, args...)
			pid := daemonPID(mnt)
			if pid == "" {
				t.Fatalf("no daemon serves %s", mnt)
			}
			withWatchdog(t, mnt, 60*time.Second, func() {
				interruptHash(t, mnt, pid)
				got, err := os.ReadFile(filepath.Join(mnt, "small"))
				if err != nil || !bytes.Equal(got, small.Content) {
					t.Errorf("small after the interrupt: %d bytes, %v", len(got), err)
				}
			})
			tr.check(t, mnt)
		})
	}
}

// interruptHash opens mnt/huge from a child process, kills it once the
// daemon pid is hashing, and checks that the hashing stops.
func interruptHash(t *testing.T, mnt, pid string) {
	t.Helper()
	reader := exec.Command("cat", filepath.Join(mnt, "huge"))
	if err := reader.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- reader.Wait() }()

	// Hashing has begun once the daemon burns CPU: a second of it.
	start := cpuTicks(t, pid)
	deadline := time.Now().Add(10 * time.Second)
	for cpuTicks(t, pid)-start < ticksPerSecond {
		if time.Now().After(deadline) {
			reader.Process.Kill()
			t.Fatalf("the daemon used %d ticks in 10 s opening the huge file: no hashing seen", cpuTicks(t, pid)-start)
		}
		select {
		case err := <-exited:
			t.Fatalf("the reader ended before it was killed: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	killed := time.Now()
	if err := reader.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The killed process waits for its OPEN to be answered: at once if
	// the INTERRUPT stopped the hash.
	select {
	case <-exited:
		t.Logf("reader gone %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
	case <-time.After(2 * time.Second):
		t.Errorf("the killed reader still waits for its OPEN after 2 s: the interrupt did not stop it")
		<-exited
	}
	// Then the daemon goes idle: less than a tenth of a CPU over a
	// second, within 2 s of the kill.
	for {
		before := cpuTicks(t, pid)
		time.Sleep(time.Second)
		used := cpuTicks(t, pid) - before
		if used <= ticksPerSecond/10 {
			t.Logf("daemon idle %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
			return
		}
		if time.Since(killed) > 3*time.Second {
			t.Fatalf("the daemon still uses %d ticks a second %v after the reader was killed: hashing went on", used, time.Since(killed).Round(time.Millisecond))
		}
	}
}

// ticksPerSecond is USER_HZ, the unit of /proc/PID/stat times: 100 on
// every Linux architecture that matters here.
const ticksPerSecond = 100

// cpuTicks is the user plus system time pid has used, in ticks.
func cpuTicks(t *testing.T, pid string) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		t.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing one. utime and stime are fields 14 and 15.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		t.Fatalf("/proc/%s/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%s/stat: %q", pid, s)
	}
	return utime + stime
}
