package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The reader helper's settings: the file listing the paths to read (NUL
// separated, relative to the mount), the mount, and where in the list to
// start.
const (
	readListEnv  = "COMPOSEFS_READ_LIST"
	readMountEnv = "COMPOSEFS_READ_MOUNT"
	readStartEnv = "COMPOSEFS_READ_START"
	readMark     = "READ: "
)

// maxDaemonRSS bounds the daemon's resident memory (VmHWM, its peak) under
// the load of TestConcurrentReaders. The daemon keeps no cache of file
// contents: external files are passed through, inline ones are sliced from
// the image, which is mapped from the page cache. What it holds is the Go
// runtime, the requests in flight and, over io_uring, a 1 MiB payload
// buffer for each ring entry a request has touched (16 entries on 2 CPUs).
// That came to 12-13 MiB on 2 CPUs, under 64 readers as under 8; 128 MiB
// is room for every entry's buffer filled besides, yet far below what
// caching the tree's contents for the readers (6.5 MiB a round, 64 times)
// or leaking a buffer per open would take.
const maxDaemonRSS = 128 << 20

// TestReaderHelper is no test of its own: TestConcurrentReaders runs the
// test binary as a reader process. It reads every path of the list, from
// its start on round the end, and prints each one's index and SHA-256 (or
// the error), then drops the file's pages from the page cache so that the
// next reader's reads of an inline file go to the daemon again rather than
// to the cache (a passed-through file's pages are its object's, which
// stay).
func TestReaderHelper(t *testing.T) {
	list := os.Getenv(readListEnv)
	if list == "" {
		t.Skip("helper for TestConcurrentReaders")
	}
	b, err := os.ReadFile(list)
	if err != nil {
		t.Fatal(err)
	}
	paths := strings.Split(strings.TrimSuffix(string(b), "\x00"), "\x00")
	mnt := os.Getenv(readMountEnv)
	start, _ := strconv.Atoi(os.Getenv(readStartEnv))
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for k := range paths {
		i := (start + k) % len(paths)
		sum, err := readHash(filepath.Join(mnt, paths[i]))
		if err != nil {
			fmt.Fprintf(out, "\n%s%d error %v\n", readMark, i, err)
			continue
		}
		fmt.Fprintf(out, "\n%s%d %s\n", readMark, i, sum)
	}
}

// readHash reads the file at p to its end and returns its SHA-256, in hex.
func readHash(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestConcurrentReaders reads every file of a random tree through
// composefs-fuse with 8, then 64 reader processes at once, three rounds
// each, on each transport: every reader must get every file's bytes as the
// kernel's mount has them, and the daemon's memory stays under
// maxDaemonRSS.
func TestConcurrentReaders(t *testing.T) {
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tree := genTree(41, 200)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	image := tree.image(t, 1)
	kernel := kernelMount(t, image, objects)

	// Every regular file, hardlinks too, and its hash through the kernel.
	var paths, want []string
	total := 0
	for _, e := range tree.entries {
		if !e.IsRegular() {
			continue
		}
		sum, err := readHash(filepath.Join(kernel, e.Path))
		if err != nil {
			t.Fatalf("through the kernel: %v", err)
		}
		paths = append(paths, strings.TrimPrefix(e.Path, "/"))
		want = append(want, sum)
		total += int(e.Size)
	}
	list := filepath.Join(tempDir(t, "list"), "paths")
	if err := os.WriteFile(list, []byte(strings.Join(paths, "\x00")), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d files, %d KiB, each read by every reader", len(paths), total>>10)

	for _, tr := range transports(t) {
		t.Run(tr.name, func(t *testing.T) {
			mnt := fuseMount(t, image, append([]string{"--basedir", objects}, tr.args...)...)
			pid := daemonPID(mnt)
			if pid == "" {
				t.Fatalf("no daemon serves %s", mnt)
			}
			rss, hwm := daemonMemory(t, pid)
			t.Logf("daemon mounted: VmRSS %s, VmHWM %s", mib(rss), mib(hwm))
			withWatchdog(t, mnt, 2*time.Minute, func() {
				for _, readers := range []int{8, 64} {
					for round := 1; round <= 3; round++ {
						began := time.Now()
						readAll(t, self, list, mnt, readers, paths, want)
						rss, hwm := daemonMemory(t, pid)
						t.Logf("%d readers, round %d: %v, daemon VmRSS %s, VmHWM %s",
							readers, round, time.Since(began).Round(time.Millisecond), mib(rss), mib(hwm))
						if t.Failed() {
							return
						}
					}
				}
			})
			if _, hwm := daemonMemory(t, pid); hwm > maxDaemonRSS {
				t.Errorf("the daemon's resident memory peaked at %s, over the bound of %s", mib(hwm), mib(maxDaemonRSS))
			}
			tr.check(t, mnt)
		})
	}
}

// readAll runs n reader processes at once over the list of paths, each
// starting at its own place in it, and checks that each read every file
// with the hash in want.
func readAll(t *testing.T, self, list, mnt string, n int, paths, want []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, self, "-test.run=^TestReaderHelper$", "-test.count=1")
			cmd.Env = append(os.Environ(), readListEnv+"="+list, readMountEnv+"="+mnt,
				readStartEnv+"="+strconv.Itoa(r*len(want)/n))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("reader %d: %v\n%s", r, err, out)
				return
			}
			checkReads(t, r, out, paths, want)
		}()
	}
	wg.Wait()
}

// checkReads checks a reader's output: every file read once, with the hash
// in want.
func checkReads(t *testing.T, reader int, out []byte, paths, want []string) {
	t.Helper()
	seen := make([]bool, len(want))
	bad := 0
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), readMark)
		if !ok {
			continue
		}
		idx, got, _ := strings.Cut(line, " ")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || i >= len(want) {
			t.Errorf("reader %d: %q", reader, sc.Text())
			continue
		}
		seen[i] = true
		if got != want[i] && bad < 5 {
			bad++
			t.Errorf("reader %d: %q: %s, the kernel's has SHA-256 %s", reader, paths[i], got, want[i])
		}
	}
	for i, s := range seen {
		if !s {
			t.Errorf("reader %d did not read %q", reader, paths[i])
			return
		}
	}
}

// daemonMemory is the daemon pid's resident memory now (VmRSS) and at its
// peak (VmHWM), in bytes.
func daemonMemory(t *testing.T, pid string) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("/proc", pid, "status"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		name, v, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			t.Fatalf("/proc/%s/status: %q", pid, line)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
