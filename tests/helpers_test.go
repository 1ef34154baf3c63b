package tests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
	"github.com/composefs/composefs-go/internal/golden"
	"github.com/composefs/composefs-go/internal/logbuf"
	"github.com/composefs/composefs-go/internal/mountinfo"
)

// repoRoot is the module's root, from the tests directory.
const repoRoot = ".."

func goldenDir(t testing.TB) string { return golden.Dir(t) }

// goldenImages lists the C golden images matching pattern (a file name
// glob under c/images) and all of composefs-rs' V2 ones; it skips the test
// when there are none.
func goldenImages(t testing.TB, pattern string) []string {
	g := goldenDir(t)
	images, _ := filepath.Glob(filepath.Join(g, "c", "images", pattern))
	rs, _ := filepath.Glob(filepath.Join(g, "rs", "*.cfs"))
	images = append(images, rs...)
	if len(images) == 0 {
		golden.Skip(t, "no golden images")
	}
	return images
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts EROFS, overlayfs and FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no /dev/fuse: %v", err)
	}
}

// binaries are built once per test run, into one directory anyone can read
// (the rootless test runs them as nobody).
var (
	binOnce sync.Once
	binDir  string
	binErr  error
	binMu   sync.Mutex
	built   = map[string]string{}
)

// buildCmd builds ./cmd/NAME and returns its path. A command that does not
// build fails the test: a skip would hide a broken tool.
func buildCmd(t testing.TB, name string) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "composefs-tests-bin-")
		if binErr == nil {
			binErr = os.Chmod(binDir, 0o755)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	binMu.Lock()
	defer binMu.Unlock()
	if p, ok := built[name]; ok {
		if p == "" {
			t.Fatalf("cmd/%s does not build (see the first test that needed it)", name)
		}
		return p
	}
	src := filepath.Join(repoRoot, "cmd", name)
	if m, _ := filepath.Glob(filepath.Join(src, "*.go")); len(m) == 0 {
		built[name] = ""
		t.Fatalf("cmd/%s: no such command", name)
	}
	// go test caches results by what the test binary reads; statting the
	// sources built here makes a change to them rerun the tests.
	for _, d := range []string{src, "fusefs", "objects"} {
		files, _ := filepath.Glob(filepath.Join(repoRoot, strings.TrimPrefix(d, repoRoot+"/"), "*.go"))
		for _, f := range files {
			os.Stat(f)
		}
	}
	out := filepath.Join(binDir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = repoRoot
	if msg, err := cmd.CombinedOutput(); err != nil {
		built[name] = ""
		t.Fatalf("go build ./cmd/%s: %v\n%s", name, err, msg)
	}
	built[name] = out
	return out
}

func TestMain(m *testing.M) {
	// The servers the tests start keep fs-verity trees in this run's
	// own directory, not the machine's (/var/cache for root).
	trees, err := os.MkdirTemp("", "composefs-tests-trees-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("COMPOSEFS_FUSE_TREE_CACHE", trees)
	code := m.Run()
	os.RemoveAll(trees)
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// run runs a command with a timeout and returns its combined output.
func run(t testing.TB, timeout time.Duration, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), fmt.Errorf("%s %q: timed out after %v", name, args, timeout)
	}
	return string(out), err
}

func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := run(t, 30*time.Second, name, args...)
	if err != nil {
		t.Fatalf("%s %q: %v\n%s", name, args, err, out)
	}
	return out
}

// lazyUnmount detaches a mount, ignoring "not mounted".
func lazyUnmount(dir string) {
	unix.Unmount(dir, unix.MNT_DETACH)
}

// mountedType returns the file system type mounted at dir ("" if none).
func mountedType(dir string) string { return mountinfo.TypeAt(dir) }

// tempDir is a fresh directory that outlives nothing: mounts on it are
// detached by the test's cleanup, which runs before t.TempDir's removal.
//
// It is reachable by every user (the unprivileged tests need that).
func tempDir(t testing.TB, name string) string {
	t.Helper()
	base := t.TempDir()
	for _, p := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	d := filepath.Join(base, name)
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// kernelMount mounts image the kernel's way: EROFS, then a read-only
// overlayfs with objects as the data-only lower layer.
func kernelMount(t testing.TB, image, objects string) string {
	t.Helper()
	e := tempDir(t, "erofs")
	m := tempDir(t, "kernel")
	if out, err := run(t, 30*time.Second, "mount", "-t", "erofs", "-o", "ro,loop", image, e); err != nil {
		t.Fatalf("mount -t erofs %s: %v\n%s", image, err, out)
	}
	t.Cleanup(func() { lazyUnmount(e) })
	opts := fmt.Sprintf("ro,metacopy=on,redirect_dir=on,lowerdir=%s::%s", e, objects)
	if out, err := run(t, 30*time.Second, "mount", "-t", "overlay", "overlay", "-o", opts, m); err != nil {
		t.Fatalf("mount -t overlay: %v\n%s", err, out)
	}
	t.Cleanup(func() { lazyUnmount(m) })
	return m
}

// fuseMount mounts image with composefs-fuse in the background (no -f): the
// command must return only once the mount is live.
func fuseMount(t testing.TB, image string, args ...string) string {
	t.Helper()
	m := tempDir(t, "fuse")
	out, err := tryFuseMount(t, image, m, args...)
	if err != nil {
		t.Fatalf("composefs-fuse %s: %v\n%s", image, err, out)
	}
	return m
}

func tryFuseMount(t testing.TB, image, mnt string, args ...string) (string, error) {
	t.Helper()
	bin := buildCmd(t, "composefs-fuse")
	t.Cleanup(func() { lazyUnmount(mnt) })
	uring := fuseuring.KernelEnabled()
	out, err := run(t, 30*time.Second, bin, append([]string{image, mnt}, args...)...)
	if err == nil && mountedType(mnt) != "fuse.composefs-fuse" {
		return out, fmt.Errorf("command returned 0 but %s shows no live mount (type %q)", mnt, mountedType(mnt))
	}
	recordSwitch(mnt, uring)
	if slices.Contains(args, "--passthrough") {
		passthroughMounts.Store(mnt, true)
	}
	return out, err
}

// foreground runs composefs-fuse -f and waits until the mount is live; its
// stderr collects in the returned buffer.
type foreground struct {
	cmd    *exec.Cmd
	mnt    string
	stderr *logbuf.Buffer
	// done is closed when the command has exited, with its error in err.
	done chan struct{}
	err  error
}

func fuseForeground(t testing.TB, image string, args ...string) *foreground {
	t.Helper()
	bin := buildCmd(t, "composefs-fuse")
	m := tempDir(t, "fuse")
	fg := &foreground{mnt: m, stderr: &logbuf.Buffer{}, done: make(chan struct{})}
	fg.cmd = exec.Command(bin, append([]string{"-f", image, m}, args...)...)
	fg.cmd.Stderr = fg.stderr
	uring := fuseuring.KernelEnabled()
	if err := fg.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		fg.err = fg.cmd.Wait()
		close(fg.done)
	}()
	t.Cleanup(func() {
		lazyUnmount(m)
		select {
		case <-fg.done:
		case <-time.After(10 * time.Second):
			fg.cmd.Process.Kill()
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for mountedType(m) != "fuse.composefs-fuse" {
		select {
		case <-fg.done:
			t.Fatalf("composefs-fuse -f exited before mounting: %v\n%s", fg.err, fg.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("composefs-fuse -f: no mount after 15s\n%s", fg.stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	recordSwitch(m, uring)
	return fg
}

// withWatchdog runs fn, and if it takes longer than d, aborts the FUSE
// connection of mnt so that whatever hangs comes back with ENOTCONN, then
// fails the test.
func withWatchdog(t testing.TB, mnt string, d time.Duration, fn func()) {
	t.Helper()
	// The abort finds the connection from the attributes the kernel
	// holds for mnt, without asking the server (DONT_SYNC): mnt must be
	// there, but its server need not answer (one killed answers
	// nothing).
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, mnt, unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st); err != nil {
		t.Fatalf("statx %s: %v", mnt, err)
	}
	done := make(chan struct{})
	fired := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(d):
			fuseuring.AbortConnection(mnt)
			close(fired)
		}
	}()
	fn()
	close(done)
	select {
	case <-fired:
		t.Fatalf("%s: requests hung for %v; connection aborted", mnt, d)
	default:
	}
}

// waitStderr waits until everything in want has been written to stderr (the
// copy from the child's pipe lags behind its writes) and returns it.
func (fg *foreground) waitStderr(want ...string) string {
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := fg.stderr.String()
		all := true
		for _, w := range want {
			all = all && strings.Contains(s, w)
		}
		if all || time.Now().After(deadline) {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
}
