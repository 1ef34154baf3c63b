package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPrintRefTable: umoci's figure is the OCI table's reference column,
// cfsctl's ratio to it follows, and a figure not measured is a dash, its
// ratio too.
func TestPrintRefTable(t *testing.T) {
	var out bytes.Buffer
	printRefTable(&out, ociTable([]refRow{
		{"pull + mount", "s", 6, 1.5, ""},
		{"pull again", "s", 0, 0.25, ""},
		{"on disk", "MiB", 200, 100, "0.6"},
	}))
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("want a title, a header and 3 rows, got:\n%s", out.String())
	}
	if h := strings.Fields(lines[1]); strings.Join(h, " ") != "measurement umoci cfsctl ratio bar" {
		t.Errorf("header %q", lines[1])
	}
	for i, want := range [][]string{
		{"6.000 s", "1.500 s", "0.25", "-"},
		{"-", "250.0 ms", "-", "-"},
		{"200.0 MiB", "100.0 MiB", "0.50", "0.6"},
	} {
		line := lines[2+i]
		// The figures sit under their headers, right-aligned.
		for j, col := range []string{"umoci", "cfsctl", "ratio", "bar"} {
			end := strings.Index(lines[1], col) + len(col)
			if end > len(line) || !strings.HasSuffix(line[:end], want[j]) {
				t.Errorf("row %d: %q under %s, want it ending at column %d: %q", i, want[j], col, end, line)
			}
		}
	}
	out.Reset()
	printRefTable(&out, ociTable(nil))
	if out.Len() != 0 {
		t.Errorf("no rows printed %q", out.String())
	}
}

// TestDiskMiB: blocks on disk, a hardlinked file counted once.
func TestDiskMiB(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if err := os.WriteFile(a, bytes.Repeat([]byte{1}, 3<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := diskMiB(dir)
	if err != nil {
		t.Fatal(err)
	}
	if before < 3 || before > 3.1 {
		t.Fatalf("3 MiB file: %.3f MiB on disk", before)
	}
	if err := os.Link(a, filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	if after, err := diskMiB(dir); err != nil || after != before {
		t.Errorf("with a hardlink: %.3f MiB, %v; want %.3f", after, err, before)
	}
	if _, err := diskMiB(filepath.Join(dir, "missing")); err == nil {
		t.Error("diskMiB of a missing directory: no error")
	}
}

// TestMissingOCITool: without umoci and skopeo on PATH the rows are
// skipped with the package to install named.
func TestMissingOCITool(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	err := missingOCITool()
	if err == nil || !strings.Contains(err.Error(), "apt-get install umoci") {
		t.Errorf("nothing on PATH: %v", err)
	}
}

// TestMakeLayout: the layer umoci makes of a root keeps owners, modes,
// xattrs and hardlinks, as umoci unpack shows.
func TestMakeLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: owners and trusted xattrs")
	}
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skip("no umoci (Debian package umoci)")
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	f := filepath.Join(root, "etc", "f")
	must(os.WriteFile(f, []byte("content\n"), 0o640))
	// chown clears the setuid bit: the mode last.
	must(os.Chown(f, 1234, 5678))
	must(unix.Chmod(f, 0o4750)) // os.Chmod takes os.ModeSetuid, not 0o4000
	must(os.Link(f, filepath.Join(root, "etc", "g")))
	if err := unix.Lsetxattr(f, "user.bench", []byte("value"), 0); err != nil {
		t.Skipf("no user xattrs here: %v", err)
	}
	if fi, err := os.Stat(f); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Fatalf("the file to insert: %v, %v", fi.Mode(), err)
	}
	layout := filepath.Join(dir, "layout")
	must(makeLayout(layout, root))
	bundle := filepath.Join(dir, "bundle")
	if _, err := runOCI("umoci", "unpack", "--image", layout+":debian", bundle); err != nil {
		t.Fatal(err)
	}
	var st, st2 syscall.Stat_t
	uf := filepath.Join(bundle, "rootfs", "etc", "f")
	must(syscall.Lstat(uf, &st))
	must(syscall.Lstat(filepath.Join(bundle, "rootfs", "etc", "g"), &st2))
	if st.Mode&0o7777 != 0o4750 || st.Uid != 1234 || st.Gid != 5678 {
		t.Errorf("unpacked file: mode %o, owner %d:%d; want 4750, 1234:5678", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Ino != st2.Ino {
		t.Error("the hardlink was unpacked as a separate file")
	}
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(uf, "user.bench", buf)
	if err != nil || string(buf[:n]) != "value" {
		t.Errorf("xattr user.bench: %q, %v", buf[:max(n, 0)], err)
	}
}
