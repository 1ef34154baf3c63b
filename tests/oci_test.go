package tests

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/composefs/composefs-go/internal/ocitest"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// ociLayers are the layers of the image the OCI tests pull: each rule of
// the OCI layer format that changes what the merged tree holds, and the
// file kinds, names and attributes a tar can carry.
func ociLayers(t *testing.T) [][]byte {
	big := bytes.Repeat([]byte("0123456789abcdef"), 70000/16)
	long := strings.Repeat("d", 60) + "/" + strings.Repeat("n", 150)
	nano := time.Unix(1600000000, 123456789)
	base := ocitest.NewTar(t).
		Dir("usr", ocitest.Mode(0o755), ocitest.MTime(time.Unix(1650000000, 0))).
		Dir("usr/bin").
		File("usr/bin/tool", string(big), ocitest.Mode(0o4755)).
		File("usr/bin/capable", "#!/bin/sh\n", ocitest.Mode(0o755), ocitest.Xattr("security.capability", "\x01\x00\x00\x02\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00")).
		Hardlink("usr/bin/tool-link", "usr/bin/tool").
		Dir("etc").
		File("etc/hostname", "box\n", ocitest.Owner(0, 0)).
		File("etc/empty", "").
		File("etc/owned", "by someone else\n", ocitest.Owner(1234, 5678), ocitest.Mode(0o640)).
		File("etc/xattrs", "attributes\n", ocitest.Xattr("user.note", "kept only without the transform")).
		File("etc/nano", "nanoseconds\n", ocitest.MTime(nano)).
		Symlink("etc/localtime", "/usr/share/zoneinfo/UTC").
		Dir("gone").
		File("gone/file", "whited out with its directory\n").
		Dir("opaque").
		File("opaque/old", "hidden by the opaque marker\n").
		Dir("becomes-file").
		File("becomes-file/inside", "replaced with its directory\n").
		File("becomes-dir", "a file, then a directory\n").
		File("deleted", "whited out\n").
		File("odd name \t with tab", "odd\n").
		File("caf\u00e9", "utf-8 name\n").
		Dir(strings.Repeat("d", 60)).
		File(long, "a long path\n").
		Symlink("long-target", strings.Repeat("t/", 120)+"end").
		CharDevice("dev-null", 1, 3).
		BlockDevice("dev-loop", 7, 0).
		Fifo("fifo").
		Dir("tmp", ocitest.Mode(0o1777)).
		Dir("run").
		File("run/pidfile", "1\n").
		Bytes()
	upper := ocitest.NewTar(t).
		Whiteout("gone").
		Whiteout("deleted").
		Opaque("opaque").
		File("opaque/new", "after the opaque marker\n").
		File("becomes-file", "now a file\n").
		Dir("becomes-dir").
		File("becomes-dir/inside", "now inside a directory\n").
		File("etc/hostname", "changed in a later layer\n").
		Hardlink("etc/tool-again", "usr/bin/tool").
		Bytes()
	top := ocitest.NewTar(t).
		Header(&tar.Header{Typeflag: tar.TypeDir, Name: "gone/", Mode: 0o750, ModTime: time.Unix(1700000000, 0)}, nil).
		File("gone/back", "a directory whited out, then made again\n").
		Bytes()
	return [][]byte{base, upper, top}
}

// requireTools skips unless the OCI tools the tests use are installed.
func requireTools(t *testing.T, tools ...string) {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (scripts/deps.sh installs it)", tool)
		}
	}
}

// umociRootfs unpacks the layout's image ref with umoci, the oracle, and
// returns its root filesystem.
func umociRootfs(t *testing.T, layout, ref string) string {
	bundle := filepath.Join(t.TempDir(), "bundle")
	mustRun(t, "umoci", "unpack", "--image", layout+":"+ref, bundle)
	return filepath.Join(bundle, "rootfs")
}

// compareWithoutInodes compares two trees as compareTrees does, but not
// their inode numbers, which two file systems do not share, nor the
// root directory's own attributes, nor directory sizes (which depend on
// the file system); hardlinks still must group the same paths.
func compareWithoutInodes(t *testing.T, want, got string) {
	t.Helper()
	ws, gs := takeSnapshot(t, want), takeSnapshot(t, got)
	for _, s := range []*snapshot{ws, gs} {
		withoutInodes(s)
		s.Entries["/"] = &entryRecord{Content: s.Entries["/"].Content}
	}
	reportUmociDiffs(t, ws, gs)
}

// withoutInodes clears what two file systems need not share: inode
// numbers and directory sizes.
func withoutInodes(s *snapshot) {
	for _, e := range s.Entries {
		e.Ino, e.DirIno = 0, 0
		if e.Mode&unix_S_IFMT == unix_S_IFDIR {
			e.Size = 0
		}
	}
}

func reportUmociDiffs(t *testing.T, ws, gs *snapshot) {
	t.Helper()
	reportDiffsFrom(t, "umoci's", snapshotDiffs(ws, gs), len(ws.Entries))
}

// transformed is what composefs-rs's OCI transform makes of a tree umoci
// unpacked: the root directory takes /usr's mode, owner, time and
// xattrs, /run is emptied and takes /usr's time, and only the xattrs keep
// says are kept.
func transformed(s *snapshot, keep func(name string) bool) {
	for _, e := range s.Entries {
		var xs []string
		for _, x := range e.Xattrs {
			if name, _, _ := strings.Cut(x, "="); keep(name) {
				xs = append(xs, x)
			}
		}
		e.Xattrs = xs
	}
	usr, root, run := s.Entries["/usr"], s.Entries["/"], s.Entries["/run"]
	root.Mode, root.UID, root.GID, root.Mtime, root.Xattrs = usr.Mode, usr.UID, usr.GID, usr.Mtime, usr.Xattrs
	for p := range s.Entries {
		if strings.HasPrefix(p, "/run/") {
			delete(s.Entries, p)
		}
	}
	run.Mtime, run.Nlink = usr.Mtime, 2
	s.Listings["/run"] = []string{".", ".."}
}

// TestOCITransform pulls with composefs-rs's transform, in both its xattr
// modes: the mount must be umoci's tree transformed as composefs-rs does.
func TestOCITransform(t *testing.T) {
	requireRoot(t)
	requireTools(t, "umoci")
	cfsctl := buildCmd(t, "cfsctl")
	layout := filepath.Join(t.TempDir(), "layout")
	ocitest.BuildLayout(t, layout, ociLayers(t), ocitest.WithRef("latest"))
	rootfs := umociRootfs(t, layout, "latest")
	repo := filepath.Join(t.TempDir(), "repo")
	for _, mode := range []string{"allowlist-only", "keep-user-xattrs"} {
		t.Run(mode, func(t *testing.T) {
			mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "--xattrs", mode, "oci:"+layout+":latest", mode)
			mnt := tempDir(t, "oci")
			t.Cleanup(func() { lazyUnmount(mnt) })
			mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "--xattrs", mode, mode, mnt)
			ws, gs := takeSnapshot(t, rootfs), takeSnapshot(t, mnt)
			transformed(ws, func(name string) bool {
				return name == "security.capability" || mode == "keep-user-xattrs" && strings.HasPrefix(name, "user.")
			})
			withoutInodes(ws)
			withoutInodes(gs)
			reportUmociDiffs(t, ws, gs)
		})
	}
}

const (
	unix_S_IFMT  = 0o170000
	unix_S_IFDIR = 0o040000
)

// TestOCIPullMount pulls an image built here from each kind of source
// into a repository and mounts it: the mount must equal umoci's unpacking
// of the same image and the kernel's mount of the image cfsctl wrote.
func TestOCIPullMount(t *testing.T) {
	requireRoot(t)
	requireTools(t, "umoci", "skopeo")
	cfsctl := buildCmd(t, "cfsctl")
	layers := ociLayers(t)
	// umoci 0.4 reads gzip layers only; the other compressions have an
	// image of their own, with the same tars.
	layout := filepath.Join(t.TempDir(), "layout")
	ocitest.BuildLayout(t, layout, layers, ocitest.WithRef("latest"))
	mixed := filepath.Join(t.TempDir(), "mixed")
	ocitest.BuildLayout(t, mixed, layers, ocitest.WithRef("latest"),
		ocitest.WithCompression(ocitest.Zstd, ocitest.Uncompressed, ocitest.Gzip))
	rootfs := umociRootfs(t, layout, "latest")

	archive := filepath.Join(t.TempDir(), "image.tar")
	ocitest.Skopeo(t, "copy", "oci:"+layout+":latest", "oci-archive:"+archive+":latest")
	docker := filepath.Join(t.TempDir(), "docker.tar")
	ocitest.Skopeo(t, "copy", "oci:"+layout+":latest", "docker-archive:"+docker+":test/image:latest")
	host := ocitest.StartRegistry(t)
	ocitest.Push(t, layout+":latest", host+"/test/image:latest")

	sources := []struct{ name, src string }{
		{"oci", "oci:" + layout + ":latest"},
		{"zstd", "oci:" + mixed + ":latest"},
		{"oci-archive", "oci-archive:" + archive + ":latest"},
		{"docker-archive", "docker-archive:" + docker},
		{"docker", "docker://" + host + "/test/image:latest"},
	}
	repo := filepath.Join(t.TempDir(), "repo")
	ids := map[string]string{}
	for _, s := range sources {
		t.Run(s.name, func(t *testing.T) {
			args := []string{"--repo", repo, "oci", "pull", "--no-transform", s.src, s.name}
			if s.name == "docker" {
				args = append(args, "--tls-verify=false")
			}
			ids[s.name] = strings.TrimSpace(mustRun(t, cfsctl, args...))
			mnt := tempDir(t, "oci")
			t.Cleanup(func() { lazyUnmount(mnt) })
			mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "--no-transform", s.name, mnt)
			compareWithoutInodes(t, rootfs, mnt)
		})
	}
	t.Run("commands", func(t *testing.T) {
		// compute-id makes again, from the stored layers, the image the
		// pull made; another transform gives another image.
		if got := strings.TrimSpace(mustRun(t, cfsctl, "--repo", repo, "oci", "compute-id", "--no-transform", "oci")); got != ids["oci"] {
			t.Errorf("compute-id --no-transform: %s, the pull made %s", got, ids["oci"])
		}
		if got := strings.TrimSpace(mustRun(t, cfsctl, "--repo", repo, "oci", "compute-id", "oci")); got == ids["oci"] || len(got) != len(ids["oci"]) {
			t.Errorf("compute-id with composefs-rs's transform: %q", got)
		}
		// dump: the merged tree as a dumpfile, which mkcomposefs makes
		// the same image of.
		dump := filepath.Join(t.TempDir(), "dump")
		if err := os.WriteFile(dump, []byte(mustRun(t, cfsctl, "--repo", repo, "oci", "dump", "--no-transform", "oci")), 0o644); err != nil {
			t.Fatal(err)
		}
		img := filepath.Join(t.TempDir(), "img")
		mustRun(t, buildCmd(t, "mkcomposefs"), "--min-version=1", "--from-file", dump, img)
		data, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		if got := imageDigest(t, repo, data); got != ids["oci"] {
			t.Errorf("mkcomposefs of oci dump makes image %s, the pull %s", got, ids["oci"])
		}
		list := mustRun(t, cfsctl, "--repo", repo, "oci", "images")
		for _, s := range sources {
			if !strings.Contains(list, "\n"+s.name+" ") {
				t.Errorf("oci images does not list %s:\n%s", s.name, list)
			}
		}
		var inspect struct {
			Manifest string            `json:"manifest_digest"`
			Image    string            `json:"image_id"`
			Images   map[string]string `json:"images"`
		}
		if err := json.Unmarshal([]byte(mustRun(t, cfsctl, "--repo", repo, "oci", "inspect", "oci")), &inspect); err != nil {
			t.Fatal(err)
		}
		// Pulled without the transform: not composefs-rs's image, so
		// recorded under a key of its own.
		if inspect.Image != "" || inspect.Images["composefs.image.v1.transform=none"] != ids["oci"] || !strings.HasPrefix(inspect.Manifest, "sha256:") {
			t.Errorf("oci inspect: %+v", inspect)
		}
		mustRun(t, cfsctl, "--repo", repo, "oci", "tag", inspect.Manifest, "again")
		mustRun(t, cfsctl, "--repo", repo, "oci", "untag", "oci")
		list = mustRun(t, cfsctl, "--repo", repo, "oci", "images")
		if !strings.Contains(list, "\nagain ") || strings.Contains(list, "\noci ") {
			t.Errorf("after tag again and untag oci:\n%s", list)
		}
		if out, err := run(t, 30*time.Second, cfsctl, "--repo", repo, "oci", "inspect", "oci"); err == nil {
			t.Errorf("inspect of an untagged name: %s", out)
		}
		// An OCI name given to the mount of composefs images says
		// which command mounts it.
		if out, err := run(t, 30*time.Second, cfsctl, "--repo", repo, "mount", "again", tempDir(t, "m")); err == nil || !strings.Contains(out, "cfsctl oci mount") {
			t.Errorf("cfsctl mount of an OCI name: %v\n%s", err, out)
		}
	})
	t.Run("kernel", func(t *testing.T) {
		id := ids["oci"]
		for name, other := range ids {
			if other != id {
				t.Errorf("pulled from %s, the image is %s; from an OCI layout %s", name, other, id)
			}
		}
		image := filepath.Join(repo, "images", id)
		if _, err := os.Stat(image); err != nil {
			t.Fatalf("compute-id %s: no image in the repository: %v", id, err)
		}
		// Run where a file is named like the image: the repository's
		// image is mounted, never a file of the current directory.
		cwd := t.TempDir()
		if err := os.WriteFile(filepath.Join(cwd, id), []byte("planted, not an image"), 0o644); err != nil {
			t.Fatal(err)
		}
		mnt := tempDir(t, "oci")
		t.Cleanup(func() { lazyUnmount(mnt) })
		cmd := exec.Command(cfsctl, "--repo", repo, "mount", id, mnt)
		cmd.Dir = cwd
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cfsctl mount %s, with a file of that name here: %v\n%s", id, err, out)
		}
		compareTrees(t, kernelMount(t, image, filepath.Join(repo, "objects")), mnt)
	})
}

// TestOCIRootless pulls and mounts as an ordinary user, into the --user
// repository, through fusermount3: the image must be the one root's pull
// makes, and read the same.
func TestOCIRootless(t *testing.T) {
	requireRoot(t)
	requireTools(t, "fusermount3")
	cfsctl := buildCmd(t, "cfsctl")
	top := nobodyTop(t, "composefs-oci-rootless-")
	home := filepath.Join(top, "home")
	if err := os.Mkdir(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	layout := filepath.Join(top, "layout")
	ocitest.BuildLayout(t, layout, ociLayers(t), ocitest.WithRef("latest"))
	mustRun(t, "chmod", "-R", "a+rX", layout)

	src := "oci:" + layout + ":latest"
	out, err := asNobodyAt(t, home, cfsctl, "--user", "oci", "pull", "--no-transform", src, "img")
	if err != nil {
		t.Fatalf("oci pull as nobody: %v\n%s", err, out)
	}
	id := strings.TrimSpace(out)
	rootRepo := filepath.Join(top, "root-repo")
	if want := strings.TrimSpace(mustRun(t, cfsctl, "--repo", rootRepo, "oci", "pull", "--no-transform", src, "img")); id != want {
		t.Errorf("nobody's pull made image %s, root's %s", id, want)
	}
	repo := filepath.Join(home, ".var/lib/composefs")
	if st, err := os.Stat(repo); err != nil || st.Mode().Perm() != 0o700 || st.Sys().(*syscall.Stat_t).Uid != nobody {
		t.Errorf("--user repository: %v, want a 0700 directory of nobody's", err)
	}
	mnt := nobodyMountpoint(t, top)
	if out, err := asNobodyAt(t, home, cfsctl, "--user", "oci", "mount", "--no-transform", "img", mnt); err != nil {
		t.Fatalf("oci mount as nobody: %v\n%s", err, out)
	}
	rootMnt := tempDir(t, "oci")
	t.Cleanup(func() { lazyUnmount(rootMnt) })
	mustRun(t, cfsctl, "--repo", rootRepo, "oci", "mount", "--no-transform", "img", rootMnt)
	// The mount is nobody's alone (no allow_other), so nobody lists and
	// reads it, and root its own; nobody reads what others may read.
	list := func(dir string) string {
		return "cd " + dir + " && find . -type d ! -perm -005 -prune -o -printf '%p %y %m %U %G %s %T@ %l\\n' | sort && find . -type d ! -perm -005 -prune -o -type f -perm -004 -exec sha256sum {} + | sort"
	}
	got, err := asNobodyAt(t, home, "sh", "-c", list(mnt))
	if err != nil {
		t.Fatalf("reading nobody's mount: %v\n%s", err, got)
	}
	want := mustRun(t, "sh", "-c", list(rootMnt))
	if got != want {
		t.Errorf("nobody's mount reads\n%s\nroot's\n%s", got, want)
	}
	if out, err := asNobodyAt(t, home, "cat", filepath.Join(mnt, "etc/owned")); err == nil {
		t.Errorf("nobody read a file of uid 1234, mode 0640: %q", out)
	}
	if out, err := asNobodyAt(t, home, "fusermount3", "-u", mnt); err != nil {
		t.Errorf("fusermount3 -u as nobody: %v\n%s", err, out)
	}

	// Root's repository, made readable to all, mounts for nobody too,
	// and mounting writes nothing into it.
	if err := os.Chmod(rootRepo, 0o755); err != nil {
		t.Fatal(err)
	}
	before := mustRun(t, "sh", "-c", "cd "+rootRepo+" && find . -printf '%p %y %s %T@\\n' | sort")
	if out, err := asNobodyAt(t, home, cfsctl, "--repo", rootRepo, "oci", "mount", "--no-transform", "img", mnt); err != nil {
		t.Fatalf("oci mount of root's repository as nobody: %v\n%s", err, out)
	}
	if got, err := asNobodyAt(t, home, "sh", "-c", list(mnt)); err != nil || got != want {
		t.Errorf("nobody's mount of root's repository reads differently: %v", err)
	}
	if out, err := asNobodyAt(t, home, "fusermount3", "-u", mnt); err != nil {
		t.Errorf("fusermount3 -u as nobody: %v\n%s", err, out)
	}
	if after := mustRun(t, "sh", "-c", "cd "+rootRepo+" && find . -printf '%p %y %s %T@\\n' | sort"); after != before {
		t.Errorf("mounting changed the repository:\nbefore\n%s\nafter\n%s", before, after)
	}
}

// TestOCISharedLayers pulls a second image that shares layers with the
// first: the shared layers are not downloaded again (their blobs are
// gone from the second source) and each layer is stored once.
func TestOCISharedLayers(t *testing.T) {
	requireRoot(t)
	cfsctl := buildCmd(t, "cfsctl")
	layers := ociLayers(t)
	first := filepath.Join(t.TempDir(), "first")
	ocitest.BuildLayout(t, first, layers[:2], ocitest.WithRef("latest"))
	extra := ocitest.NewTar(t).File("etc/second", strings.Repeat("only in the second image\n", 10)).Bytes()
	second := filepath.Join(t.TempDir(), "second")
	l2 := ocitest.BuildLayout(t, second, [][]byte{layers[0], layers[1], extra}, ocitest.WithRef("latest"))
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "oci:"+first+":latest", "first")
	for _, d := range l2.Images[0].LayerDigests[:2] {
		if err := os.Remove(ocitest.BlobPath(second, d)); err != nil {
			t.Fatal(err)
		}
	}
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "oci:"+second+":latest", "second")
	// Three layers in all, each stored once.
	layerStreams, err := filepath.Glob(filepath.Join(repo, "streams", "oci-layer-*"))
	if err != nil || len(layerStreams) != 3 {
		t.Errorf("layer streams %q, %v; want 3", layerStreams, err)
	}
	mnt := tempDir(t, "oci")
	t.Cleanup(func() { lazyUnmount(mnt) })
	mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "second", mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "etc/second")); err != nil || !strings.HasPrefix(string(b), "only in the second") {
		t.Errorf("etc/second: %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "usr/bin/tool")); err != nil || len(b) != 70000 {
		t.Errorf("usr/bin/tool from a shared layer: %d bytes, %v", len(b), err)
	}
}

// imageDigest is the image id data has in repo: its fs-verity digest with
// the repository's algorithm.
func imageDigest(t *testing.T, repo string, data []byte) string {
	r, err := objects.OpenRepository(repo)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	return hex.EncodeToString(verity.DigestBytes(r.Algorithm(), data))
}

// TestOCIPullFailures: a bad reference, a missing image and a damaged
// blob each fail with one line and leave no image behind; what a failed
// pull downloaded is kept only whole and checked, and the next pull,
// the blob repaired, completes.
func TestOCIPullFailures(t *testing.T) {
	requireRoot(t)
	cfsctl := buildCmd(t, "cfsctl")
	layout := filepath.Join(t.TempDir(), "layout")
	l := ocitest.BuildLayout(t, layout, ociLayers(t), ocitest.WithRef("latest"))
	repo := filepath.Join(t.TempDir(), "repo")
	fails := func(want int, args ...string) string {
		t.Helper()
		cmd := exec.Command(cfsctl, append([]string{"--repo", repo, "oci", "pull"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		msg := stderr.String()
		if code != want || strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "cfsctl: ") {
			t.Errorf("pull %q: exit %d, stderr %q; want exit %d and one line", args, code, msg, want)
		}
		return msg
	}
	fails(2, "nonsense")
	fails(1, "oci:"+filepath.Join(t.TempDir(), "none")+":latest")
	fails(1, "oci:"+layout+":no-such-ref")
	if _, err := os.Stat(repo); err == nil {
		t.Errorf("a pull that found no image made the repository")
	}

	// The last layer damaged: the first two arrive, the pull fails.
	last := ocitest.BlobPath(layout, l.Images[0].LayerDigests[2])
	good, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(last, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg := fails(1, "oci:"+layout+":latest", "img"); !strings.Contains(msg, l.Images[0].LayerDigests[2]) {
		t.Errorf("the error does not name the damaged layer: %q", msg)
	}
	if out := mustRun(t, cfsctl, "--repo", repo, "oci", "images", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("after a failed pull, oci images lists %s", out)
	}
	// What the failed pull kept for the next is whole and checked:
	// blobs under their digest's name, nothing else.
	blobs, _ := filepath.Glob(filepath.Join(repo, "tmp/oci-blobs/*"))
	for _, b := range blobs {
		data, err := os.ReadFile(b)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if filepath.Base(b) != "sha256-"+hex.EncodeToString(sum[:]) {
			t.Errorf("after the failed pull, %s holds %d bytes of another digest", b, len(data))
		}
	}
	if err := os.WriteFile(last, good, 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "--no-transform", "oci:"+layout+":latest", "img")
	mnt := tempDir(t, "oci")
	t.Cleanup(func() { lazyUnmount(mnt) })
	mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "--no-transform", "img", mnt)
	if b, err := os.ReadFile(filepath.Join(mnt, "gone/back")); err != nil || !strings.HasPrefix(string(b), "a directory whited out") {
		t.Errorf("gone/back: %q, %v", b, err)
	}
}

// TestOCIUmociInsert pulls an image made the way a user makes one, with
// umoci insert, whose layers stop without the last file's padding and the
// end-of-archive blocks (umoci 0.4): it pulls, and mounts what umoci
// unpacks.
func TestOCIUmociInsert(t *testing.T) {
	requireRoot(t)
	requireTools(t, "umoci")
	cfsctl := buildCmd(t, "cfsctl")
	tree := t.TempDir()
	for name, content := range map[string]string{"opt/bin/tool": strings.Repeat("t", 3000), "etc/hostname": "box\n", "etc/odd": "abc"} {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	layout := filepath.Join(t.TempDir(), "layout")
	mustRun(t, "umoci", "init", "--layout", layout)
	mustRun(t, "umoci", "new", "--image", layout+":t")
	mustRun(t, "umoci", "insert", "--image", layout+":t", tree, "/")
	rootfs := umociRootfs(t, layout, "t")
	repo := filepath.Join(t.TempDir(), "repo")
	mustRun(t, cfsctl, "--repo", repo, "oci", "pull", "--no-transform", "oci:"+layout+":t", "img")
	mnt := tempDir(t, "oci")
	t.Cleanup(func() { lazyUnmount(mnt) })
	mustRun(t, cfsctl, "--repo", repo, "oci", "mount", "--no-transform", "img", mnt)
	compareWithoutInodes(t, rootfs, mnt)
	// It has no /usr: composefs-rs's transform cannot take it, and the
	// error says what can.
	if out, err := run(t, 30*time.Second, cfsctl, "--repo", repo, "oci", "pull", "oci:"+layout+":t", "img2"); err == nil || !strings.Contains(out, "--no-transform") {
		t.Errorf("pull of an image without /usr: %v\n%s", err, out)
	}
}
