package tests

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/internal/ocitest"
)

// repoObjects lists the files of a repository's objects/XX/ directories
// with their sizes.
func repoObjects(t *testing.T, repo string) map[string]int64 {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(repo, "objects", "??", "*"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		out[p] = fi.Size()
	}
	return out
}

// readTree reads the files the test compares from a mounted image.
func readTree(t *testing.T, mnt string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, name := range []string{"etc/second", "usr/bin/tool"} {
		b, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = b
	}
	return out
}

var gcLine = regexp.MustCompile(`^(removed|would remove) (\d+) objects \((\d+) bytes\), (\d+) image links, (\d+) stream links, (\d+) temporary files\n$`)

// TestOCIGC pulls two images sharing two layers, untags one and collects
// the garbage: only what the untagged image alone needed goes, the other
// still mounts (and a mount made before gc keeps reading) the same; fsck
// is clean before and after, and reports an object whose content changed.
func TestOCIGC(t *testing.T) {
	requireRoot(t)
	cfsctl := buildCmd(t, "cfsctl")
	layers := ociLayers(t)
	first := filepath.Join(t.TempDir(), "first")
	ocitest.BuildLayout(t, first, layers[:2], ocitest.WithRef("latest"))
	extra := ocitest.NewTar(t).File("etc/second", strings.Repeat("only in the second image\n", 10)).Bytes()
	second := filepath.Join(t.TempDir(), "second")
	ocitest.BuildLayout(t, second, [][]byte{layers[0], layers[1], extra}, ocitest.WithRef("latest"))
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "oci:"+first+":latest", "first")
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "oci:"+second+":latest", "second")
	t.Logf("fsck before:\n%s", mustRun(t, cfsctl, "--repo", repo, "fsck"))

	mnt := tempDir(t, "before")
	t.Cleanup(func() { lazyUnmount(mnt) })
	mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "second", mnt)
	want := readTree(t, mnt)

	// Nothing is unreachable yet.
	if out := mustRun(t, cfsctl, "--repo", repo, "gc", "--wait", "10s"); out != "removed 0 objects (0 bytes), 0 image links, 0 stream links, 0 temporary files\n" {
		t.Errorf("gc with both images named: %q", out)
	}
	mustRun(t, cfsctl, "--repo", repo, "oci", "untag", "first")
	before := repoObjects(t, repo)
	dry := mustRun(t, cfsctl, "--repo", repo, "gc", "--dry-run")
	if got := repoObjects(t, repo); len(got) != len(before) {
		t.Fatalf("dry run removed %d objects", len(before)-len(got))
	}
	// The mount made above holds no lock: gc does not wait for it.
	out := mustRun(t, cfsctl, "--repo", repo, "gc", "--wait", "10s")
	t.Logf("gc --dry-run: %sgc: %s", dry, out)
	m := gcLine.FindStringSubmatch(out)
	if m == nil || m[1] != "removed" {
		t.Fatalf("gc printed %q", out)
	}
	if strings.TrimPrefix(dry, "would remove") != strings.TrimPrefix(out, "removed") {
		t.Errorf("dry run %q, gc %q", dry, out)
	}
	after := repoObjects(t, repo)
	var gone int
	var goneBytes int64
	for p, size := range before {
		if _, ok := after[p]; !ok {
			gone++
			goneBytes += size
		}
	}
	// The first image's manifest, config and composefs image; its layers
	// are the second's too.
	if n, _ := strconv.Atoi(m[2]); n != gone || n < 3 || strconv.FormatInt(goneBytes, 10) != m[3] {
		t.Errorf("gc says %s objects of %s bytes, %d of %d went", m[2], m[3], gone, goneBytes)
	}
	if m[4] != "1" || m[5] != "2" {
		t.Errorf("gc pruned %s image and %s stream links, want the first's image and its manifest and config streams", m[4], m[5])
	}
	if l, _ := filepath.Glob(filepath.Join(repo, "streams", "oci-layer-*")); len(l) != 3 {
		t.Errorf("layer streams after gc: %q", l)
	}

	if got := readTree(t, mnt); !equalTrees(got, want) {
		t.Error("the mount made before gc reads differently")
	}
	mnt2 := tempDir(t, "after")
	t.Cleanup(func() { lazyUnmount(mnt2) })
	mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "second", mnt2)
	if got := readTree(t, mnt2); !equalTrees(got, want) {
		t.Error("the image mounted after gc reads differently")
	}
	if out, err := run(t, 30*time.Second, cfsctl, "--repo", repo, "oci", "mount", "first", tempDir(t, "first")); err == nil {
		t.Errorf("mount of the untagged image: %s", out)
	}

	mustRun(t, cfsctl, "--repo", repo, "fsck")
	// Flip a byte of the largest object (usr/bin/tool's), by a new file
	// renamed over it, which works whether or not it has fs-verity.
	var victim string
	for p, size := range after {
		if victim == "" || size > after[victim] {
			victim = p
		}
	}
	data, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(victim+".new", data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(victim+".new", victim); err != nil {
		t.Fatal(err)
	}
	out, err = run(t, 30*time.Second, cfsctl, "--repo", repo, "fsck")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("fsck of a damaged repository: %v\n%s", err, out)
	}
	rel, _ := filepath.Rel(repo, victim)
	if !strings.Contains(out, "object-digest-mismatch: "+rel+": measured ") || strings.Count(out, "\n")-4 != 1 {
		t.Errorf("fsck of a damaged repository says:\n%s", out)
	}
	if out, err := run(t, 30*time.Second, cfsctl, "--repo", repo, "fsck", "--metadata-only"); err != nil {
		t.Errorf("metadata-only fsck sees a changed object's content: %v\n%s", err, out)
	}
}

func equalTrees(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !bytes.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
