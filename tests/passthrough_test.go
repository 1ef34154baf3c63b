package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

var backingOpen = regexp.MustCompile(`BACKING_OPEN .*: id (\d+) \(([^)]*)\)`)

// TestPassthrough checks, from go-fuse's debug log, that as root external
// files are handed to the kernel with FUSE passthrough, from a plain object
// directory and from one on overlayfs (stacking depth 2).
func TestPassthrough(t *testing.T) {
	requireRoot(t)
	v := newVerityTree(t)
	ovl := tempDir(t, "objects-on-overlay")
	empty := tempDir(t, "empty")
	if out, err := run(t, 30*time.Second, "mount", "-t", "overlay", "overlay", "-o", "ro,lowerdir="+v.objects+":"+empty, ovl); err != nil {
		t.Fatalf("mount overlay: %v\n%s", err, out)
	}
	t.Cleanup(func() { lazyUnmount(ovl) })
	for name, objects := range map[string]string{"plain": v.objects, "overlayfs": ovl} {
		t.Run(name, func(t *testing.T) {
			fg := fuseForeground(t, v.image, "--basedir", objects, "--debug")
			got, err := os.ReadFile(filepath.Join(fg.mnt, "good"))
			if err != nil || !bytes.Equal(got, v.good.Content) {
				t.Fatalf("good: %d bytes, %v", len(got), err)
			}
			log := fg.waitStderr("BACKING_OPEN")
			m := backingOpen.FindStringSubmatch(log)
			if m == nil {
				t.Fatalf("no BACKING_OPEN in the debug log")
			}
			if m[1] == "0" || m[2] != "errno 0" {
				t.Errorf("passthrough registration failed: %s", m[0])
			}
		})
	}
}
