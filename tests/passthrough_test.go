package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// backingOpen matches the debug line of a backing file registration
// (fuseconn/notify.go), which succeeded or failed.
var backingOpen = regexp.MustCompile(`passthrough backing file (registered|refused) fd=\d+ (.*)`)

// TestPassthrough checks, from the debug log, that as root with
// --passthrough external files are handed to the kernel with FUSE passthrough, from a plain object
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
			fg := fuseForeground(t, v.image, "--basedir", objects, "--debug", "--passthrough")
			got, err := os.ReadFile(filepath.Join(fg.mnt, "good"))
			if err != nil || !bytes.Equal(got, v.good.Content) {
				t.Fatalf("good: %d bytes, %v", len(got), err)
			}
			log := fg.waitStderr("passthrough backing file")
			m := backingOpen.FindStringSubmatch(log)
			if m == nil {
				t.Fatalf("no backing file registration in the debug log:\n%s", log)
			}
			if m[1] != "registered" || m[2] == "id=0" {
				t.Errorf("passthrough registration failed: %s", m[0])
			}
		})
	}
}
