package tests

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

const nobody = 65534

// asNobody runs a command as the unprivileged user nobody.
func asNobody(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	return asNobodyAt(t, "/", name, args...)
}

// asNobodyAt runs a command as nobody with home as its HOME.
func asNobodyAt(t *testing.T, home, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=" + home}
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestRootless mounts as an ordinary user, through fusermount3: the command
// must come back once the mount is live, serve inline and external files
// (without passthrough, which needs privilege), and go away on
// fusermount3 -u.
func TestRootless(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("fusermount3 not installed (apt-get install -y fuse3)")
	}
	bin := buildCmd(t, "composefs-fuse")

	top := nobodyTop(t, "composefs-rootless-")
	v := newVerityTree(t)
	image := filepath.Join(top, "image.cfs")
	data, err := os.ReadFile(v.image)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(image, data, 0o644); err != nil {
		t.Fatal(err)
	}
	objects := filepath.Join(top, "objects")
	if out, err := run(t, 30*time.Second, "cp", "-r", v.objects, objects); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	if out, err := run(t, 30*time.Second, "chmod", "-R", "a+rX", objects); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}
	mnt := nobodyMountpoint(t, top)

	if out, err := asNobody(t, bin, image, mnt, "--basedir", objects); err != nil {
		t.Fatalf("composefs-fuse as nobody: %v\n%s", err, out)
	}
	if typ := mountedType(mnt); typ != "fuse.composefs-fuse" {
		t.Fatalf("after the command returned, %s is mounted as %q", mnt, typ)
	}
	for name, want := range map[string][]byte{"inline": []byte("hello"), "good": v.good.Content, "nodigest": v.nodigest.Content} {
		out, err := asNobody(t, "cat", filepath.Join(mnt, name))
		if err != nil || out != string(want) {
			t.Errorf("cat %s as nobody: %v, %d bytes, want %d", name, err, len(out), len(want))
		}
	}
	if out, err := asNobody(t, "cat", filepath.Join(mnt, "bad")); err == nil {
		t.Errorf("cat bad as nobody succeeded: %d bytes", len(out))
	}
	if out, err := asNobody(t, "fusermount3", "-u", mnt); err != nil {
		t.Fatalf("fusermount3 -u as nobody: %v\n%s", err, out)
	}
	if typ := mountedType(mnt); typ != "" {
		t.Errorf("after fusermount3 -u, %s is still mounted (%s)", mnt, typ)
	}
}

// nobodyTop opens /dev/fuse to everyone for the test, and makes a
// directory everyone can reach, for what nobody needs.
func nobodyTop(t *testing.T, prefix string) string {
	t.Helper()
	st, err := os.Stat("/dev/fuse")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod("/dev/fuse", 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod("/dev/fuse", st.Mode().Perm()) })
	top, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(top) })
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	return top
}

// nobodyMountpoint makes top/mnt, owned by nobody for a mount of theirs,
// and unmounts whatever is left on it at the end of the test.
func nobodyMountpoint(t *testing.T, top string) string {
	t.Helper()
	mnt := filepath.Join(top, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(mnt, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lazyUnmount(mnt) })
	return mnt
}
