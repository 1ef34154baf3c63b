package objects

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/verity"
)

// ErrFetch is wrapped when an object could not be had from a remote
// store: an HTTP error, a short body, a body that does not match the
// object's digest, a server that cannot be reached or stops sending. The
// kernel's answer for it is EIO. A missing object (404) wraps
// fs.ErrNotExist instead.
var ErrFetch = errors.New("object fetch failed")

// IsRemote tells whether a store location is a URL (http:// or https://)
// rather than a directory. A URL is one location: never split on ':'.
func IsRemote(location string) bool {
	return strings.HasPrefix(location, "http://") || strings.HasPrefix(location, "https://")
}

// RemoteConfig says how a Remote fetches and keeps objects. The zero
// value of each field has a sensible default.
type RemoteConfig struct {
	// Cache is where fetched objects are kept, checked, and found again
	// without the server. Nil keeps nothing: every open fetches.
	Cache *Cache
	// Verity remembers the digests of cached objects, so that an object
	// opened again is hashed once (once per open while it was fetched
	// within seconds: verity.Cache); sharing the composefs view's cache
	// (composefs.Config.Cache) saves the second hash of the open that
	// takes the fetch's file. Nil gets one of the store's own.
	Verity *verity.Cache
	// NoVerify fetches without checking (--verity=off). Unchecked
	// objects never enter the cache: they are fetched on every open.
	NoVerify bool
	// Header is sent with every request: a bearer token, say.
	Header http.Header
	// RootCAs are the certificate authorities trusted for https; nil
	// means the system's.
	RootCAs *x509.CertPool
	// IdleTimeout is how long a request may go without a byte, from the
	// connection to the end of the body; 20 seconds when 0. It never
	// bounds a whole transfer.
	IdleTimeout time.Duration
	// Attempts is how many times a request is tried before it fails
	// (with backoff between tries); 4 when 0.
	Attempts int
	// MaxRequests bounds the requests in flight at once; 8 when 0.
	MaxRequests int
	// RangeSize is the size of the ranges a large object is fetched in,
	// several at once; 8 MiB when 0.
	RangeSize int64
	// MaxObjectSize bounds an object whose size the caller does not give
	// (WithSize); 0 means defaultMaxObjectSize.
	MaxObjectSize int64
	// Transport, when not nil, carries the requests instead of one
	// made from the fields above (tests).
	Transport http.RoundTripper
}

// Remote is a flat store served over HTTP(S): the object "xx/rest" is
// at the base URL + "xx/rest". An object is fetched on its first open
// into the cache, and checked before it is placed there and before it is
// returned: an object's name is the hex of its fs-verity digest, so
// nothing from the server is trusted. Concurrent opens of one object
// share one fetch; an open whose context ends returns at once while the
// fetch goes on into the cache. It is safe for concurrent use.
type Remote struct {
	base  *url.URL
	shown string // the base URL without credentials, for messages
	cfg   RemoteConfig
	hc    *http.Client
	slots chan struct{}
	// bufs and hashers keep the copy buffers and the hashers of the
	// fetches done, at most one per request slot, for the next ones: a
	// sync.Pool loses them at every collection, which a daemon with a
	// small heap has every few fetches, and then each fetch allocates
	// 64 KiB of buffer and a hasher's tree, garbage that brings the next
	// collection sooner.
	bufs    chan *[]byte
	hashers chan *verity.Hasher

	ctx    context.Context // ends with Close: fetches in the background stop
	cancel context.CancelFunc

	mu      sync.Mutex
	flights map[string]*flight
	running sync.WaitGroup // the fetches in the background

	fetched atomic.Int64
	bytes   atomic.Int64
	failed  atomic.Int64
}

// flight is one fetch into the cache, which every open of its object
// waits for.
type flight struct {
	done chan struct{}
	err  error
	// file is the fetched object, placed and still open, for one of the
	// opens waiting: it need not open the object again. waiters counts
	// those opens, ended says the fetch is over; all three are guarded
	// by Remote.mu. Whoever leaves last with file untaken closes it.
	file    *os.File
	waiters int
	ended   bool
}

// RemoteStats counts what a Remote fetched.
type RemoteStats struct {
	Fetched int64 // objects fetched into the cache or for one open
	Bytes   int64 // their bytes
	Failed  int64 // fetches that failed
}

// OpenRemote opens the store at rawURL (http or https), a trailing slash
// added when missing. Nothing is requested until an object is.
func OpenRemote(rawURL string, cfg RemoteConfig) (*Remote, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("object store URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("object store URL %s: want http:// or https://HOST/PATH", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("object store URL %s: a query or fragment has no place in a store's URL", u.Redacted())
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 20 * time.Second
	}
	if cfg.Attempts <= 0 {
		cfg.Attempts = 4
	}
	if cfg.MaxRequests <= 0 {
		cfg.MaxRequests = 8
	}
	if cfg.RangeSize <= 0 {
		cfg.RangeSize = 8 << 20
	}
	if cfg.Verity == nil {
		cfg.Verity = verity.NewCache()
	}
	tr := cfg.Transport
	if tr == nil {
		tr = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.IdleTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   cfg.IdleTimeout,
			ResponseHeaderTimeout: cfg.IdleTimeout,
			MaxIdleConnsPerHost:   cfg.MaxRequests,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
			// The bytes as stored: a gzip the transport undid would
			// not be what the ranges count.
			DisableCompression: true,
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Remote{
		base: u, shown: u.Redacted(), cfg: cfg,
		hc:      &http.Client{Transport: tr, CheckRedirect: redirectPolicy(cfg.Header)},
		slots:   make(chan struct{}, cfg.MaxRequests),
		bufs:    make(chan *[]byte, cfg.MaxRequests),
		hashers: make(chan *verity.Hasher, cfg.MaxRequests),
		ctx:     ctx, cancel: cancel,
		flights: map[string]*flight{},
	}, nil
}

// defaultMaxObjectSize bounds an object of unknown size fetched from a
// server, which could otherwise fill the cache's disk before the digest
// check: far above any file an image holds in practice.
const defaultMaxObjectSize = 64 << 30

type sizeKey struct{}

// WithSize tells a store that fetches objects the size the object opened
// with ctx has (the image's file size): a server answering more is cut
// off at once rather than after the digest check.
func WithSize(ctx context.Context, size int64) context.Context {
	return context.WithValue(ctx, sizeKey{}, size)
}

// expectedSize is WithSize's size, -1 when none was given.
func expectedSize(ctx context.Context) int64 {
	if n, ok := ctx.Value(sizeKey{}).(int64); ok && n >= 0 {
		return n
	}
	return -1
}

// ParseURL parses the URL of a store or an image. Its errors never quote
// the URL, and a URL with credentials in it is refused: a mount's command
// line is readable by every user (/proc/PID/cmdline), so a password
// belongs in --token-file or --header-file.
func ParseURL(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	if u.User != nil {
		return nil, fmt.Errorf("%s: credentials in a URL are refused, as every user can read a mount's command line (--token-file or --header-file give them)", u.Redacted())
	}
	return u, nil
}

// redirectPolicy follows a store's redirects, but never from https to
// http, and sends the headers of --header-file and --token-file only to
// the host they were given for: Go's client drops only Authorization and
// cookies on a change of host, and keeps them from https to http.
func redirectPolicy(secret http.Header) func(*http.Request, []*http.Request) error {
	return func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		first := via[0].URL
		if first.Scheme == "https" && req.URL.Scheme != "https" {
			return fmt.Errorf("redirect from https to %s refused", req.URL.Scheme)
		}
		if req.URL.Host != first.Host {
			for name := range secret {
				req.Header.Del(name)
			}
			req.Header.Del("Authorization")
		}
		return nil
	}
}

// OpenRemoteFile opens a Remote on the directory of the file at rawURL
// and returns it with the file's name in it, for Open or OpenAs.
func OpenRemoteFile(rawURL string, cfg RemoteConfig) (*Remote, string, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, "", fmt.Errorf("URL: %w", err)
	}
	i := strings.LastIndexByte(u.Path, '/')
	if i < 0 || i == len(u.Path)-1 {
		return nil, "", fmt.Errorf("URL %s: names no file", u.Redacted())
	}
	name := u.Path[i+1:]
	u.Path, u.RawPath = u.Path[:i+1], ""
	r, err := OpenRemote(u.String(), cfg)
	if err != nil {
		return nil, "", err
	}
	return r, name, nil
}

// URL is the store's base URL, without credentials.
func (r *Remote) URL() string { return r.shown }

// Stats counts the fetches so far.
func (r *Remote) Stats() RemoteStats {
	return RemoteStats{Fetched: r.fetched.Load(), Bytes: r.bytes.Load(), Failed: r.failed.Load()}
}

// Close stops the fetches in flight, waits for them to end, and lets go
// of idle connections. The cache stays open: it is the caller's, to close
// once its remote stores are closed.
func (r *Remote) Close() error {
	r.cancel()
	r.running.Wait()
	r.hc.CloseIdleConnections()
	return nil
}

// Open is OpenContext without a context to end it.
func (r *Remote) Open(payload string) (*os.File, error) {
	return r.OpenContext(context.Background(), payload)
}

// OpenContext opens the object named by payload: from the cache when it
// has a copy that matches the name's digest (a copy that does not is
// removed), else fetched, checked and placed there first. A payload
// that is no digest, or a store with NoVerify, is fetched for this open
// alone, into a file with no name, and checked by no one here (composefs
// checks it against the file's metacopy digest). Errors name the object
// and the URL, and wrap fs.ErrNotExist (HTTP 404) or ErrFetch.
func (r *Remote) OpenContext(ctx context.Context, payload string) (*os.File, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return nil, fmt.Errorf("object %q: %w", payload, err)
	}
	alg, digest, named := payloadDigest(rel)
	if !named || r.cfg.NoVerify || r.cfg.Cache == nil {
		return r.fetchUnnamed(ctx, rel, alg, digest, named && !r.cfg.NoVerify)
	}
	return r.openCached(ctx, r.objectURL(rel), rel, alg, digest)
}

// OpenAs opens the file name (a path beneath the store's URL) whose
// fs-verity digest the caller knows: from the cache, where it is kept
// under its digest ("xx/rest") like any object, else fetched, checked
// and placed there. An image named by URL and --digest is fetched so.
func (r *Remote) OpenAs(ctx context.Context, name string, alg verity.Algorithm, digest []byte) (*os.File, error) {
	rel, err := cleanRelative(name)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", name, err)
	}
	if !alg.Valid() || len(digest) != alg.Size() {
		return nil, fmt.Errorf("%s: digest of %d bytes for %s", name, len(digest), alg)
	}
	u := r.objectURL(rel)
	if r.cfg.Cache == nil {
		return r.fetchUnnamed(ctx, rel, alg, digest, true)
	}
	return r.openCached(ctx, u, PayloadForDigest(digest), alg, digest)
}

// openCached opens rel from the cache, fetching it from u first when it
// is missing or its copy does not match digest.
func (r *Remote) openCached(ctx context.Context, u *url.URL, rel string, alg verity.Algorithm, digest []byte) (*os.File, error) {
	fetched, lookedAgain := false, false
	for {
		f, err := r.cfg.Cache.open(rel)
		switch {
		case err == nil:
			// Checked whatever put it there: another process sharing
			// the cache may have, or this one just now (the open that
			// waited for the fetch took its descriptor; this one
			// hashes the file again until its times are settled).
			err = r.cfg.Verity.VerifyContext(ctx, f, alg, digest)
			if err == nil {
				return f, nil
			}
			f.Close()
			if !errors.Is(err, verity.ErrMismatch) {
				return nil, fmt.Errorf("object %s in cache %s: %w", rel, r.cfg.Cache.Dir(), err)
			}
			r.cfg.Cache.remove(rel)
			if fetched {
				// A bad copy put there by another process sharing
				// the cache, before or after this one's fetch: not
				// fetched again, as that could go on for ever.
				return nil, fetchErr(u, err)
			}
		case !errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("object %s in cache %s: %w", rel, r.cfg.Cache.Dir(), err)
		case fetched:
			// Placed and gone again at once: evicted by another
			// process sharing the cache.
			return nil, fetchErr(u, errors.New("evicted from the cache as soon as it was fetched"))
		}
		f, placed, err := r.await(ctx, u, rel, alg, digest)
		if err != nil {
			return nil, err
		}
		if f != nil {
			// A descriptor of the very file the fetch checked.
			return f, nil
		}
		if placed && !lookedAgain {
			// Placed by a fetch that ended between this open's look
			// and its wait: no fetch of this open's yet, so a copy
			// gone meanwhile is fetched, once.
			lookedAgain = true
			continue
		}
		fetched = true
	}
}

// Has tells whether the cache holds the object or the server has it (one
// HEAD request, not tried again).
func (r *Remote) Has(payload string) (bool, error) {
	rel, err := cleanPayload(payload)
	if err != nil {
		return false, fmt.Errorf("object %q: %w", payload, err)
	}
	if r.cfg.Cache != nil {
		if ok, err := r.cfg.Cache.flat.Has(rel); ok && err == nil {
			return true, nil
		}
	}
	// One try: Has is a look before the mount, which a server that is
	// down must not hold up for long.
	u := r.objectURL(rel)
	resp, err := r.request(r.ctx, http.MethodHead, u, -1, -1)
	if err == nil {
		resp.Body.Close()
		err = statusError(resp)
	}
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fetchErr(u, err)
}

// await waits for the fetch of rel into the cache, starting it unless
// one is in flight, or for ctx's end, whichever comes first. It returns
// the fetched object open when this open is the first to take it, else
// nil: the object is in the cache. placed says it was there already, no
// fetch started.
func (r *Remote) await(ctx context.Context, u *url.URL, rel string, alg verity.Algorithm, digest []byte) (f *os.File, placed bool, err error) {
	r.mu.Lock()
	fl, ok := r.flights[rel]
	if !ok && r.cfg.Cache.present(rel) {
		// Fetched between this open's look in the cache and now: a
		// fetch places its object before it ends its flight, under
		// this lock. A second fetch would only be dropped. (One
		// fstatat under the lock, on the cache's disk.)
		r.mu.Unlock()
		return nil, true, nil
	}
	if !ok {
		fl = &flight{done: make(chan struct{})}
		r.flights[rel] = fl
		r.running.Add(1)
		go func() {
			defer r.running.Done()
			f, err := r.fetchToCache(u, rel, alg, digest, expectedSize(ctx))
			r.mu.Lock()
			delete(r.flights, rel)
			fl.err, fl.ended = err, true
			if fl.waiters > 0 {
				fl.file = f
			} else if f != nil {
				f.Close() // every open waiting has given up
			}
			r.mu.Unlock()
			close(fl.done)
		}()
	}
	fl.waiters++
	r.mu.Unlock()
	select {
	case <-fl.done:
		r.mu.Lock()
		f := fl.file
		fl.file = nil
		fl.waiters--
		r.mu.Unlock()
		return f, false, fl.err
	case <-ctx.Done():
		r.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 && fl.ended && fl.file != nil {
			fl.file.Close()
			fl.file = nil
		}
		r.mu.Unlock()
		return nil, false, ctx.Err()
	}
}

// fetchToCache fetches u into a temporary file of the cache, checks it
// against digest, places it as rel and checks the placed file again. It returns
// the file open for reading (nil if that cannot be had).
func (r *Remote) fetchToCache(u *url.URL, rel string, alg verity.Algorithm, digest []byte, size int64) (*os.File, error) {
	tmp, err := r.cfg.Cache.tempFile(rel)
	if err != nil {
		return nil, fetchErr(u, err)
	}
	n, err := r.download(r.ctx, u, tmp.File, alg, digest, true, size)
	if err != nil {
		tmp.drop()
		r.failed.Add(1)
		return nil, fetchErr(u, err)
	}
	placed, err := tmp.place(n)
	if err != nil {
		r.failed.Add(1)
		return nil, fetchErr(u, err)
	}
	r.fetched.Add(1)
	r.bytes.Add(n)
	if !placed {
		// Another copy got there first: the waiting opens check that
		// one, which every later open serves too. This one, unlinked,
		// is not handed on.
		return nil, nil
	}
	// Checked again from the file, not taken from the download's hash:
	// that hash saw the bytes the server sent, and what is served is
	// the bytes the file holds. The file was written just now, so the
	// digest cache knows this digest through f alone (verity.Cache):
	// the caller's own check of f finds it, while another open of the
	// same object hashes it again until its times are settled. Once
	// the writable descriptor is closed: on a file system that writes
	// back at close (NFS, FUSE), closing it may change the times the
	// digest is cached by.
	f := readOnly(tmp.File, filepath.Join(r.cfg.Cache.Dir(), rel))
	if f != nil {
		if err := r.cfg.Verity.VerifyContext(r.ctx, f, alg, digest); err != nil {
			f.Close()
			r.cfg.Cache.remove(rel)
			r.failed.Add(1)
			return nil, fetchErr(u, err)
		}
	}
	return f, nil
}

// readOnly closes f, open for writing too, and returns the same file open
// only for reading: through /proc/self/fd, which reaches f's inode
// whatever has become of its name, so that what is served is what was
// checked and no later slip can write to it. Nil when /proc cannot give
// it: the caller opens the object again by its name, and hashes it. name
// names the new file.
func readOnly(f *os.File, name string) *os.File {
	defer f.Close()
	fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(int(f.Fd())), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

// fetchUnnamed fetches rel for one open into a file with no name,
// checked against digest when check says so.
func (r *Remote) fetchUnnamed(ctx context.Context, rel string, alg verity.Algorithm, digest []byte, check bool) (*os.File, error) {
	u := r.objectURL(rel)
	dir := os.TempDir()
	if r.cfg.Cache != nil {
		dir = r.cfg.Cache.Dir()
	}
	fd, err := unix.Open(dir, unix.O_RDWR|unix.O_TMPFILE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fetchErr(u, fmt.Errorf("temporary file in %s: %w", dir, err))
	}
	f := os.NewFile(uintptr(fd), u.Redacted())
	n, err := r.download(ctx, u, f, alg, digest, check, expectedSize(ctx))
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		r.failed.Add(1)
		return nil, fetchErr(u, err)
	}
	r.fetched.Add(1)
	r.bytes.Add(n)
	return f, nil
}

func fetchErr(u *url.URL, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("object %s: %w", u.Redacted(), fs.ErrNotExist)
	}
	return fmt.Errorf("object %s: %w: %w", u.Redacted(), ErrFetch, err)
}

// objectURL is the URL of the object rel.
func (r *Remote) objectURL(rel string) *url.URL {
	u := *r.base
	segs := strings.Split(rel, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	u.Path = r.base.Path + rel
	u.RawPath = r.base.EscapedPath() + strings.Join(segs, "/")
	return &u
}

// payloadDigest reads the digest a payload "xx/rest" names: 64 hex
// digits for sha256, 128 for sha512.
func payloadDigest(rel string) (verity.Algorithm, []byte, bool) {
	if len(rel) < 3 || rel[2] != '/' {
		return 0, nil, false
	}
	d, err := hex.DecodeString(rel[:2] + rel[3:])
	if err != nil || strings.ToLower(rel) != rel {
		return 0, nil, false
	}
	alg, ok := verity.AlgorithmForDigestSize(len(d))
	return alg, d, ok
}

// download fetches the object at u into the empty file f, and checks it
// against digest when check says so. Each request is tried again, with
// backoff, after a failure that another try may mend (a dropped
// connection, a 5xx, a short body); a body that does not match the
// digest makes the whole object tried again, as many times.
func (r *Remote) download(ctx context.Context, u *url.URL, f *os.File, alg verity.Algorithm, digest []byte, check bool, size int64) (int64, error) {
	var n int64
	tried := false
	err := r.retry(ctx, func() error {
		// Only after a failed try: ext4 flushes a file truncated to
		// nothing when it is closed (auto_da_alloc), which made every
		// fetch write its object out at once.
		if tried {
			if fi, err := f.Stat(); err != nil {
				return permanent{err}
			} else if fi.Size() > 0 {
				if err := f.Truncate(0); err != nil {
					return permanent{err}
				}
			}
		}
		tried = true
		var h *verity.Hasher
		if check {
			h = r.getHasher(alg)
			defer r.putHasher(h)
		}
		var err error
		n, err = r.fetchObject(ctx, u, f, h, size)
		if err != nil || !check {
			return err
		}
		var got []byte
		if h != nil && int64(h.Size()) == n {
			// Hashed as it came, in one piece.
			got = h.Finish()
		} else if got, err = verity.DigestFile(alg, f); err != nil {
			return permanent{err}
		}
		if string(got) != string(digest) {
			return &verity.MismatchError{Alg: alg, Expected: digest, Actual: got}
		}
		return nil
	})
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	return n, err
}

// fetchObject fetches the object at u into f: one request for the first
// range, which tells the size, then the rest in ranges several at once.
// A server that ignores ranges sends it all in the first answer. What
// the first answer brings is written to h too, when h is not nil.
func (r *Remote) fetchObject(ctx context.Context, u *url.URL, f *os.File, h *verity.Hasher, size int64) (int64, error) {
	// A server may not make the object longer than it is: the image
	// says how long (size, when known), else MaxObjectSize.
	limit := r.cfg.MaxObjectSize
	if limit <= 0 {
		limit = defaultMaxObjectSize
	}
	if size >= 0 {
		limit = size
	}
	limit = min(limit, math.MaxInt64-1) // limit+1 is read, to see more
	var dst io.Writer = io.NewOffsetWriter(f, 0)
	if h != nil {
		dst = io.MultiWriter(dst, h)
	}
	resp, err := r.request(ctx, http.MethodGet, u, 0, r.cfg.RangeSize-1)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		n, err := r.copyBody(dst, io.LimitReader(resp.Body, limit+1))
		if err != nil {
			return n, bodyErr(err)
		}
		if n > limit {
			return n, permanent{fmt.Errorf("body longer than the object's %d bytes", limit)}
		}
		if resp.ContentLength >= 0 && n != resp.ContentLength {
			return n, fmt.Errorf("short body: %d of %d bytes", n, resp.ContentLength)
		}
		return n, nil
	case http.StatusPartialContent:
		first, last, total, err := parseContentRange(resp.Header.Get("Content-Range"))
		if err != nil || first != 0 || total < 0 {
			return 0, fmt.Errorf("answer to a range request: Content-Range %q", resp.Header.Get("Content-Range"))
		}
		if total > limit {
			return 0, permanent{fmt.Errorf("object of %d bytes, more than its %d", total, limit)}
		}
		if err := r.copyRange(dst, resp, first, last); err != nil {
			return 0, err
		}
		if last+1 < total {
			if err := r.fetchRanges(ctx, u, f, last+1, total); err != nil {
				return 0, err
			}
		}
		return total, nil
	case http.StatusRequestedRangeNotSatisfiable:
		// The first range of an empty object.
		if _, _, total, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && total == 0 {
			return 0, nil
		}
	}
	return 0, statusError(resp)
}

// copyRange writes the body of a 206 answer for bytes first..last of the
// object to w, which writes at the range's offset.
func (r *Remote) copyRange(w io.Writer, resp *http.Response, first, last int64) error {
	want := last - first + 1
	n, err := r.copyBody(w, io.LimitReader(resp.Body, want))
	if err != nil {
		return bodyErr(err)
	}
	if n != want {
		return fmt.Errorf("short body: %d of %d bytes at offset %d", n, want, first)
	}
	return nil
}

// copyBufferSize is the size of the buffers bodies are copied through.
const copyBufferSize = 64 << 10

// copyBody copies a body through one of the store's buffers: io.Copy
// would allocate 32 KiB a fetch, garbage the collector then works for.
func (r *Remote) copyBody(dst io.Writer, src io.Reader) (int64, error) {
	var b *[]byte
	select {
	case b = <-r.bufs:
	default:
		buf := make([]byte, copyBufferSize)
		b = &buf
	}
	defer func() {
		select {
		case r.bufs <- b:
		default:
		}
	}()
	return io.CopyBuffer(dst, src, *b)
}

// getHasher is an empty hasher for alg, one kept from an earlier fetch
// when there is one.
func (r *Remote) getHasher(alg verity.Algorithm) *verity.Hasher {
	select {
	case h := <-r.hashers:
		if h.Algorithm() == alg {
			return h
		}
	default:
	}
	return verity.NewHasher(alg)
}

// putHasher keeps h, emptied, for a later fetch, unless enough are kept.
func (r *Remote) putHasher(h *verity.Hasher) {
	h.Reset()
	select {
	case r.hashers <- h:
	default:
	}
}

// rangeWorkers is how many ranges of one object are fetched at once.
const rangeWorkers = 4

// fetchRanges fetches bytes from..total-1 of the object at u into f,
// rangeWorkers ranges at once, each tried again on its own.
func (r *Remote) fetchRanges(ctx context.Context, u *url.URL, f *os.File, from, total int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	offsets := make(chan int64)
	var wg sync.WaitGroup
	for range rangeWorkers {
		wg.Go(func() {
			for off := range offsets {
				last := min(off+r.cfg.RangeSize, total) - 1
				err := r.retry(ctx, func() error { return r.fetchRange(ctx, u, f, off, last, total) })
				if err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for off := from; off < total; off += r.cfg.RangeSize {
		select {
		case offsets <- off:
		case <-ctx.Done():
			break feed
		}
	}
	close(offsets)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// fetchRange fetches bytes first..last of an object of total bytes.
func (r *Remote) fetchRange(ctx context.Context, u *url.URL, f *os.File, first, last, total int64) error {
	resp, err := r.request(ctx, http.MethodGet, u, first, last)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return statusError(resp)
	}
	a, b, t, err := parseContentRange(resp.Header.Get("Content-Range"))
	if err != nil || a != first || b != last || t != total {
		return fmt.Errorf("asked for bytes %d-%d/%d, sent Content-Range %q", first, last, total, resp.Header.Get("Content-Range"))
	}
	return r.copyRange(io.NewOffsetWriter(f, first), resp, first, last)
}

// parseContentRange reads "bytes FIRST-LAST/TOTAL" or "bytes */TOTAL"
// (first = -1); TOTAL may be "*" (-1).
func parseContentRange(v string) (first, last, total int64, err error) {
	bad := fmt.Errorf("Content-Range %q", v)
	spec, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, 0, bad
	}
	rng, tot, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, 0, bad
	}
	total = -1
	if tot != "*" {
		if total, err = parseDecimal(tot); err != nil {
			return 0, 0, 0, bad
		}
	}
	if rng == "*" {
		if total < 0 {
			return 0, 0, 0, bad
		}
		return -1, -1, total, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, 0, bad
	}
	if first, err = parseDecimal(a); err != nil {
		return 0, 0, 0, bad
	}
	if last, err = parseDecimal(b); err != nil || last < first || total >= 0 && last >= total {
		return 0, 0, 0, bad
	}
	return first, last, total, nil
}

// parseDecimal reads digits only: no sign, no spaces.
func parseDecimal(s string) (int64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, strconv.ErrSyntax
	}
	return strconv.ParseInt(s, 10, 64)
}

// request sends one request, holding one of the store's request slots
// until its body is closed. from >= 0 asks for bytes from..to. The
// request is abandoned when IdleTimeout passes with no byte from the
// server, from the connection to the end of the body.
func (r *Remote) request(ctx context.Context, method string, u *url.URL, from, to int64) (*http.Response, error) {
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, permanent{ctx.Err()}
	}
	release := func() { <-r.slots }
	rctx, cancel := context.WithCancel(ctx)
	idle := &idleTimer{cancel: cancel, d: r.cfg.IdleTimeout}
	idle.last.Store(time.Now().UnixNano())
	idle.t = time.AfterFunc(idle.d, idle.fire)
	done := func() {
		idle.t.Stop()
		cancel()
		release()
	}
	req, err := http.NewRequestWithContext(rctx, method, u.String(), nil)
	if err != nil {
		done()
		return nil, permanent{err}
	}
	for k, v := range r.cfg.Header {
		req.Header[k] = v
	}
	if from >= 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", from, to))
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		done()
		if ctx.Err() != nil {
			return nil, permanent{ctx.Err()}
		}
		if idle.fired.Load() {
			return nil, fmt.Errorf("no answer for %s", r.cfg.IdleTimeout)
		}
		// Not the *url.Error's "Get URL:": the caller names the URL.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return nil, uerr.Err
		}
		return nil, err
	}
	resp.Body = &idleBody{ReadCloser: resp.Body, idle: idle, done: sync.OnceFunc(done)}
	return resp, nil
}

// idleTimer ends a request that has gone quiet for too long. Bytes that
// come only note the time (an atomic store, not a timer reset on every
// read); when the timer fires it looks at that time, and sets itself
// again for what is left.
type idleTimer struct {
	t      *time.Timer
	d      time.Duration
	cancel context.CancelFunc
	last   atomic.Int64 // when bytes last came, in UnixNano
	fired  atomic.Bool
}

func (i *idleTimer) fire() {
	if quiet := time.Duration(time.Now().UnixNano() - i.last.Load()); quiet < i.d {
		i.t.Reset(i.d - quiet)
		return
	}
	i.fired.Store(true)
	i.cancel()
}

// idleBody notes the time whenever bytes come.
type idleBody struct {
	io.ReadCloser
	idle *idleTimer
	done func()
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.idle.last.Store(time.Now().UnixNano())
	}
	if err != nil && err != io.EOF && b.idle.fired.Load() {
		err = fmt.Errorf("no bytes for %s: %w", b.idle.d, errIdle)
	}
	return n, err
}

func (b *idleBody) Close() error {
	err := b.ReadCloser.Close()
	b.done()
	return err
}

var errIdle = errors.New("idle timeout")

// bodyErr is an error reading a body, or writing it to the file, which
// another try cannot mend.
func bodyErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return permanent{err} // the file's: disk full, say
	}
	return err
}

// permanent marks an error that trying again would not mend.
type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// statusError is the error of an answer other than success: a 404 or
// 410 wraps fs.ErrNotExist, 5xx, 408 and 429 may be tried again, and
// other statuses are permanent.
func statusError(resp *http.Response) error {
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		return nil
	case code == http.StatusNotFound || code == http.StatusGone:
		return permanent{fs.ErrNotExist}
	case code >= 500, code == http.StatusRequestTimeout, code == http.StatusTooManyRequests:
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return permanent{fmt.Errorf("HTTP %s", resp.Status)}
}

// retry runs try up to Attempts times while it fails with an error that
// is not permanent, waiting 100 ms, 200 ms, 400 ms... (at most 2 s, with
// jitter) in between.
func (r *Remote) retry(ctx context.Context, try func() error) error {
	var err error
	for attempt := 0; attempt < r.cfg.Attempts; attempt++ {
		if attempt > 0 {
			wait := min(100*time.Millisecond<<(attempt-1), 2*time.Second)
			wait += rand.N(wait / 4)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return permanent{ctx.Err()}
			}
		}
		err = try()
		var p permanent
		if err == nil || errors.As(err, &p) {
			break
		}
	}
	if n := r.cfg.Attempts; err != nil && n > 1 {
		var p permanent
		if !errors.As(err, &p) {
			return fmt.Errorf("%w (after %d tries)", err, n)
		}
	}
	return err
}

var _ Store = (*Remote)(nil)
