package tests

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestInstall: make install lays out the commands and their man pages
// under DESTDIR and PREFIX, and the installed composefs-fuse mounts through
// mount(8) and mount.fuse3, from the command line and from an fstab line
// (mount -T FSTAB MOUNTPOINT).
//
// mount(8) takes PATH out of the environment of the helpers it runs, and
// mount.fuse3's /bin/sh then looks for the type's subtype on its default
// search path, which holds /usr/local/bin but no scratch directory. So the
// install under a scratch PREFIX is mounted the way any other PREFIX is,
// with type fuse and the binary named in the source (BIN#IMAGE); and, as
// if the install had used the default PREFIX, in a mount namespace of its
// own in which PREFIX/bin is bound onto /usr/local/bin, with type
// fuse.composefs-fuse. mount(8) also runs /sbin/mount.fuse.composefs-fuse
// by itself when there is one: that too is tried in a mount namespace,
// with a tmpfs on /sbin holding only that link to PREFIX/bin's binary.
// Nothing outside the scratch directory is written.
func TestInstall(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"make", "unshare", "mount.fuse3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed: %v", tool, err)
		}
	}
	// go test reruns a cached test when a file it looked at changed;
	// make reads these, not the test.
	files, _ := filepath.Glob(filepath.Join(repoRoot, "docs", "man", "*.1"))
	for _, f := range append(files, filepath.Join(repoRoot, "Makefile")) {
		os.Stat(f)
	}
	scratch := tempDir(t, "install")
	dest, prefix := filepath.Join(scratch, "dest"), filepath.Join(scratch, "prefix")
	out, err := run(t, 10*time.Minute, "make", "-C", repoRoot, "install",
		"DESTDIR="+dest, "PREFIX="+prefix, "BUILDDIR="+filepath.Join(scratch, "build"))
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	root := dest + prefix
	for _, cmd := range []string{"mkcomposefs", "composefs-info", "composefs-fuse", "composefs-bench", "cfsctl"} {
		if st, err := os.Stat(filepath.Join(root, "bin", cmd)); err != nil || st.Mode().Perm() != 0o755 {
			t.Errorf("bin/%s: %v, %v", cmd, st, err)
		}
		if st, err := os.Stat(filepath.Join(root, "share/man/man1", cmd+".1")); err != nil || st.Mode().Perm() != 0o644 {
			t.Errorf("share/man/man1/%s.1: %v, %v", cmd, st, err)
		}
	}
	bin := filepath.Join(root, "bin")
	if out, err := run(t, 30*time.Second, filepath.Join(bin, "composefs-fuse"), "--version"); err != nil || !strings.HasPrefix(out, "composefs-fuse ") {
		t.Errorf("installed composefs-fuse --version: %q, %v", out, err)
	}

	v := newVerityTree(t)
	want := filepath.Join(scratch, "good")
	if err := os.WriteFile(want, v.good.Content, 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := tempDir(t, "mnt")
	t.Cleanup(func() { lazyUnmount(mnt) })
	fstab := func(name, line string) string {
		p := filepath.Join(scratch, name)
		if err := os.WriteFile(p, []byte(line+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	named := filepath.Join(bin, "composefs-fuse") + "#" + v.image
	typed := fstab("fstab.typed", fmt.Sprintf("%s %s fuse.composefs-fuse ro,basedir=%s,nodev,nosuid 0 0", v.image, mnt, v.objects))
	sbin, err := filepath.EvalSymlinks("/sbin")
	if err != nil {
		t.Fatal(err)
	}
	onLocalBin := fmt.Sprintf("mount --bind '%s' /usr/local/bin", bin)
	sbinLink := fmt.Sprintf("mount -t tmpfs composefs-test %[1]s && ln -s '%[2]s/composefs-fuse' %[1]s/mount.fuse.composefs-fuse", sbin, bin)
	for _, tc := range []struct {
		name string
		// namespace, when not empty, is run first in a mount namespace
		// of the test's own, which then runs the mount.
		namespace string
		mount     string
		// nosuid: the mount must be nosuid,nodev (else it must not be).
		nosuid bool
	}{
		{"command line, BIN#IMAGE", "", fmt.Sprintf("mount -t fuse '%s' '%s' -o basedir='%s',nodev,nosuid", named, mnt, v.objects), true},
		{"fstab, BIN#IMAGE", "", fmt.Sprintf("mount -T '%s' '%s'", fstab("fstab.named", fmt.Sprintf("%s %s fuse ro,basedir=%s 0 0", named, mnt, v.objects)), mnt), false},
		{"command line, fuse.composefs-fuse", onLocalBin, fmt.Sprintf("mount -t fuse.composefs-fuse '%s' '%s' -o basedir='%s'", v.image, mnt, v.objects), false},
		{"fstab, fuse.composefs-fuse", onLocalBin, fmt.Sprintf("mount -T '%s' '%s'", typed, mnt), true},
		// Not through mount.fuse3, which adds dev,suid: composefs-fuse's
		// own default, nosuid,nodev.
		{"fstab, /sbin/mount.fuse.composefs-fuse", sbinLink, fmt.Sprintf("mount -T '%s' '%s'", fstab("fstab.sbin", fmt.Sprintf("%s %s fuse.composefs-fuse ro,basedir=%s 0 0", v.image, mnt, v.objects)), mnt), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The script mounts, shows the mount's line of
			// /proc/self/mounts, compares a file read through it with
			// its content and unmounts; on its way out, whatever
			// happened, nothing stays mounted.
			script := fmt.Sprintf(`set -e
trap 'umount -l %[1]s 2>/dev/null || true' EXIT
%[2]s
grep ' %[1]s ' /proc/self/mounts
cmp %[1]s/good %[3]s
umount %[1]s
`, mnt, tc.mount, want)
			args := []string{"sh", "-c", script}
			if tc.namespace != "" {
				if st, err := os.Stat("/usr/local/bin"); tc.namespace == onLocalBin && (err != nil || !st.IsDir()) {
					t.Skipf("no /usr/local/bin to bind the install onto: %v", err)
				}
				script = tc.namespace + "\n" + script
				args = []string{"unshare", "--mount", "--propagation", "private", "sh", "-c", script}
			}
			out, err := run(t, time.Minute, args[0], args[1:]...)
			if err != nil {
				t.Fatalf("%s: %v\n%s", tc.mount, err, out)
			}
			var opts []string
			for _, l := range strings.Split(out, "\n") {
				if f := strings.Fields(l); len(f) > 3 && f[1] == mnt {
					if f[0] != v.image || f[2] != "fuse.composefs-fuse" {
						t.Errorf("mounted %s as %s, want %s as fuse.composefs-fuse", f[0], f[2], v.image)
					}
					opts = strings.Split(f[3], ",")
				}
			}
			if opts == nil {
				t.Fatalf("no line for %s in /proc/self/mounts:\n%s", mnt, out)
			}
			has := func(o string) bool { return strings.Contains(","+strings.Join(opts, ",")+",", ","+o+",") }
			if !has("ro") || has("nosuid") != tc.nosuid || has("nodev") != tc.nosuid {
				t.Errorf("mount options %q: want ro, and nosuid,nodev %v", opts, tc.nosuid)
			}
		})
	}
}
