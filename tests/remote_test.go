package tests

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/composefs/composefs-go/internal/storetest"
	"github.com/composefs/composefs-go/verity"
)

// TestRemoteMountEqualsKernel mounts random trees whose objects come from
// nginx over HTTP, and compares them with the kernel's mount of the same
// image with the objects local; then mounts them again from the cache
// alone, with the server gone.
func TestRemoteMountEqualsKernel(t *testing.T) {
	requireRoot(t)
	tree := genTree(21, 300)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	nginx := storetest.StartNginx(t, objects)
	cache := filepath.Join(tempDir(t, "cache"), "objects")
	for _, v := range []int{1, 2} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			image := tree.image(t, v)
			kernel := kernelMount(t, image, objects)
			ours := fuseMount(t, image, "--basedir", nginx.URL, "--cache", cache)
			withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
			// Read ahead or not, the same tree.
			ours = fuseMount(t, image, "--basedir", strings.TrimSuffix(nginx.URL, "/"), "--cache", filepath.Join(tempDir(t, "cache2"), "c"), "--no-read-ahead")
			withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
		})
	}
	for payload, content := range tree.objects {
		got, err := os.ReadFile(filepath.Join(cache, payload))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("cache copy of %s: %v", payload, err)
		}
	}
	if st, err := os.Stat(cache); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("cache directory: %v, mode %v, want 0700", err, st.Mode().Perm())
	}
	// The server gone: everything comes from the cache.
	nginx.Stop()
	image := tree.image(t, 1)
	kernel := kernelMount(t, image, objects)
	ours := fuseMount(t, image, "--basedir", nginx.URL, "--cache", cache)
	withWatchdog(t, ours, time.Minute, func() { compareTrees(t, kernel, ours) })
}

// remoteImage is an image of files in /d whose objects are in a flat
// store, served by nginx behind a fault proxy.
type remoteImage struct {
	image   string
	objects string
	nginx   *storetest.Nginx
	proxy   *storetest.Proxy
	content [][]byte
	payload []string
}

func makeRemoteImage(t *testing.T, sizes ...int) *remoteImage {
	t.Helper()
	rng := rand.New(rand.NewPCG(15, uint64(len(sizes))))
	r := &remoteImage{objects: tempDir(t, "objects")}
	var dump strings.Builder
	dump.WriteString("/ 0 40755 3 0 0 0 0.0 - - -\n/d 0 40755 2 0 0 0 0.0 - - -\n")
	for i, size := range sizes {
		content := make([]byte, size)
		for j := range content {
			content[j] = byte(rng.Uint32())
		}
		o := newObject(content)
		o.Put(t, r.objects, content)
		r.content = append(r.content, content)
		r.payload = append(r.payload, o.Payload)
		fmt.Fprintf(&dump, "/d/f%02d %d 100644 1 0 0 0 0.0 %s - %s\n", i, size, o.Payload, o.Digest)
	}
	r.image = writeImage(t, dump.String(), 1)
	r.nginx = storetest.StartNginx(t, r.objects)
	r.proxy = storetest.StartProxy(t, r.nginx.URL)
	return r
}

// TestRemoteMountTamperedAndDown: an object the server lies about gives
// EIO and one log line naming the path and the URL, and is not cached; a
// local copy that fails its check falls through to the server's; with
// the server stopped, cached files still read, others give EIO at once,
// and the mount stays up.
func TestRemoteMountTamperedAndDown(t *testing.T) {
	requireRoot(t)
	r := makeRemoteImage(t, 5000, 6000, 7000, 8000)
	// f00: the server's copy is another object's content.
	if err := os.WriteFile(filepath.Join(r.objects, r.payload[0]), r.content[1], 0o644); err != nil {
		t.Fatal(err)
	}
	// f02: a damaged local copy, before the server in the search order.
	local := tempDir(t, "local")
	os.MkdirAll(filepath.Join(local, r.payload[2][:2]), 0o755)
	os.WriteFile(filepath.Join(local, r.payload[2]), []byte("damaged"), 0o644)
	cache := filepath.Join(tempDir(t, "cache"), "objects")
	fg := fuseForeground(t, r.image, "--basedir", local, "--basedir", r.proxy.URL, "--cache", cache, "--no-read-ahead")
	path := func(i int) string { return filepath.Join(fg.mnt, "d", fmt.Sprintf("f%02d", i)) }

	start := time.Now()
	if _, err := readErrno(path(0)); err != syscall.EIO {
		t.Errorf("tampered object: %v, want EIO", err)
	}
	// Longer than the image says: refused at once, not tried again.
	t.Logf("a server that sends another object for f00: EIO after %v (%d requests, the mount's HEAD among them)", time.Since(start).Round(time.Millisecond), r.proxy.Requests("/"+r.payload[0]))
	if _, err := os.Stat(filepath.Join(cache, r.payload[0])); err == nil {
		t.Error("the tampered object entered the cache")
	}
	url := r.proxy.URL + r.payload[0]
	log := fg.waitStderr("/d/f00", url)
	if n := strings.Count(log, url); n != 1 || !strings.Contains(log, "/d/f00") {
		t.Errorf("want one log line naming /d/f00 and %s, got:\n%s", url, log)
	}
	for _, i := range []int{1, 2} {
		if got, err := readErrno(path(i)); err != nil || !bytes.Equal(got, r.content[i]) {
			t.Errorf("f%02d: %v", i, err)
		}
	}
	if _, err := os.Stat(filepath.Join(cache, r.payload[2])); err != nil {
		t.Errorf("f02's good copy is not in the cache: %v", err)
	}

	r.nginx.Stop()
	start = time.Now()
	if _, err := readErrno(path(3)); err != syscall.EIO {
		t.Errorf("server stopped, f03 not cached: %v, want EIO", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("server stopped: EIO after %v", d)
	}
	t.Logf("a server stopped: EIO after %v", time.Since(start).Round(time.Millisecond))
	for _, i := range []int{1, 2} {
		if got, err := readErrno(path(i)); err != nil || !bytes.Equal(got, r.content[i]) {
			t.Errorf("server stopped, f%02d cached: %v", i, err)
		}
	}
	if ents, err := os.ReadDir(filepath.Join(fg.mnt, "d")); err != nil || len(ents) != 4 {
		t.Errorf("listing with the server stopped: %d entries, %v", len(ents), err)
	}
}

// TestRemoteMountSlowObject: while a large object comes slowly, stat,
// listing and other files are served at once.
func TestRemoteMountSlowObject(t *testing.T) {
	requireRoot(t)
	sizes := []int{4 << 20}
	for range 20 {
		sizes = append(sizes, 3000)
	}
	r := makeRemoteImage(t, sizes...)
	slow := "/" + r.payload[0]
	r.proxy.SetFault(func(req *http.Request, n int) storetest.Fault {
		if req.URL.Path == slow {
			return storetest.Fault{Delay: 4 * time.Second}
		}
		return storetest.Fault{Delay: 10 * time.Millisecond}
	})
	fg := fuseForeground(t, r.image, "--basedir", r.proxy.URL, "--cache", filepath.Join(tempDir(t, "cache"), "c"))
	d := filepath.Join(fg.mnt, "d")
	slowDone := make(chan error, 1)
	go func() {
		got, err := readErrno(filepath.Join(d, "f00"))
		if err == nil && !bytes.Equal(got, r.content[0]) {
			err = fmt.Errorf("wrong content")
		}
		slowDone <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if _, err := os.ReadDir(d); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 1; i < len(sizes); i++ {
		wg.Go(func() {
			p := filepath.Join(d, fmt.Sprintf("f%02d", i))
			if _, err := os.Stat(p); err != nil {
				t.Error(err)
			}
			if got, err := readErrno(p); err != nil || !bytes.Equal(got, r.content[i]) {
				t.Errorf("f%02d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("small files took %v beside a slow one", el)
	}
	t.Logf("a slow server: a listing, %d stats and reads of small files in %v, while a 4 MiB object takes 4 s", len(sizes)-1, time.Since(start).Round(time.Millisecond))
	select {
	case err := <-slowDone:
		t.Errorf("the slow file was done first (%v): the test proves nothing", err)
	default:
	}
	if err := <-slowDone; err != nil {
		t.Errorf("slow file: %v", err)
	}
}

// TestRemoteMountHungServer: a server that corrupts a byte of every
// answer is tried 4 times, then the open fails with EIO and nothing is
// cached; a server that takes connections and then says nothing fails an
// uncached file's open with EIO after --fetch-timeout's silence, tried 4
// times, while listings and cached files are served and the mount stays
// up.
func TestRemoteMountHungServer(t *testing.T) {
	requireRoot(t)
	r := makeRemoteImage(t, 5000, 6000, 7000)
	cache := filepath.Join(tempDir(t, "cache"), "c")
	fg := fuseForeground(t, r.image, "--basedir", r.proxy.URL, "--cache", cache, "--fetch-timeout", "0.5", "--no-read-ahead")
	path := func(i int) string { return filepath.Join(fg.mnt, "d", fmt.Sprintf("f%02d", i)) }
	if got, err := readErrno(path(0)); err != nil || !bytes.Equal(got, r.content[0]) {
		t.Fatalf("f00 before the server hangs: %v", err)
	}

	corrupt := "/" + r.payload[2]
	before := r.proxy.Requests(corrupt)
	r.proxy.SetFault(func(req *http.Request, _ int) storetest.Fault {
		return storetest.Fault{Corrupt: req.URL.Path == corrupt}
	})
	start := time.Now()
	if _, err := readErrno(path(2)); err != syscall.EIO {
		t.Errorf("f02, one byte flipped in every answer: %v, want EIO", err)
	}
	el := time.Since(start)
	if tries := r.proxy.Requests(corrupt) - before; tries != 4 {
		t.Errorf("%d requests for f02, want 4", tries)
	}
	if _, err := os.Stat(filepath.Join(cache, r.payload[2])); err == nil {
		t.Error("the corrupted object entered the cache")
	}
	t.Logf("a server that flips a byte of every answer: EIO after %v and %d requests", el.Round(time.Millisecond), r.proxy.Requests(corrupt)-before)
	// The mount looked for f01's object with a HEAD request.
	before = r.proxy.Requests("/" + r.payload[1])
	r.proxy.SetFault(func(*http.Request, int) storetest.Fault { return storetest.Fault{Delay: time.Hour} })
	start = time.Now()
	_, err := readErrno(path(1))
	el = time.Since(start)
	if err != syscall.EIO {
		t.Errorf("f01 with the server hung: %v, want EIO", err)
	}
	// 4 silences of 0.5 s, and backoffs of 0.1, 0.2 and 0.4 s (each up
	// to a quarter longer) between them.
	if el < 2*time.Second || el > 15*time.Second {
		t.Errorf("EIO after %v, want about 2.7 s", el)
	}
	tries := r.proxy.Requests("/"+r.payload[1]) - before
	if tries != 4 {
		t.Errorf("%d requests for f01, want 4", tries)
	}
	t.Logf("a server that hangs (--fetch-timeout=0.5): EIO after %v and %d requests", el.Round(time.Millisecond), tries)
	start = time.Now()
	if ents, err := os.ReadDir(filepath.Join(fg.mnt, "d")); err != nil || len(ents) != 3 {
		t.Errorf("listing with the server hung: %d entries, %v", len(ents), err)
	}
	if got, err := readErrno(path(0)); err != nil || !bytes.Equal(got, r.content[0]) {
		t.Errorf("cached f00 with the server hung: %v", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("a listing and a cached file took %v with the server hung", el)
	}
}

// TestRemoteImageByURL mounts an image given by URL, with its digest
// (checked, kept in the cache under it) and without (said to be
// unverified), through a proxy that wants a bearer token, which never
// shows in the mount table.
func TestRemoteImageByURL(t *testing.T) {
	requireRoot(t)
	tree := genTree(22, 150)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	image := tree.image(t, 1)
	data, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(objects, "image.cfs"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	digest := hex.EncodeToString(verity.DigestBytes(verity.SHA256, data))
	nginx := storetest.StartNginx(t, objects)
	proxy := storetest.StartProxy(t, nginx.URL)
	const token = "tok-3f9a1c"
	proxy.SetFault(func(r *http.Request, _ int) storetest.Fault {
		if r.Header.Get("Authorization") != "Bearer "+token {
			return storetest.Fault{Status: http.StatusUnauthorized}
		}
		return storetest.Fault{}
	})
	tokenFile := filepath.Join(tempDir(t, "secret"), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(tempDir(t, "cache"), "objects")
	kernel := kernelMount(t, image, objects)

	fg := fuseForeground(t, proxy.URL+"image.cfs", "--digest", digest, "--basedir", proxy.URL, "--cache", cache, "--token-file", tokenFile)
	withWatchdog(t, fg.mnt, time.Minute, func() { compareTrees(t, kernel, fg.mnt) })
	if _, err := os.Stat(filepath.Join(cache, digest[:2], digest[2:])); err != nil {
		t.Errorf("the image is not in the cache under its digest: %v", err)
	}
	if strings.Contains(fg.stderr.String(), "not verified") {
		t.Errorf("a mount with --digest says the image is unverified:\n%s", fg.stderr.String())
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), token) {
		t.Error("the token shows in the mount table")
	}

	fg2 := fuseForeground(t, proxy.URL+"image.cfs", "--basedir", proxy.URL, "--cache", cache, "--token-file", tokenFile)
	withWatchdog(t, fg2.mnt, time.Minute, func() { compareTrees(t, kernel, fg2.mnt) })
	if log := fg2.waitStderr("not verified"); !strings.Contains(log, "not verified") {
		t.Errorf("no word that the image is unverified:\n%s", log)
	}

	// A wrong digest: no mount. No token: no mount either.
	wrong := strings.Repeat("ab", 32)
	if out, err := tryFuseMount(t, proxy.URL+"image.cfs", tempDir(t, "m1"), "--digest", wrong, "--basedir", proxy.URL, "--cache", cache, "--token-file", tokenFile); err == nil || !strings.Contains(out, "mismatch") {
		t.Errorf("wrong --digest: %v\n%s", err, out)
	}
	if out, err := tryFuseMount(t, proxy.URL+"image.cfs", tempDir(t, "m2"), "--basedir", proxy.URL, "--cache", filepath.Join(tempDir(t, "c3"), "c")); err == nil || !strings.Contains(out, "401") {
		t.Errorf("no token: %v\n%s", err, out)
	}
	// --verity=require and no --digest: nothing would check the image.
	if out, err := tryFuseMount(t, proxy.URL+"image.cfs", tempDir(t, "m3"), "--verity=require", "--basedir", proxy.URL, "--cache", cache, "--token-file", tokenFile); err == nil || !strings.Contains(out, "--digest") {
		t.Errorf("--verity=require, image by URL without --digest: %v\n%s", err, out)
	}
}

// TestRemotePrefetch: --prefetch fetches every object into the cache in
// the background, logging its progress (also on SIGUSR1); then the tree
// is served whole with the server gone.
func TestRemotePrefetch(t *testing.T) {
	requireRoot(t)
	tree := genTree(23, 200)
	objects := tempDir(t, "objects")
	tree.putObjects(t, objects)
	nginx := storetest.StartNginx(t, objects)
	proxy := storetest.StartProxy(t, nginx.URL)
	proxy.SetFault(func(*http.Request, int) storetest.Fault { return storetest.Fault{Delay: 100 * time.Millisecond} })
	image := tree.image(t, 1)
	kernel := kernelMount(t, image, objects)
	cache := filepath.Join(tempDir(t, "cache"), "objects")
	fg := fuseForeground(t, image, "--basedir", proxy.URL, "--cache", cache, "--prefetch")
	fg.waitStderr("prefetch: started")
	fg.cmd.Process.Signal(syscall.SIGUSR1)
	log := fg.waitStderr("prefetch: progress")
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(log, "prefetch: done") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		log = fg.stderr.String()
	}
	want := fmt.Sprintf("done=%d objects=%d failed=0", len(tree.objects), len(tree.objects))
	if !strings.Contains(log, "prefetch: progress") || !strings.Contains(log, "prefetch: done "+want) {
		t.Errorf("want a progress line and %q:\n%s", "prefetch: done "+want, log)
	}
	for payload := range tree.objects {
		if _, err := os.Stat(filepath.Join(cache, payload)); err != nil {
			t.Errorf("not prefetched: %s", payload)
		}
	}
	nginx.Stop()
	withWatchdog(t, fg.mnt, time.Minute, func() { compareTrees(t, kernel, fg.mnt) })
}

// TestRemoteRepo mounts images from a composefs-rs repository served by
// nginx, by id (checked) and by ref, and compares them with the kernel.
func TestRemoteRepo(t *testing.T) {
	requireRoot(t)
	tree := genTree(24, 150)
	repo := tempDir(t, "repo")
	objects := filepath.Join(repo, "objects")
	tree.putObjects(t, objects)
	image := tree.image(t, 1)
	data, err := os.ReadFile(image)
	if err != nil {
		t.Fatal(err)
	}
	id := hex.EncodeToString(verity.DigestBytes(verity.SHA256, data))
	for _, f := range []struct{ path, content string }{
		{"meta.json", `{"version": 1, "algorithm": "fsverity-sha256-12", "features": {"compatible": [], "read-only-compatible": ["v1_erofs"], "incompatible": []}}`},
		{"objects/" + id[:2] + "/" + id[2:], string(data)},
	} {
		p := filepath.Join(repo, f.path)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(f.content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(repo, "images", "refs"), 0o755)
	os.Symlink("../objects/"+id[:2]+"/"+id[2:], filepath.Join(repo, "images", id))
	os.Symlink("../"+id, filepath.Join(repo, "images", "refs", "rootfs"))
	nginx := storetest.StartNginx(t, repo)
	kernel := kernelMount(t, image, objects)
	cache := filepath.Join(tempDir(t, "cache"), "objects")
	byID := fuseForeground(t, id, "--repo", nginx.URL, "--cache", cache)
	withWatchdog(t, byID.mnt, time.Minute, func() { compareTrees(t, kernel, byID.mnt) })
	if strings.Contains(byID.stderr.String(), "not verified") {
		t.Errorf("an image by id said to be unverified:\n%s", byID.stderr.String())
	}
	byRef := fuseForeground(t, "rootfs", "--repo", strings.TrimSuffix(nginx.URL, "/"), "--cache", cache)
	withWatchdog(t, byRef.mnt, time.Minute, func() { compareTrees(t, kernel, byRef.mnt) })
	if log := byRef.waitStderr("not verified"); !strings.Contains(log, "not verified") {
		t.Errorf("an image by ref not said to be unverified:\n%s", log)
	}
}
