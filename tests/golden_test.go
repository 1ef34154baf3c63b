package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestGoldenImages mounts every C golden image (and composefs-rs' V2 ones)
// with the kernel and with composefs-fuse, over one object directory holding
// an object for every redirect, and compares the two views entry by entry.
func TestGoldenImages(t *testing.T) {
	requireRoot(t)
	images := goldenImages(t, "*.cfs")
	for _, image := range images {
		name := strings.TrimSuffix(filepath.Base(image), ".cfs")
		if filepath.Base(filepath.Dir(image)) == "rs" {
			name = "rs/" + name
		}
		t.Run(name, func(t *testing.T) {
			objects := tempDir(t, "objects")
			n := fillObjects(t, image, objects)
			kernel := kernelMount(t, image, objects)
			ours := fuseMount(t, image, "--basedir", objects, "--verity=off")
			// The largest image takes half a minute to compare on two
			// CPUs alone, over a minute beside a second test run: the
			// watchdog is there for hangs, which it still catches well
			// inside go test's timeout, and names the mount.
			withWatchdog(t, ours, 5*time.Minute, func() { compareTrees(t, kernel, ours) })
			checkDefaultTransport(t, ours)
			t.Logf("%d objects", n)
		})
	}
}
