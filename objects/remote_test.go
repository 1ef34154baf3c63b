package objects

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/internal/storetest"
	"github.com/composefs/composefs-go/verity"
)

// served is a flat store with some objects, served by nginx.
type served struct {
	dir      string
	nginx    *storetest.Nginx
	payloads []string
	data     map[string][]byte
}

// serveStore makes a store of objects of the given sizes and serves it.
func serveStore(t *testing.T, alg verity.Algorithm, sizes ...int) *served {
	t.Helper()
	s := &served{dir: t.TempDir(), data: map[string][]byte{}}
	store, err := CreateFlat(s.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	rng := rand.New(rand.NewPCG(uint64(len(sizes)), 7))
	for _, n := range sizes {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		p, _, err := store.Add(alg, tempSource(t, data))
		if err != nil {
			t.Fatal(err)
		}
		s.payloads = append(s.payloads, p)
		s.data[p] = data
	}
	// nginx reads the store as whoever it runs as.
	os.Chmod(s.dir, 0o755)
	s.nginx = storetest.StartNginx(t, s.dir)
	return s
}

func newCache(t *testing.T, max int64) *Cache {
	t.Helper()
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache"), max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newRemote(t *testing.T, url string, cfg RemoteConfig) *Remote {
	t.Helper()
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 2 * time.Second
	}
	r, err := OpenRemote(url, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func mustRead(t *testing.T, f *os.File) []byte {
	t.Helper()
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func cached(c *Cache, payload string) bool {
	_, err := os.Stat(filepath.Join(c.Dir(), payload))
	return err == nil
}

func TestRemoteFetchesVerifiesAndCaches(t *testing.T) {
	for _, alg := range []verity.Algorithm{verity.SHA256, verity.SHA512} {
		t.Run(alg.String(), func(t *testing.T) {
			s := serveStore(t, alg, 0, 1, 4096, 100_000)
			cache := newCache(t, 0)
			r := newRemote(t, strings.TrimSuffix(s.nginx.URL, "/"), RemoteConfig{Cache: cache})
			for _, p := range s.payloads {
				f := mustOpen(t, r, p)
				// The fetch's descriptor, handed on for reading only.
				if fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0); err != nil || fl&unix.O_ACCMODE != unix.O_RDONLY {
					t.Errorf("%s: opened with flags %#x (%v), want read-only", p, fl, err)
				}
				if want := filepath.Join(cache.Dir(), p); f.Name() != want {
					t.Errorf("%s: opened as %s, want %s", p, f.Name(), want)
				}
				if got := mustRead(t, f); !bytes.Equal(got, s.data[p]) {
					t.Fatalf("%s: %d bytes, not the object's %d", p, len(got), len(s.data[p]))
				}
				if !cached(cache, p) {
					t.Errorf("%s not in the cache after its fetch", p)
				}
			}
			if st := r.Stats(); st.Fetched != int64(len(s.payloads)) || st.Failed != 0 {
				t.Errorf("stats %+v, want %d fetched", st, len(s.payloads))
			}
			// Served from the cache with the server gone.
			s.nginx.Stop()
			r2 := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache, Attempts: 1})
			for _, p := range s.payloads {
				if got := mustRead(t, mustOpen(t, r2, p)); !bytes.Equal(got, s.data[p]) {
					t.Fatalf("%s from the cache: wrong content", p)
				}
				if ok, err := r2.Has(p); !ok || err != nil {
					t.Errorf("Has(%s) from the cache = %v, %v", p, ok, err)
				}
			}
			if st := r2.Stats(); st.Fetched != 0 {
				t.Errorf("fetched %d with everything cached", st.Fetched)
			}
			noTemporaries(t, cache.Dir())
		})
	}
}

func mustOpen(t *testing.T, s Store, payload string) *os.File {
	t.Helper()
	f, err := s.Open(payload)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestRemoteMissingAndTampered(t *testing.T) {
	s := serveStore(t, verity.SHA256, 5000, 6000)
	cache := newCache(t, 0)
	r := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache, Attempts: 2})

	missing := PayloadForDigest(bytes.Repeat([]byte{0xab}, 32))
	_, err := r.Open(missing)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), s.nginx.URL+missing) {
		t.Errorf("missing object: %v, want ErrNotExist naming the URL", err)
	}
	if ok, err := r.Has(missing); ok || err != nil {
		t.Errorf("Has(missing) = %v, %v", ok, err)
	}

	// The server's copy of the first object is not what its name says.
	bad := s.payloads[0]
	if err := os.WriteFile(filepath.Join(s.dir, bad), s.data[s.payloads[1]], 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = r.Open(bad)
	if !errors.Is(err, ErrFetch) || !errors.Is(err, verity.ErrMismatch) || !strings.Contains(err.Error(), s.nginx.URL+bad) {
		t.Errorf("tampered object: %v, want ErrFetch and a mismatch naming the URL", err)
	}
	if cached(cache, bad) {
		t.Error("the tampered object entered the cache")
	}
	if n := s.nginx.Requests(bad); n != 2 {
		t.Errorf("tampered object asked %d times, want 2 (Attempts)", n)
	}
	noTemporaries(t, cache.Dir())
	if ok, err := r.Has(bad); !ok || err != nil {
		t.Errorf("Has(tampered) = %v, %v: the server has something by that name", ok, err)
	}
}

func TestRemoteBadCachedCopyFetchedAgain(t *testing.T) {
	s := serveStore(t, verity.SHA256, 3000)
	cache := newCache(t, 0)
	r := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache})
	p := s.payloads[0]
	mustRead(t, mustOpen(t, r, p))
	// Damage the cached copy: a new Remote (no digest remembered) finds
	// it bad, removes it and fetches it again.
	if err := os.WriteFile(filepath.Join(cache.Dir(), p), []byte("not it"), 0o644); err != nil {
		t.Fatal(err)
	}
	r2 := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache})
	if got := mustRead(t, mustOpen(t, r2, p)); !bytes.Equal(got, s.data[p]) {
		t.Fatal("wrong content after the bad cached copy")
	}
	if st := r2.Stats(); st.Fetched != 1 {
		t.Errorf("fetched %d, want the bad copy fetched again", st.Fetched)
	}
	if got, _ := os.ReadFile(filepath.Join(cache.Dir(), p)); !bytes.Equal(got, s.data[p]) {
		t.Error("the cache still holds the bad copy")
	}
}

func TestRemoteFaults(t *testing.T) {
	s := serveStore(t, verity.SHA256, 20_000, 30_000, 40_000, 50_000, 60_000, 70_000)
	proxy := storetest.StartProxy(t, s.nginx.URL)
	type outcome int
	const (
		ok outcome = iota
		eio
	)
	for i, c := range []struct {
		name  string
		fault storetest.FaultFunc
		want  outcome
	}{
		{"5xx twice", func(_ *http.Request, n int) storetest.Fault {
			if n <= 2 {
				return storetest.Fault{Status: 503}
			}
			return storetest.Fault{}
		}, ok},
		{"truncated once", func(_ *http.Request, n int) storetest.Fault { return storetest.Fault{Truncate: n == 1} }, ok},
		{"dropped once", func(_ *http.Request, n int) storetest.Fault { return storetest.Fault{Drop: n == 1} }, ok},
		{"corrupted once", func(_ *http.Request, n int) storetest.Fault { return storetest.Fault{Corrupt: n == 1} }, ok},
		{"corrupted always", func(_ *http.Request, n int) storetest.Fault { return storetest.Fault{Corrupt: true} }, eio},
		{"5xx always", func(_ *http.Request, n int) storetest.Fault { return storetest.Fault{Status: 500} }, eio},
	} {
		t.Run(c.name, func(t *testing.T) {
			cache := newCache(t, 0)
			r := newRemote(t, proxy.URL, RemoteConfig{Cache: cache, Attempts: 3})
			proxy.SetFault(c.fault)
			defer proxy.SetFault(nil)
			p := s.payloads[i]
			f, err := r.Open(p)
			switch c.want {
			case ok:
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(mustRead(t, f), s.data[p]) {
					t.Fatal("wrong content")
				}
			case eio:
				if err == nil {
					f.Close()
					t.Fatal("opened despite the fault")
				}
				if !errors.Is(err, ErrFetch) || errors.Is(err, fs.ErrNotExist) {
					t.Errorf("error %v, want ErrFetch", err)
				}
				if cached(cache, p) {
					t.Error("entered the cache despite the fault")
				}
				if n := proxy.Requests("/" + p); n != 3 {
					t.Errorf("%d requests, want 3 (Attempts)", n)
				}
				t.Log(err)
			}
			noTemporaries(t, cache.Dir())
		})
	}
}

func TestRemoteLargeObjectInRanges(t *testing.T) {
	s := serveStore(t, verity.SHA256, 1<<20+12345)
	proxy := storetest.StartProxy(t, s.nginx.URL)
	// One range in three is cut short once: each is tried again alone.
	var mu sync.Mutex
	seen := map[string]bool{}
	proxy.SetFault(func(r *http.Request, n int) storetest.Fault {
		mu.Lock()
		defer mu.Unlock()
		rng := r.Header.Get("Range")
		first := !seen[rng]
		seen[rng] = true
		return storetest.Fault{Truncate: first && len(seen)%3 == 0}
	})
	cache := newCache(t, 0)
	r := newRemote(t, proxy.URL, RemoteConfig{Cache: cache, RangeSize: 64 << 10})
	p := s.payloads[0]
	if got := mustRead(t, mustOpen(t, r, p)); !bytes.Equal(got, s.data[p]) {
		t.Fatal("wrong content")
	}
	ranges := (len(s.data[p]) + 64<<10 - 1) / (64 << 10)
	if n := proxy.Requests("/" + p); n <= ranges {
		t.Errorf("%d requests for %d ranges, some cut short: want more", n, ranges)
	}
	if len(seen) != ranges {
		t.Errorf("%d distinct ranges asked for, want %d", len(seen), ranges)
	}
}

func TestRemoteSlowObjectBlocksNoOther(t *testing.T) {
	s := serveStore(t, verity.SHA256, 10_000, 100, 200, 300, 400, 500, 600, 700, 800)
	proxy := storetest.StartProxy(t, s.nginx.URL)
	slow := "/" + s.payloads[0]
	proxy.SetFault(func(r *http.Request, n int) storetest.Fault {
		if r.URL.Path == slow {
			return storetest.Fault{Delay: 3 * time.Second}
		}
		return storetest.Fault{Delay: 20 * time.Millisecond}
	})
	r := newRemote(t, proxy.URL, RemoteConfig{Cache: newCache(t, 0), IdleTimeout: 10 * time.Second, MaxRequests: 4})
	slowDone := make(chan error, 1)
	go func() {
		f, err := r.Open(s.payloads[0])
		if err == nil {
			f.Close()
		}
		slowDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	var wg sync.WaitGroup
	for _, p := range s.payloads[1:] {
		wg.Go(func() {
			f, err := r.Open(p)
			if err != nil {
				t.Error(err)
				return
			}
			if !bytes.Equal(mustRead(t, f), s.data[p]) {
				t.Errorf("%s: wrong content", p)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("small objects took %v beside a slow one", d)
	}
	select {
	case err := <-slowDone:
		t.Errorf("the slow object came before the small ones were done: %v", err)
	default:
	}
	if err := <-slowDone; err != nil {
		t.Errorf("slow object: %v", err)
	}
}

func TestRemoteInterruptedOpenFinishesIntoCache(t *testing.T) {
	s := serveStore(t, verity.SHA256, 8000)
	proxy := storetest.StartProxy(t, s.nginx.URL)
	proxy.SetFault(func(*http.Request, int) storetest.Fault { return storetest.Fault{Delay: time.Second} })
	cache := newCache(t, 0)
	r := newRemote(t, proxy.URL, RemoteConfig{Cache: cache})
	p := s.payloads[0]
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.OpenContext(ctx, p)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 500*time.Millisecond {
		t.Fatalf("interrupted open: %v after %v, want the context's error at once", err, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for !cached(cache, p) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !cached(cache, p) {
		t.Fatal("the fetch did not finish into the cache")
	}
	// No open took the fetch's descriptor of the object: it is closed.
	for len(descriptorsUnder(t, cache.Dir())) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if open := descriptorsUnder(t, cache.Dir()); len(open) > 0 {
		t.Errorf("descriptors left open on %v", open)
	}
	proxy.SetFault(nil)
	mustRead(t, mustOpen(t, r, p))
	if n := proxy.Requests("/" + p); n != 1 {
		t.Errorf("%d requests, want the one fetch", n)
	}
}

func TestRemoteServerDownOrStalled(t *testing.T) {
	s := serveStore(t, verity.SHA256, 200_000)
	proxy := storetest.StartProxy(t, s.nginx.URL)
	p := s.payloads[0]

	// A body that stops halfway: the idle timeout ends each try.
	proxy.SetFault(func(*http.Request, int) storetest.Fault { return storetest.Fault{Stall: true} })
	r := newRemote(t, proxy.URL, RemoteConfig{Cache: newCache(t, 0), IdleTimeout: 300 * time.Millisecond, Attempts: 2})
	start := time.Now()
	_, err := r.Open(p)
	if !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "no bytes for") {
		t.Errorf("stalled body: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stalled body failed after %v", d)
	}

	// The server stopped: refused connections fail fast.
	proxy.SetFault(nil)
	s.nginx.Stop()
	r2 := newRemote(t, s.nginx.URL, RemoteConfig{Cache: newCache(t, 0), Attempts: 3})
	start = time.Now()
	_, err = r2.Open(p)
	if !errors.Is(err, ErrFetch) || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("server down: %v, want ErrFetch", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("server down: failed after %v", d)
	}
	if _, err := r2.Has(p); !errors.Is(err, ErrFetch) {
		t.Errorf("Has with the server down: %v", err)
	}
	t.Log(err)
}

func TestRemoteUnnamedPayloadAndNoVerify(t *testing.T) {
	s := serveStore(t, verity.SHA256, 1000)
	if err := os.MkdirAll(filepath.Join(s.dir, "plain"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "plain", "name"), []byte("plain content"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := newCache(t, 0)
	r := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache})
	if got := mustRead(t, mustOpen(t, r, "/plain/name")); string(got) != "plain content" {
		t.Fatalf("unnamed payload: %q", got)
	}
	// Tampered, and fetched unchecked: not cached.
	p := s.payloads[0]
	os.WriteFile(filepath.Join(s.dir, p), []byte("other"), 0o644)
	rn := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache, NoVerify: true})
	if got := mustRead(t, mustOpen(t, rn, p)); string(got) != "other" {
		t.Fatalf("NoVerify: %q", got)
	}
	if cached(cache, p) || cached(cache, "plain/name") {
		t.Error("an unchecked object entered the cache")
	}
	noTemporaries(t, cache.Dir())
	if _, err := r.Open("../x"); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("unsafe payload: %v", err)
	}
}

func TestCacheEvictsLeastRecentlyUsedNotOpen(t *testing.T) {
	s := serveStore(t, verity.SHA256, 10_000, 10_001, 10_002, 10_003)
	cache := newCache(t, 25_000)
	r := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache})
	p := s.payloads
	held := mustOpen(t, r, p[0]) // open: never evicted
	defer held.Close()
	mustRead(t, mustOpen(t, r, p[1]))
	mustRead(t, mustOpen(t, r, p[2])) // 30 KB: p[1] goes, p[0] is open
	if !cached(cache, p[0]) || cached(cache, p[1]) || !cached(cache, p[2]) {
		t.Errorf("after 3: cached %v %v %v, want the open one and the newest", cached(cache, p[0]), cached(cache, p[1]), cached(cache, p[2]))
	}
	held.Close()
	mustRead(t, mustOpen(t, r, p[3])) // p[0] is closed now and the oldest
	if cached(cache, p[0]) || !cached(cache, p[2]) || !cached(cache, p[3]) {
		t.Errorf("after 4: cached %v %v %v, want the two newest", cached(cache, p[0]), cached(cache, p[2]), cached(cache, p[3]))
	}
	if cache.Size() > 25_000 {
		t.Errorf("cache holds %d bytes, bound 25000", cache.Size())
	}
	// A new process learns what the directory holds.
	again, err := OpenCache(cache.Dir(), 25_000)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if again.Size() != cache.Size() {
		t.Errorf("rescanned size %d, want %d", again.Size(), cache.Size())
	}
}

func TestRemoteHeaderAndTLS(t *testing.T) {
	dir := t.TempDir()
	store, err := CreateFlat(dir)
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("private object")
	p, _, err := store.Add(verity.SHA256, tempSource(t, data))
	if err != nil {
		t.Fatal(err)
	}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	pemData := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemData, 0o600); err != nil {
		t.Fatal(err)
	}
	roots, err := LoadCAFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	hdr, err := BearerHeader([]byte("s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := newRemote(t, srv.URL, RemoteConfig{Cache: newCache(t, 0), RootCAs: roots, Header: hdr})
	if got := mustRead(t, mustOpen(t, r, p)); !bytes.Equal(got, data) {
		t.Fatal("wrong content over TLS")
	}
	// Without the token: 401, no retry, EIO.
	r2 := newRemote(t, srv.URL, RemoteConfig{Cache: newCache(t, 0), RootCAs: roots})
	if _, err := r2.Open(p); !errors.Is(err, ErrFetch) || !strings.Contains(err.Error(), "401") {
		t.Errorf("without the token: %v", err)
	}
	// Without the CA: the certificate is refused.
	r3 := newRemote(t, srv.URL, RemoteConfig{Cache: newCache(t, 0), Header: hdr, Attempts: 1})
	var uerr x509.UnknownAuthorityError
	if _, err := r3.Open(p); !errors.Is(err, ErrFetch) || !errors.As(err, &uerr) {
		t.Errorf("without the CA: %v", err)
	}
}

// TestFetches: a remote store fetches, a flat one does not, and a Multi
// does when one of its stores does.
func TestFetches(t *testing.T) {
	r, err := OpenRemote("http://h/objects", RemoteConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a, err := OpenFlat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := OpenFlat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, c := range []struct {
		name  string
		store Store
		want  bool
	}{
		{"remote", r, true},
		{"flat", a, false},
		{"multi of flat", Multi(a, b), false},
		{"multi with remote", Multi(a, r), true},
		{"multi of multi with remote", Multi(Multi(b), Multi(a, r)), true},
	} {
		if got := Fetches(c.store); got != c.want {
			t.Errorf("%s: Fetches %v, want %v", c.name, got, c.want)
		}
	}
}

func TestOpenRemoteURLs(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"http://h/objects", "http://h/objects/ab/cd"},
		{"https://h:8443/a%2Cb/", "https://h:8443/a%2Cb/ab/cd"},
	} {
		r, err := OpenRemote(c.in, RemoteConfig{})
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		if got := r.objectURL("ab/cd").Redacted(); got != c.want {
			t.Errorf("%s: object URL %s, want %s", c.in, got, c.want)
		}
	}
	for _, bad := range []string{"ftp://h/", "http:///x", "http://h/?q=1", "http://h/#f", "http://h/%zz", "http://user:pw@h/"} {
		if _, err := OpenRemote(bad, RemoteConfig{}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if !IsRemote("https://x") || IsRemote("/srv/http:x") {
		t.Error("IsRemote")
	}
}

func TestParseContentRange(t *testing.T) {
	for _, c := range []struct {
		in             string
		first, last, n int64
		ok             bool
	}{
		{"bytes 0-9/10", 0, 9, 10, true},
		{"bytes 5-5/*", 5, 5, -1, true},
		{"bytes */0", -1, -1, 0, true},
		{"bytes 0-10/10", 0, 0, 0, false},
		{"bytes 9-0/10", 0, 0, 0, false},
		{"bytes -1-2/10", 0, 0, 0, false},
		{"bytes */*", 0, 0, 0, false},
		{"items 0-1/2", 0, 0, 0, false},
		{"bytes +0-1/2", 0, 0, 0, false},
	} {
		a, b, n, err := parseContentRange(c.in)
		if (err == nil) != c.ok || c.ok && (a != c.first || b != c.last || n != c.n) {
			t.Errorf("%q: %d %d %d %v", c.in, a, b, n, err)
		}
	}
}

func TestParseHeaderFile(t *testing.T) {
	h, err := ParseHeaderFile([]byte("# private store\nAuthorization: Bearer abc\r\n\nX-Extra:  v 1 \n"))
	if err != nil {
		t.Fatal(err)
	}
	if h.Get("Authorization") != "Bearer abc" || h.Get("X-Extra") != "v 1" {
		t.Errorf("headers %v", h)
	}
	for _, bad := range []string{"", "# only\n", "no colon\n", "Bad Name: v\n", "X:\n", "X: a\x01b\n"} {
		if _, err := ParseHeaderFile([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		} else if strings.Contains(err.Error(), "a\x01b") {
			t.Errorf("%q: the error shows the value: %v", bad, err)
		}
	}
	if _, err := BearerHeader([]byte("two words")); err == nil {
		t.Error("a token with a space accepted")
	}
}

func FuzzParseHeaderFile(f *testing.F) {
	f.Add([]byte("Authorization: Bearer x\n"))
	f.Add([]byte("#c\nA: b\r\nC:d"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeaderFile(data)
		if err != nil {
			return
		}
		for k, vs := range h {
			if !isToken(k) {
				t.Fatalf("name %q", k)
			}
			for _, v := range vs {
				if v == "" || !printable(v) || strings.TrimSpace(v) != v {
					t.Fatalf("value %q", v)
				}
			}
		}
	})
}

func FuzzParseContentRange(f *testing.F) {
	f.Add("bytes 0-9/10")
	f.Add("bytes */0")
	f.Fuzz(func(t *testing.T, s string) {
		a, b, n, err := parseContentRange(s)
		if err != nil {
			return
		}
		if a == -1 {
			if b != -1 || n < 0 {
				t.Fatalf("%q: %d %d %d", s, a, b, n)
			}
			return
		}
		if a < 0 || b < a || n >= 0 && b >= n {
			t.Fatalf("%q: %d %d %d", s, a, b, n)
		}
		if want := fmt.Sprintf("bytes %d-%d/", a, b); !strings.HasPrefix(s, want) {
			t.Fatalf("%q read as %s", s, want)
		}
	})
}

func TestMultiCheckedFallsThroughMismatch(t *testing.T) {
	data := []byte("the real content")
	good, bad := t.TempDir(), t.TempDir()
	gs, err := CreateFlat(good)
	if err != nil {
		t.Fatal(err)
	}
	defer gs.Close()
	p, digest, err := gs.Add(verity.SHA256, tempSource(t, data))
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(bad, p[:2]), 0o755)
	os.WriteFile(filepath.Join(bad, p), []byte("damaged"), 0o644)
	badStore, _ := OpenFlat(bad)
	defer badStore.Close()
	m := Multi(badStore, gs).(CheckedStore)
	cache := verity.NewCache()
	check := func(f *os.File) error { return cache.Verify(f, verity.SHA256, digest) }
	f, err := m.OpenChecked(context.Background(), p, check)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, f); !bytes.Equal(got, data) {
		t.Fatalf("served %q, want the second store's copy", got)
	}
	// Only the damaged copy: its mismatch, not "not found".
	only := Multi(badStore).(CheckedStore)
	if _, err := only.OpenChecked(context.Background(), p, check); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("only a damaged copy: %v", err)
	}
	// Plain Open keeps the first copy found, unchecked.
	if got := mustRead(t, mustOpen(t, m, p)); string(got) != "damaged" {
		t.Errorf("Open: %q", got)
	}
}

// Opens of one object at once share one fetch, and reopening a cached
// object while another open hashes it does not make it look changed.
func TestRemoteConcurrentOpens(t *testing.T) {
	s := serveStore(t, verity.SHA256, 300_000)
	cache := newCache(t, 0)
	r := newRemote(t, s.nginx.URL, RemoteConfig{Cache: cache})
	p := s.payloads[0]
	for round := range 2 {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				f, err := r.Open(p)
				if err != nil {
					t.Errorf("round %d: %v", round, err)
					return
				}
				if !bytes.Equal(mustRead(t, f), s.data[p]) {
					t.Errorf("round %d: wrong content", round)
				}
			})
		}
		wg.Wait()
	}
	if n := s.nginx.Requests(p); n != 1 {
		t.Errorf("%d requests for one object opened 32 times", n)
	}
}

func TestRemoteOpenAs(t *testing.T) {
	s := serveStore(t, verity.SHA256, 10)
	data := []byte("an image, say")
	if err := os.WriteFile(filepath.Join(s.dir, "image.cfs"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	digest := verity.DigestBytes(verity.SHA256, data)
	cache := newCache(t, 0)
	r, name, err := OpenRemoteFile(s.nginx.URL+"image.cfs", RemoteConfig{Cache: cache})
	if err != nil || name != "image.cfs" || r.URL() != s.nginx.URL {
		t.Fatalf("OpenRemoteFile: %v %q %v", r, name, err)
	}
	defer r.Close()
	f, err := r.OpenAs(context.Background(), name, verity.SHA256, digest)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, f); !bytes.Equal(got, data) {
		t.Fatalf("OpenAs: %q", got)
	}
	if !cached(cache, PayloadForDigest(digest)) {
		t.Error("the file is not kept under its digest")
	}
	wrong := verity.DigestBytes(verity.SHA256, []byte("other"))
	if _, err := r.OpenAs(context.Background(), name, verity.SHA256, wrong); !errors.Is(err, verity.ErrMismatch) {
		t.Errorf("wrong digest: %v", err)
	}
	if cached(cache, PayloadForDigest(wrong)) {
		t.Error("a file that does not match its digest entered the cache")
	}
	// Without a digest: fetched for the open alone.
	if got := mustRead(t, mustOpen(t, r, name)); !bytes.Equal(got, data) {
		t.Fatalf("Open: %q", got)
	}
	if _, _, err := OpenRemoteFile(s.nginx.URL, RemoteConfig{}); err == nil {
		t.Error("a URL without a file name accepted")
	}
}

func TestRemoteRepository(t *testing.T) {
	for _, c := range []struct {
		alg  verity.Algorithm
		meta string
	}{{verity.SHA512, sha512Meta}, {verity.SHA256, ""}} {
		t.Run(c.alg.String(), func(t *testing.T) {
			dir, imageID, object := makeRepo(t, c.alg, c.meta)
			os.Chmod(dir, 0o755)
			nginx := storetest.StartNginx(t, dir)
			cache := newCache(t, 0)
			rr, err := OpenRemoteRepository(nginx.URL, RemoteConfig{Cache: cache})
			if err != nil {
				t.Fatal(err)
			}
			defer rr.Close()
			if (rr.Meta() != nil) != (c.meta != "") {
				t.Errorf("meta %+v", rr.Meta())
			}
			f, id, err := rr.OpenImage(context.Background(), imageID)
			if err != nil || hex.EncodeToString(id) != imageID {
				t.Fatalf("image by id: %v, id %x", err, id)
			}
			if got := mustRead(t, f); string(got) != "pretend this is an EROFS image" {
				t.Errorf("image by id: %q", got)
			}
			f, id, err = rr.OpenImage(context.Background(), "system/app/v1")
			if err != nil || id != nil {
				t.Fatalf("image by ref: %v, id %x", err, id)
			}
			if got := mustRead(t, f); string(got) != "pretend this is an EROFS image" {
				t.Errorf("image by ref: %q", got)
			}
			if got := mustRead(t, mustOpen(t, rr.Objects(), PayloadForDigest(object))); string(got) != "file content" {
				t.Errorf("object: %q", got)
			}
			if _, _, err := rr.OpenImage(context.Background(), "nope"); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("missing ref: %v", err)
			}
			if _, _, err := rr.OpenImage(context.Background(), "../meta.json"); !errors.Is(err, ErrUnsafePath) {
				t.Errorf("unsafe ref: %v", err)
			}
		})
	}
	// A meta.json that is not one.
	dir := t.TempDir()
	mustWrite(t, filepath.Join(dir, "meta.json"), `{"version": 99, "algorithm": "fsverity-sha256-12"}`)
	os.Chmod(dir, 0o755)
	nginx := storetest.StartNginx(t, dir)
	if _, err := OpenRemoteRepository(nginx.URL, RemoteConfig{}); !errors.Is(err, ErrRepositoryMeta) {
		t.Errorf("bad meta.json: %v", err)
	}
}

func FuzzBearerHeader(f *testing.F) {
	f.Add([]byte("tok\n"))
	f.Add([]byte(" a b "))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := BearerHeader(data)
		if err != nil {
			return
		}
		v := h.Get("Authorization")
		tok, ok := strings.CutPrefix(v, "Bearer ")
		if !ok || tok == "" || !printable(tok) || strings.ContainsAny(tok, " \t") {
			t.Fatalf("%q gave %q", data, v)
		}
	})
}

// TestRemoteRedirectKeepsSecrets: a store that redirects to another host
// gets the object there, but the headers of --header-file and the token
// stay with the host they were given for; a redirect from https to http
// is refused; a URL with a password is refused, and no error quotes it.
func TestRemoteRedirectKeepsSecrets(t *testing.T) {
	s := serveStore(t, verity.SHA256, 3000)
	p := s.payloads[0]
	var seen http.Header
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r.Header.Clone()
		w.Write(s.data[p])
	}))
	t.Cleanup(other.Close)
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(first.Close)
	secret := http.Header{"X-Api-Key": {"k"}, "Authorization": {"Bearer t"}}
	r := newRemote(t, first.URL, RemoteConfig{Cache: newCache(t, 0), Header: secret, Attempts: 1})
	f, err := r.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustRead(t, f); !bytes.Equal(got, s.data[p]) {
		t.Errorf("redirected fetch: %d bytes, want %d", len(got), len(s.data[p]))
	}
	if seen == nil || seen.Get("X-Api-Key") != "" || seen.Get("Authorization") != "" {
		t.Errorf("the other host got %v", seen)
	}
	policy := redirectPolicy(secret)
	from, _ := http.NewRequest("GET", "https://a.example/x", nil)
	to, _ := http.NewRequest("GET", "http://a.example/x", nil)
	if err := policy(to, []*http.Request{from}); err == nil {
		t.Error("a redirect from https to http was followed")
	}
	for _, bad := range []string{"https://user:s3cret@h.example/objects/", "https://user:s3cret@h.example/%zz/"} {
		_, err := OpenRemote(bad, RemoteConfig{Cache: newCache(t, 0)})
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenRemote(%q): %v", bad, err)
		}
	}
}

// TestRemoteOverlongBody: a server that sends more than the object's size
// (given by WithSize, or MaxObjectSize) is cut off there, and nothing
// enters the cache.
func TestRemoteOverlongBody(t *testing.T) {
	s := serveStore(t, verity.SHA256, 3000)
	p := s.payloads[0]
	var sent atomic.Int64
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for i := 0; i < 1024; i++ { // 64 MiB, far more than the object
			n, err := w.Write(buf)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	cache := newCache(t, 0)
	r := newRemote(t, endless.URL, RemoteConfig{Cache: cache, Attempts: 1})
	digest, _ := hex.DecodeString(strings.Replace(p, "/", "", 1))
	_, err := r.OpenAs(WithSize(context.Background(), 3000), p, verity.SHA256, digest)
	if err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("an endless body for a 3000-byte object: %v", err)
	}
	r2 := newRemote(t, endless.URL, RemoteConfig{Cache: cache, Attempts: 1, MaxObjectSize: 1 << 20})
	if _, err := r2.OpenAs(context.Background(), p, verity.SHA256, digest); err == nil || !strings.Contains(err.Error(), "longer") {
		t.Errorf("an endless body, MaxObjectSize 1 MiB: %v", err)
	}
	if cached(cache, p) {
		t.Error("the overlong body was cached")
	}
	if n := sent.Load(); n >= 64<<20 {
		t.Errorf("the server could send all %d bytes", n)
	}
}

// descriptorsUnder lists the regular files beneath dir this process has
// open.
func descriptorsUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var open []string
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(target, dir+"/") {
			continue
		}
		// The cache holds its fan-out directories open: files only.
		if fi, err := os.Stat(target); err == nil && fi.Mode().IsRegular() {
			open = append(open, target)
		}
	}
	return open
}

// TestRemoteFetchPlacedMeanwhile: a fetch that finds its object placed in
// the cache meanwhile (by another fetch, or another process sharing the
// cache) keeps that copy and hands nothing on: every open serves the copy
// in place. It leaves no temporary, and the object opens from that copy.
func TestRemoteFetchPlacedMeanwhile(t *testing.T) {
	s := serveStore(t, verity.SHA256, 4096)
	cache := newCache(t, 0)
	r := newRemote(t, strings.TrimSuffix(s.nginx.URL, "/"), RemoteConfig{Cache: cache})
	p := s.payloads[0]
	inCache := filepath.Join(cache.Dir(), p)
	if err := os.MkdirAll(filepath.Dir(inCache), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inCache, s.data[p], 0o644); err != nil {
		t.Fatal(err)
	}
	alg, digest, _ := payloadDigest(p)
	f, err := r.fetchToCache(r.objectURL(p), p, alg, digest, int64(len(s.data[p])))
	if err != nil || f != nil {
		t.Errorf("fetch of an object placed meanwhile: %v, %v; want nothing handed on", f, err)
	}
	if f != nil {
		f.Close()
	}
	noTemporaries(t, cache.Dir())
	if got := mustRead(t, mustOpen(t, r, p)); !bytes.Equal(got, s.data[p]) {
		t.Errorf("%s: wrong content after the fetch", p)
	}
}

// TestRemoteNoFetchOncePlaced: an open that found no copy in the cache,
// then waits for a fetch after another open's fetch of the same object
// placed it and ended, takes the copy placed instead of fetching again (a
// read-ahead worker and a READ of the same file race so).
func TestRemoteNoFetchOncePlaced(t *testing.T) {
	s := serveStore(t, verity.SHA256, 4096)
	cache := newCache(t, 0)
	r := newRemote(t, strings.TrimSuffix(s.nginx.URL, "/"), RemoteConfig{Cache: cache})
	p := s.payloads[0]
	alg, digest, _ := payloadDigest(p)
	if f, err := cache.open(p); err == nil {
		f.Close()
		t.Fatal("the cache holds the object before any fetch")
	}
	mustRead(t, mustOpen(t, r, p)) // the other open: fetched, placed, ended
	f, placed, err := r.await(t.Context(), r.objectURL(p), p, alg, digest)
	if f != nil {
		f.Close()
	}
	if err != nil || f != nil || !placed {
		t.Errorf("await after the object was placed: %v, %v, %v; want it found placed", f, placed, err)
	}
	if n := r.Stats().Fetched; n != 1 {
		t.Errorf("object fetched %d times, want 1", n)
	}
}
