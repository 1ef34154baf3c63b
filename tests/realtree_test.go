package tests

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestRealTree images a real directory tree of this machine, such as /usr
// or a whole root file system, named by COMPOSEFS_REAL_TREE, with our
// mkcomposefs (objects left in place: each redirect names the file's own
// path in the tree), and compares our mount with the kernel's entry by
// entry, contents included. It takes minutes on a large tree, so it runs
// only when asked:
//
//	COMPOSEFS_REAL_TREE=/usr go test -run RealTree -timeout 30m ./tests
func TestRealTree(t *testing.T) {
	src := os.Getenv("COMPOSEFS_REAL_TREE")
	if src == "" {
		t.Skip("set COMPOSEFS_REAL_TREE to a directory to image and compare (e.g. /usr)")
	}
	requireRoot(t)
	defer func(m int) { maxEntries = m }(maxEntries)
	maxEntries = 10_000_000
	mk := buildCmd(t, "mkcomposefs")
	img := filepath.Join(tempDir(t, "image"), "real.cfs")
	start := time.Now()
	if out, err := run(t, 30*time.Minute, mk, src, img); err != nil {
		t.Fatalf("mkcomposefs %s: %v\n%s", src, err, out)
	}
	t.Logf("imaged %s in %.1fs", src, time.Since(start).Seconds())
	kernel := kernelMount(t, img, src)
	ours := fuseMount(t, img, "--basedir", src)
	start = time.Now()
	compareTrees(t, kernel, ours)
	t.Logf("compared in %.1fs", time.Since(start).Seconds())
	checkDefaultTransport(t, ours)
}
