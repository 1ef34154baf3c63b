package tests

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const snapshotEnv = "COMPOSEFS_SNAPSHOT_DIR"
const snapshotMark = "SNAPSHOT-JSON: "

// TestSnapshotHelper is no test of its own: TestUnprivilegedView runs the
// test binary as another user to snapshot a mount with that user's rights.
func TestSnapshotHelper(t *testing.T) {
	dir := os.Getenv(snapshotEnv)
	if dir == "" {
		t.Skip("helper for TestUnprivilegedView")
	}
	b, err := json.Marshal(takeSnapshot(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("\n%s%s\n", snapshotMark, b)
}

// TestUnprivilegedView compares what an unprivileged user sees of a random
// tree (owners, modes, POSIX ACLs, trusted.* xattrs) through the kernel and
// through composefs-fuse mounted by root with --allow-other: the same
// permission checks, the same hidden xattrs.
func TestUnprivilegedView(t *testing.T) {
	requireRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(tempDir(t, "bin"), "tests.test")
	copyFile(t, self, exe, 0o755)

	snapshotAs := func(dir string) *snapshot {
		t.Helper()
		cmd := exec.Command(exe, "-test.run=^TestSnapshotHelper$", "-test.count=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		cmd.Env = []string{snapshotEnv + "=" + dir, "PATH=/usr/bin:/bin"}
		cmd.Dir = "/"
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		done := make(chan error, 1)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { done <- cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(time.Minute):
			cmd.Process.Kill()
			t.Fatalf("snapshot of %s as nobody hung", dir)
		}
		if err != nil {
			t.Fatalf("snapshot of %s as nobody: %v\n%s", dir, err, out.String())
		}
		sc := bufio.NewScanner(&out)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), snapshotMark); ok {
				var s snapshot
				if err := json.Unmarshal([]byte(line), &s); err != nil {
					t.Fatal(err)
				}
				return &s
			}
		}
		t.Fatalf("no snapshot from the helper:\n%s", out.String())
		return nil
	}

	tree := genTree(21, 200)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			image := tree.image(t, v)
			kernel := kernelMount(t, image, objects)
			ours := fuseMount(t, image, "--basedir", objects, "--allow-other")
			ks := snapshotAs(kernel)
			os := snapshotAs(ours)
			denied := 0
			for _, e := range ks.Entries {
				if strings.Contains(e.Content, "EACCES") {
					denied++
				}
			}
			if denied == 0 {
				t.Errorf("nobody was refused nothing: the tree tests no permissions")
			}
			reportDiffs(t, snapshotDiffs(ks, os), len(ks.Entries))
			t.Logf("%d files nobody may not read", denied)
		})
	}
}

func copyFile(t testing.TB, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
