package dirscan

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/golden"
)

// extractGoldenTree extracts ../shared/golden/c/trees/tree-501.tar as C's
// golden data was made (as root, keeping xattrs, owners, devices) and
// returns the top directory.
func extractGoldenTree(t *testing.T) string {
	t.Helper()
	tarball := golden.Path(t, "c", "trees", "tree-501.tar")
	if _, err := os.Stat(tarball); err != nil {
		golden.Skip(t, fmt.Sprintf("golden tree not available: %v", err))
	}
	if os.Geteuid() != 0 {
		t.Skip("extracting the golden tree needs root (devices, owners, trusted.* xattrs)")
	}
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("tar not installed")
	}
	dir := t.TempDir()
	cmd := exec.Command("tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "--same-owner", "-xpf", tarball, "-C", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	return filepath.Join(dir, "tree-501")
}

// TestGoldenTree: Scan handles the golden tree under every option C was run
// with, and what it returns is a valid tree that survives the dumpfile.
func TestGoldenTree(t *testing.T) {
	root := extractGoldenTree(t)
	for _, opts := range []Options{
		{ComputeDigest: true},
		{ComputeDigest: true, UseEpoch: true},
		{ComputeDigest: true, SkipXattrs: true},
		{ComputeDigest: true, UserXattrs: true},
		{ComputeDigest: true, SkipDevices: true},
		{ComputeDigest: true, Hardlinks: true},
	} {
		entries, err := Scan(root, opts)
		if err != nil {
			t.Fatalf("%+v: %v", opts, err)
		}
		var kinds [16]int
		for i := range entries {
			e := &entries[i]
			kinds[e.Mode>>12&0xf]++
			if e.IsRegular() && !e.IsHardlink() && e.Size > 64 && (e.Digest == "" || e.Payload != e.Digest[:2]+"/"+e.Digest[2:]) {
				t.Errorf("%+v: %s: external file without digest payload", opts, e.Path)
			}
			if opts.UseEpoch && e.Mtime != (dumpfile.Timespec{}) {
				t.Errorf("%+v: %s: mtime %v", opts, e.Path, e.Mtime)
			}
		}
		if opts.SkipDevices && (kinds[2] != 0 || kinds[6] != 0) {
			t.Errorf("%+v: devices kept", opts)
		}
		if !opts.SkipDevices && (kinds[2] == 0 || kinds[6] == 0) {
			t.Errorf("%+v: no devices found", opts)
		}
		var buf bytes.Buffer
		if err := dumpfile.WriteAll(&buf, entries); err != nil {
			t.Fatal(err)
		}
		again, err := dumpfile.ParseAll(&buf, dumpfile.ParseOptions{Strict: true})
		if err != nil {
			t.Fatalf("%+v: scanned tree refused by the dumpfile parser: %v", opts, err)
		}
		if !reflect.DeepEqual(again, entries) {
			t.Fatalf("%+v: dumpfile round trip differs", opts)
		}
		t.Logf("%+v: %d entries (%d dirs, %d files, %d symlinks)", opts, len(entries), kinds[4], kinds[8], kinds[10])
	}
}
