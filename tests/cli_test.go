package tests

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/internal/mountinfo"
	"github.com/composefs/composefs-go/verity"
)

// TestSignalUnmounts: composefs-fuse -f unmounts cleanly on SIGTERM and
// SIGINT, and exits as a shell reports a command the signal ended: 128 plus
// the signal's number.
func TestSignalUnmounts(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			fg := fuseForeground(t, v.image, "--basedir", v.objects)
			if _, err := os.ReadFile(filepath.Join(fg.mnt, "good")); err != nil {
				t.Fatal(err)
			}
			fg.cmd.Process.Signal(sig)
			select {
			case <-fg.done:
				if code := fg.cmd.ProcessState.ExitCode(); code != 128+int(sig) {
					t.Errorf("exit after %v: %v (status %d), want status %d\n%s", sig, fg.err, code, 128+int(sig), fg.stderr.String())
				}
			case <-time.After(15 * time.Second):
				t.Fatalf("still running 15s after %v", sig)
			}
			if typ := mountedType(fg.mnt); typ != "" {
				t.Errorf("still mounted (%s) after %v", typ, sig)
			}
		})
	}
}

// TestDaemonSignalStatus: the daemon that composefs-fuse leaves in the
// background unmounts on SIGTERM and SIGINT and exits as -f does, 128 plus
// the signal's number, which is what a supervisor watching its pid sees.
func TestDaemonSignalStatus(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			mnt := tempDir(t, "fuse")
			daemon := adoptDaemon(t, mnt, func() {
				if out, err := tryFuseMount(t, v.image, mnt, "--basedir", v.objects); err != nil {
					t.Fatalf("composefs-fuse: %v\n%s", err, out)
				}
			})
			if _, err := os.ReadFile(filepath.Join(mnt, "good")); err != nil {
				t.Fatal(err)
			}
			if err := daemon.signal(sig); err != nil {
				t.Fatal(err)
			}
			ws, err := daemon.wait(15 * time.Second)
			if err != nil {
				t.Fatalf("after %v: %v", sig, err)
			}
			if !ws.Exited() || ws.ExitStatus() != 128+int(sig) {
				t.Errorf("daemon's status after %v: %#x (exited %v, status %d), want exit status %d", sig, ws, ws.Exited(), ws.ExitStatus(), 128+int(sig))
			}
			if typ := mountedType(mnt); typ != "" {
				t.Errorf("still mounted (%s) after %v", typ, sig)
			}
		})
	}
}

// adopted is a daemon this process adopted: a child it can wait for.
type adopted struct {
	pid   int
	pidfd int // signals reach this process, never one that reuses its pid
	done  chan struct{}
	ws    unix.WaitStatus // once done is closed
	err   error           // Wait4's, once done is closed: ECHILD if not ours
}

// adoptDaemon runs start, which leaves a composefs-fuse daemon serving mnt
// in the background, as a child subreaper: the daemon, orphaned when the
// command that started it returns, becomes a child of this process rather
// than of init, and its exit status can be waited for. The subreaper
// setting is this process's own and lasts only while start runs.
func adoptDaemon(t *testing.T, mnt string, start func()) *adopted {
	t.Helper()
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Fatalf("becoming a child subreaper: %v", err)
	}
	func() {
		defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
		start()
	}()
	pid, err := childServing(mnt)
	if err != nil {
		t.Fatal(err)
	}
	// Until this process waits for it, the pid is the daemon's.
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	a := &adopted{pid: pid, pidfd: pidfd, done: make(chan struct{})}
	go func() {
		defer close(a.done)
		for {
			_, err := unix.Wait4(pid, &a.ws, 0, nil)
			if err != unix.EINTR {
				a.err = err
				return
			}
		}
	}()
	// Whatever the test makes of it, the daemon does not outlive it,
	// nor stays a zombie of this process.
	t.Cleanup(func() {
		select {
		case <-a.done:
		default:
			a.signal(unix.SIGKILL)
			a.wait(10 * time.Second)
		}
		unix.Close(pidfd)
	})
	return a
}

func (a *adopted) signal(sig syscall.Signal) error {
	return unix.PidfdSendSignal(a.pidfd, sig, nil, 0)
}

// wait waits up to d for the daemon's exit, and returns its status.
func (a *adopted) wait(d time.Duration) (unix.WaitStatus, error) {
	select {
	case <-a.done:
		if a.err != nil {
			return 0, fmt.Errorf("waiting for daemon %d: %w", a.pid, a.err)
		}
		return a.ws, nil
	case <-time.After(d):
		return 0, fmt.Errorf("daemon %d still running after %v", a.pid, d)
	}
}

// childServing finds the child of this process whose command line names
// mnt, from /proc.
func childServing(mnt string) (int, error) {
	self := strconv.Itoa(os.Getpid())
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		status, err := os.ReadFile(filepath.Join(p, "status"))
		if err != nil || !strings.Contains(string(status), "\nPPid:\t"+self+"\n") {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		if !strings.Contains(string(cmdline), "\x00"+mnt+"\x00") {
			continue
		}
		return strconv.Atoi(filepath.Base(p))
	}
	return 0, fmt.Errorf("no child of this process serves %s: the daemon was not adopted", mnt)
}

// TestSignalBusy: with a file held open, SIGTERM detaches the mount lazily
// and the server serves on until the file is closed.
func TestSignalBusy(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	fg := fuseForeground(t, v.image, "--basedir", v.objects)
	f, err := os.Open(filepath.Join(fg.mnt, "inline"))
	if err != nil {
		t.Fatal(err)
	}
	fg.cmd.Process.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for mountedType(fg.mnt) != "" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if typ := mountedType(fg.mnt); typ != "" {
		t.Fatalf("still mounted (%s) 10s after SIGTERM with a busy mount; server said:\n%s", typ, fg.stderr.String())
	}
	// (the tree lacks an object: a warning came before)
	said := fg.waitStderr("unmount")
	if i := strings.Index(said, "unmount"); i < 0 || strings.Count(said[i:], "\n") > 1 || !strings.Contains(said[i:], "lazily") {
		t.Errorf("after SIGTERM on a busy mount the server said %q, want one line about the lazy unmount", said)
	}
	b := make([]byte, 5)
	if n, err := f.ReadAt(b, 0); err != nil || string(b[:n]) != "hello" {
		t.Errorf("the open file no longer reads: %q %v", b[:n], err)
	}
	f.Close()
	select {
	case <-fg.done:
		if code := fg.cmd.ProcessState.ExitCode(); code != 143 {
			t.Errorf("exit: %v (status %d), want 143\n%s", fg.err, code, fg.stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("server still running 15s after its last file closed")
	}
}

// TestMountHelper mounts through mount(8) and mount.fuse3 as an fstab line
// would: type fuse, the command named before '#', settings as -o options,
// with the generic options mount(8) adds (rw, dev, suid, noatime...).
func TestMountHelper(t *testing.T) {
	requireRoot(t)
	if _, err := os.Stat("/usr/sbin/mount.fuse3"); err != nil {
		if _, err := os.Stat("/sbin/mount.fuse3"); err != nil {
			t.Skip("mount.fuse3 not installed (apt-get install -y fuse3)")
		}
	}
	bin := buildCmd(t, "composefs-fuse")
	v := newVerityTree(t)
	mnt := tempDir(t, "mnt")
	t.Cleanup(func() { lazyUnmount(mnt) })
	opts := "basedir=" + v.objects + ",verity=require,nofail,_netdev,noatime,defaults,nodev"
	out, err := run(t, 30*time.Second, "mount", "-t", "fuse", bin+"#"+v.image, mnt, "-o", opts)
	if err != nil {
		t.Fatalf("mount: %v\n%s", err, out)
	}
	if typ := mountedType(mnt); typ != "fuse.composefs-fuse" {
		t.Fatalf("mounted as %q", typ)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "good")); err != nil || len(got) != len(v.good.Content) {
		t.Errorf("good: %d bytes, %v", len(got), err)
	}
	if _, err := readErrno(filepath.Join(mnt, "nodigest")); err != syscall.EIO {
		t.Errorf("nodigest under verity=require from -o: %v, want EIO", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	for _, line := range strings.Split(string(mounts), "\n") {
		if f := strings.Fields(line); len(f) > 3 && f[1] == mnt {
			if !strings.Contains(","+f[3]+",", ",ro,") || !strings.Contains(f[3], "nodev") {
				t.Errorf("mount options %q lack ro or nodev", f[3])
			}
			if f[0] != v.image {
				t.Errorf("mount source %q, want the image %q", f[0], v.image)
			}
		}
	}
	if out, err := run(t, 30*time.Second, "umount", mnt); err != nil {
		t.Errorf("umount: %v\n%s", err, out)
	}
}

// TestNodevNosuidDefault: composefs-fuse mounts nosuid,nodev unless told
// otherwise, so a device node in the image (a root file system's
// /dev/null, say) does not open until -o dev,suid, which also drops
// nosuid.
func TestNodevNosuidDefault(t *testing.T) {
	requireRoot(t)
	image := writeImage(t, "/ 0 40755 2 0 0 0 0.0 - - -\n/null 0 20666 1 0 0 259 0.0 - - -\n", 1)
	for _, tc := range []struct {
		args   []string
		nosuid bool
	}{
		{nil, true},
		{[]string{"-o", "dev,suid"}, false},
	} {
		mnt := fuseMount(t, image, tc.args...)
		opts := ""
		mounts, _ := os.ReadFile("/proc/self/mounts")
		for _, line := range strings.Split(string(mounts), "\n") {
			if f := strings.Fields(line); len(f) > 3 && f[1] == mnt {
				opts = "," + f[3] + ","
			}
		}
		if strings.Contains(opts, ",nosuid,") != tc.nosuid || strings.Contains(opts, ",nodev,") != tc.nosuid {
			t.Errorf("%q: mount options %q, want nosuid,nodev %v", tc.args, opts, tc.nosuid)
		}
		f, err := os.OpenFile(filepath.Join(mnt, "null"), os.O_WRONLY, 0)
		if tc.nosuid && !errors.Is(err, syscall.EACCES) {
			t.Errorf("%q: opening the device node: %v, want EACCES", tc.args, err)
		}
		if !tc.nosuid && err != nil {
			t.Errorf("%q: opening the device node: %v", tc.args, err)
		}
		if err == nil {
			f.Close()
		}
	}
}

// TestWritesRefused: every way of writing answers EROFS.
func TestWritesRefused(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	mnt := fuseMount(t, v.image, "--basedir", v.objects)
	p := func(n string) string { return filepath.Join(mnt, n) }
	checks := map[string]error{
		"create":   os.WriteFile(p("new"), nil, 0o644),
		"write":    os.WriteFile(p("inline"), []byte("x"), 0o644),
		"mkdir":    os.Mkdir(p("d"), 0o755),
		"remove":   os.Remove(p("inline")),
		"rename":   os.Rename(p("inline"), p("x")),
		"symlink":  os.Symlink("x", p("l")),
		"link":     os.Link(p("inline"), p("l")),
		"chmod":    os.Chmod(p("inline"), 0o600),
		"chown":    os.Lchown(p("inline"), 1, 1),
		"truncate": os.Truncate(p("inline"), 0),
		"utimes":   os.Chtimes(p("inline"), time.Now(), time.Now()),
		"setxattr": syscall.Setxattr(p("inline"), "user.x", []byte("1"), 0),
		"mknod":    syscall.Mknod(p("fifo"), syscall.S_IFIFO|0o644, 0),
	}
	for op, err := range checks {
		var errno syscall.Errno
		if pe, ok := err.(*os.PathError); ok {
			err = pe.Err
		}
		if le, ok := err.(*os.LinkError); ok {
			err = le.Err
		}
		errno, _ = err.(syscall.Errno)
		if errno != syscall.EROFS {
			t.Errorf("%s: %v, want EROFS", op, err)
		}
	}
}

// TestMountTwiceRefused: a mountpoint that already has a composefs-fuse
// mount gets no second one stacked on it: exit 1, naming it.
func TestMountTwiceRefused(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	mnt := fuseMount(t, v.image, "--basedir", v.objects)
	out, err := tryFuseMount(t, v.image, mnt, "--basedir", v.objects)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("second mount on %s: %v, want exit status 1\n%s", mnt, err, out)
	}
	if !strings.Contains(out, mnt) || !strings.Contains(out, "already") || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Errorf("second mount said %q, want one line naming %s as already mounted", out, mnt)
	}
	if n := mountinfo.CountAt(mnt); n != 1 {
		t.Errorf("%d mounts on %s, want 1", n, mnt)
	}
}

// TestErrorsOneLine: what goes wrong before the mount is one line naming
// each thing once, with a helper's exit decoded, in the foreground and in
// the background alike: no warning comes before it (of missing objects, or
// of a daemon without syslog), for a mount that never was.
func TestErrorsOneLine(t *testing.T) {
	requireRoot(t)
	bin := buildCmd(t, "composefs-fuse")
	oneLine := func(t *testing.T, out string, want ...string) {
		t.Helper()
		out = strings.TrimSuffix(out, "\n")
		if strings.Contains(out, "\n") {
			t.Errorf("more than one line:\n%s", out)
		}
		for _, w := range want {
			if n := strings.Count(out, w); n != 1 {
				t.Errorf("%q %d times in %q, want once", w, n, out)
			}
		}
	}
	modes := []struct {
		name string
		args []string
	}{{"foreground", []string{"-f"}}, {"background", nil}}
	for _, m := range modes {
		t.Run("image is a directory/"+m.name, func(t *testing.T) {
			dir := tempDir(t, "image")
			out, err := run(t, 30*time.Second, bin, append(m.args, dir, tempDir(t, "mnt"))...)
			if err == nil {
				t.Fatalf("mounted a directory as the image")
			}
			oneLine(t, out, dir)
		})
	}
	// What cannot be opened is named once, then the cause: the objects
	// package names a repository or store, and no layer above says it
	// again.
	cfs := writeImage(t, "/ 0 40755 2 0 0 0 0.0 - - -\n", 1)
	missing := filepath.Join(tempDir(t, "gone"), "missing")
	empty := tempDir(t, "empty")
	repo := tempDir(t, "repo")
	if err := os.WriteFile(filepath.Join(repo, "meta.json"), []byte(`{"version":1,"algorithm":"fsverity-sha256-12"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "mnt")
	// A wrong --digest: the image named once, by the command, not again
	// by the composefs package that checked it.
	actual, err := verity.DigestPath(verity.SHA256, cfs)
	if err != nil {
		t.Fatal(err)
	}
	zero := strings.Repeat("00", 32)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"image missing", []string{missing, dir}, missing + ": no such file or directory"},
		{"mountpoint missing", []string{cfs, missing}, "mountpoint " + missing + ": no such file or directory"},
		{"repository missing", []string{"--repo", missing, "IMAGE", dir}, "repository " + missing + ": no such file or directory"},
		{"repository a file", []string{"--repo", cfs, "IMAGE", dir}, "repository " + cfs + ": not a directory"},
		{"repository empty", []string{"--repo", empty, "IMAGE", dir},
			"repository " + empty + ": no meta.json, and cannot infer the algorithm: objects/: no such file or directory"},
		{"image not in repository", []string{"--repo", repo, "IMAGE", dir}, `image "IMAGE" not found in ` + repo + ": no such file or directory"},
		{"basedir missing", []string{"--basedir", missing, cfs, dir}, "object store " + missing + ": no such file or directory"},
		{"image digest wrong", []string{"--digest", zero, cfs, dir},
			fmt.Sprintf("%s: fs-verity digest mismatch: expected sha256:%s, actual sha256:%x", cfs, zero, actual)},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := run(t, 30*time.Second, bin, append([]string{"-f"}, c.args...)...)
			if err == nil {
				t.Fatalf("%q mounted", c.args)
			}
			if want := "composefs-fuse: " + c.want + "\n"; out != want {
				t.Errorf("%q said %q, want %q", c.args, out, want)
			}
		})
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed (apt-get install -y fuse3)")
	}
	// As nobody the command mounts through fusermount3: one that fails
	// saying two lines, or is killed.
	top, err := os.MkdirTemp("", "composefs-helper-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	// An external file and no store: a mount would warn of it.
	image := filepath.Join(top, "image.cfs")
	data, err := os.ReadFile(writeImage(t, "/ 0 40755 2 0 0 0 0.0 - - -\n/inline 5 100644 1 0 0 0 0.0 - hello -\n"+
		"/ext 4096 100644 1 0 0 0 0.0 ab/cdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789 - abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, data, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := nobodyMountpoint(t, top)
	for _, c := range []struct{ name, script, want string }{
		{"exits 3", "echo first line >&2; echo second line >&2; exit 3", "exit status 3: first line; second line"},
		{"killed", "kill -KILL $$", "killed by signal 9 (SIGKILL)"},
	} {
		fake := filepath.Join(top, strings.ReplaceAll(c.name, " ", "-"))
		if err := os.Mkdir(fake, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(fake, "fusermount3"), []byte("#!/bin/sh\n"+c.script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, m := range modes {
			t.Run("fusermount3 "+c.name+"/"+m.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				cmd := exec.CommandContext(ctx, bin, append(m.args, image, mnt)...)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
				cmd.Env = []string{"PATH=" + fake + ":/usr/bin:/bin", "HOME=/"}
				cmd.Dir = "/"
				out, err := cmd.CombinedOutput()
				if err == nil {
					t.Fatalf("mounted through a failing fusermount3")
				}
				oneLine(t, string(out), mnt, c.want)
			})
		}
	}
}

// TestMissingObjectsWarned: a store that lacks objects of the image, or no
// store at all, is said on stderr before the command returns; the mount
// goes ahead.
func TestMissingObjectsWarned(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t) // four objects, one of them missing
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"basedir", []string{"--basedir", v.objects}, "missing=1 objects=4"},
		{"check-objects", []string{"--basedir", v.objects, "--check-objects"}, "missing=1 objects=4"},
		{"no store", nil, "no --basedir or --repo"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := tryFuseMount(t, v.image, tempDir(t, "fuse"), c.args...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			if !strings.Contains(out, c.want) || !strings.Contains(out, "ENOENT") {
				t.Errorf("said %q, want %q and ENOENT", out, c.want)
			}
		})
	}
	full := newVerityTree(t)
	full.missing.Put(t, full.objects, full.missing.Content)
	if out, err := tryFuseMount(t, full.image, tempDir(t, "fuse"), "--basedir", full.objects); err != nil || strings.Contains(out, "missing") {
		t.Errorf("with every object: %v, said %q", err, out)
	}
}

// TestDaemonLog: in the background, --log (or -o log=) appends the log
// lines to a file; without it and without syslog, the command says at
// mount time that later errors will not be seen.
func TestDaemonLog(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	for _, c := range []struct{ name, opt string }{{"--log", "--log="}, {"-o log", "-olog="}} {
		t.Run(c.name, func(t *testing.T) {
			logFile := filepath.Join(t.TempDir(), "fuse.log")
			if err := os.WriteFile(logFile, []byte("kept\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			mnt := fuseMount(t, v.image, "--basedir", v.objects, c.opt+logFile)
			if _, err := readErrno(filepath.Join(mnt, "missing")); err != syscall.ENOENT {
				t.Errorf("missing: %v, want ENOENT", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			var got []byte
			for !strings.Contains(string(got), "/missing") && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				got, _ = os.ReadFile(logFile)
			}
			if !strings.HasPrefix(string(got), "kept\n") || !strings.Contains(string(got), "/missing") {
				t.Errorf("log file holds %q, want what was there and a line about /missing", got)
			}
			if n := strings.Count(string(got), v.missing.Payload); n != 1 {
				t.Errorf("the object named %d times in %q, want once", n, got)
			}
		})
	}
	t.Run("no syslog", func(t *testing.T) {
		if _, err := os.Stat("/dev/log"); err == nil {
			t.Skip("/dev/log exists: the log goes to syslog")
		}
		out, err := tryFuseMount(t, v.image, tempDir(t, "fuse"), "--basedir", v.objects)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if !strings.Contains(out, "will not be seen") || !strings.Contains(out, "--log") {
			t.Errorf("said %q, want that errors after the mount will not be seen without --log", out)
		}
	})
}
