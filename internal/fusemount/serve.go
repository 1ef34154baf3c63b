package fusemount

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/fuseconn"
	"github.com/composefs/composefs-go/fusefs"
	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/internal/mountinfo"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// minProcs is the fewest Ps the server runs with. Serving is a chain of
// requests answered in microseconds between blocking reads of /dev/fuse.
// When every P sits in such a read, the Go runtime hands Ps off and wakes
// threads to look for work around every request; a P left idle stops
// that. Measured on 2 CPUs against GOMAXPROCS=2: a quarter fewer context
// switches, five times fewer futex wakes, 15% less CPU per request. Since
// one reader serves a program's requests by itself (fuseconn/readers.go),
// four are as many as pay. Against eight, alternating cold runs: dpkg
// --verify of a Debian root 2-5% faster (in 14 runs of 18), tar of it 2-5%
// (7 of 11), find | xargs cat of 20,000 files 3% (4 of 4), the same read
// in one process 5% (4 of 4); warm, within noise.
const minProcs = 4

// gcPercent is the collector's setting unless GOGC says otherwise. What
// the daemon allocates is mostly garbage within a request (go-fuse's
// request structures, stat results), and its live heap is small, so a
// tighter heap costs little: on 20,000 files read with find|xargs cat,
// peak RSS 28.6 MiB against 33.9 at Go's default of 100, and the read
// times within the machine's noise (medians of five: 3.27 s against
// 3.69 s warm, 5.03 s against 5.37 s cold).
const gcPercent = 50

// serve mounts the image and serves it until it is unmounted, logging
// through logs, which writes to stderr until the mount is live. ended is
// the signal (SIGINT or SIGTERM) that unmounted it, 0 when it was
// unmounted otherwise.
func serve(s *settings, logs *cli.LogHandler) (ended syscall.Signal, err error) {
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < minProcs {
		runtime.GOMAXPROCS(minProcs)
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
	}
	logger := slog.New(logs)
	if st, err := os.Stat(s.mountpoint); err != nil {
		return 0, fmt.Errorf("mountpoint %s: %w", s.mountpoint, errpath.Cause(err, s.mountpoint))
	} else if !st.IsDir() {
		return 0, fmt.Errorf("mountpoint %s: not a directory", s.mountpoint)
	}
	// A second mount would hide the first, which goes on serving unseen
	// until both are unmounted.
	if typ := mountinfo.TypeAt(s.mountpoint); typ == "fuse."+fusefs.Name {
		return 0, fmt.Errorf("mountpoint %s: already has a %s mount; unmount it first", s.mountpoint, fusefs.Name)
	}
	moveLog, closeLog, err := logDestination(s, logs)
	if err != nil {
		return 0, err
	}
	defer closeLog()
	digest, err := imageDigest(s.digest, nil)
	if err != nil {
		return 0, err
	}
	vc := verity.NewCache()
	if trees := openTrees(s, logger); trees != nil {
		defer trees.Close()
		vc.KeepTrees(trees)
	}
	imagePath, store, storeDirs, imageID, closeSources, err := openSources(s, digest, vc, logger)
	if err != nil {
		return 0, err
	}
	defer closeSources()
	if digest == nil {
		digest = imageID
	}
	view, err := composefs.Open(imagePath, composefs.Config{Store: store, Verity: s.verity, Cache: vc, ImageDigest: digest})
	if err != nil {
		// IMAGE as given, not the /proc/self/fd path of a repository's
		// or a fetched one, and without credentials.
		return 0, fmt.Errorf("%s: %w", redactURL(s.image), errpath.Cause(err, imagePath))
	}
	defer view.Close()
	// The object check runs while the mount is made, which is mostly
	// waiting for the kernel.
	var missing objectWarning
	checked := make(chan struct{})
	go func() {
		defer close(checked)
		missing = checkObjects(view, s)
	}()
	// Every idle object holds a descriptor (fusefs/objects.go).
	fusefs.RaiseFileLimit()
	fsys := fusefs.New(view, fusefs.Config{Logger: logger, NoReadAhead: s.noReadAhead, Passthrough: s.passthrough && !s.noOpen})
	fsname := s.fsname
	if fsname == "" && objects.IsRemote(s.image) {
		fsname = redactURL(s.image)
	}
	if fsname == "" {
		fsname = s.image
		if abs, err := filepath.Abs(s.image); err == nil && !s.inRepo && fileExists(s.image) {
			fsname = abs
		}
	}
	// Listening before the mount exists: a signal that comes as soon as
	// the mount is visible must unmount it, not kill the server under it.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	conn, err := fusefs.Mount(s.mountpoint, fsys, fusefs.MountOptions{
		AllowOther:    s.allowOther,
		Debug:         s.debug,
		FsName:        fsname,
		MaxStackDepth: fusefs.StackDepthFor(storeDirs...),
		Options:       s.mountFlags,
		Logger:        logger,
		NoIOUring:     s.noIOUring,
	})
	<-checked
	if err != nil {
		return 0, fmt.Errorf("mount %s: %w", s.mountpoint, err)
	}
	var endedBy atomic.Int32
	go unmountOnSignal(sig, conn, s.mountpoint, logger, &endedBy)
	stopProfile, err := startProfiles()
	if err != nil {
		conn.Unmount()
		return 0, err
	}
	defer stopProfile()
	// Said once the mount is live, while stderr still reaches the user:
	// a mount that fails says only why.
	if missing.msg != "" {
		logger.Warn(missing.msg, missing.args...)
	}
	moveLog()
	if isDaemonChild() {
		daemonReady()
	}
	stopPrefetch := func() {}
	if s.prefetch {
		ctx, stop := context.WithCancel(context.Background())
		p := startPrefetch(ctx, view, store, logger)
		stopPrefetch = func() {
			stop()
			<-p.ended
		}
	}
	conn.Wait()
	// The prefetch and the read-ahead read the image and use the
	// stores: stop them before the image is unmapped and the stores
	// closed (deferred above).
	stopPrefetch()
	fsys.Close()
	return syscall.Signal(endedBy.Load()), nil
}

// objectSample is how many objects are looked for at most before the
// mount, unless --check-objects asks for all: enough to catch the usual
// mistake (a wrong or empty store, where nearly all are missing) at a cost
// the mount time does not notice. Each is a lookup in the store, which may
// be cold: 256 of them made a cold mount of 20,000 files 90 ms instead of
// 50, and a walk for 4096 over a 500,000-entry image ten times the mount.
const objectSample = 16

// objectWarning is a warning for the log, a message and its attributes;
// none when msg is "".
type objectWarning struct {
	msg  string
	args []any
}

// checkObjects looks for the objects of external files in the store, and
// says which the store lacks: their files will fail to open. The mount
// goes ahead with the warning, also when the image is too damaged to walk
// (the damaged parts answer EIO, as the kernel's mount does).
func checkObjects(view *composefs.FS, s *settings) objectWarning {
	limit := objectSample
	if s.checkObjects {
		limit = 0
	}
	c, err := view.CheckObjects(limit)
	switch {
	case err != nil:
		return objectWarning{"objects not checked", []any{"err", err}}
	case c.Missing == 0:
		return objectWarning{}
	case view.Config().Store == nil:
		return objectWarning{"no --basedir or --repo: every external file will fail with ENOENT", nil}
	case c.Sampled():
		return objectWarning{"objects missing from the store (a sample checked; --check-objects checks all): their files will fail with ENOENT", []any{"missing", c.Missing, "checked", c.Checked}}
	}
	return objectWarning{"objects missing from the store: their files will fail with ENOENT", []any{"missing", c.Missing, "objects", c.Checked}}
}

// logDestination is where log lines go once the mount is live: --log's
// file, with the time (opened now, so that a bad path fails the mount),
// else syslog in the background, else stderr, where they go already. moveLog moves
// them there, once the mount is live, and says it when they will be lost,
// while stderr still reaches the user.
func logDestination(s *settings, logs *cli.LogHandler) (moveLog, closeLog func(), err error) {
	closeLog = func() {}
	switch {
	case s.logFile != "":
		f, err := os.OpenFile(s.logFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("--log: %w", err)
		}
		return func() { logs.SetOutput(f, true) }, func() { f.Close() }, nil
	case !isDaemonChild():
		return func() {}, closeLog, nil
	}
	sys, err := syslog.New(syslog.LOG_DAEMON|syslog.LOG_WARNING, "composefs-fuse")
	if err != nil {
		return func() {
			slog.New(logs).Warn("no syslog (/dev/log) to log to: errors after the mount will not be seen; --log FILE or -f keeps them")
			logs.SetOutput(io.Discard, false)
		}, closeLog, nil
	}
	return func() { logs.SetSyslog(sys) }, func() { sys.Close() }, nil
}

// The profiles of the serving, from the mount to the unmount, for tuning:
// a daemon is started by mount(8) or a bench, not from a command line that
// could take a flag for them. cpuProfileEnv names a file for a pprof CPU
// profile; memProfileEnv one for the allocations (every 4 KiB sampled),
// written at the unmount, with what is still in use then.
const (
	cpuProfileEnv = "COMPOSEFS_FUSE_CPUPROFILE"
	memProfileEnv = "COMPOSEFS_FUSE_MEMPROFILE"
)

func startProfiles() (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range stops {
			s()
		}
	}
	if path := os.Getenv(cpuProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", cpuProfileEnv, err)
		}
		stops = append(stops, func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}
	if path := os.Getenv(memProfileEnv); path != "" {
		f, err := os.Create(path)
		if err != nil {
			stop()
			return nil, fmt.Errorf("%s: %w", memProfileEnv, err)
		}
		runtime.MemProfileRate = 4096
		stops = append(stops, func() {
			pprof.Lookup("allocs").WriteTo(f, 0)
			f.Close()
		})
	}
	return stop, nil
}

// openSources finds the image file and the object stores: the
// repository's, then each --basedir in the order given, directories and
// URLs alike. With --repo, IMAGE may name an image in the repository
// rather than a file; imageID is set when it names it by its id. vc
// remembers the digests of objects checked, shared with the view.
func openSources(s *settings, digest []byte, vc *verity.Cache, logger *slog.Logger) (imagePath string, store objects.Store, dirs []string, imageID []byte, closeAll func(), err error) {
	var closers []func()
	closeEach := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	defer func() {
		if err != nil {
			closeEach()
		}
	}()
	var remote *objects.RemoteConfig
	remoteCfg := func() (*objects.RemoteConfig, error) {
		if remote == nil {
			cfg, closeCache, err := remoteConfig(s, vc)
			if err != nil {
				return nil, err
			}
			closers = append(closers, closeCache)
			remote = &cfg
			dirs = append(dirs, cfg.Cache.Dir())
		}
		return remote, nil
	}
	var stores []objects.Store
	imagePath = s.image
	if objects.IsRemote(s.image) && s.repo == "" {
		cfg, err := remoteCfg()
		if err != nil {
			return "", nil, nil, nil, nil, err
		}
		f, err := fetchImage(s.image, digest, *cfg, s.verity == composefs.VerityRequire, logger)
		if err != nil {
			return "", nil, nil, nil, nil, err
		}
		imagePath = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
		closers = append(closers, func() { f.Close() })
	}
	if objects.IsRemote(s.repo) {
		cfg, err := remoteCfg()
		if err != nil {
			return "", nil, nil, nil, nil, err
		}
		rr, err := objects.OpenRemoteRepository(s.repo, *cfg)
		if err != nil {
			return "", nil, nil, nil, nil, fmt.Errorf("--repo: %w", err)
		}
		closers = append(closers, func() { rr.Close() })
		stores = append(stores, rr.Objects())
		if s.inRepo || !fileExists(s.image) {
			f, id, err := rr.OpenImage(context.Background(), s.image)
			if err != nil {
				return "", nil, nil, nil, nil, err
			}
			if id == nil && digest == nil && s.verity == composefs.VerityRequire {
				f.Close()
				return "", nil, nil, nil, nil, errUncheckedImage
			}
			imagePath = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
			closers = append(closers, func() { f.Close() })
			imageID = id
			if id == nil && digest == nil {
				logger.Warn("image by ref fetched without --digest: it is not verified, and a tampered image can name any objects", "repo", rr.URL(), "ref", s.image)
			}
		}
	} else if s.repo != "" {
		// The objects package's errors name the repository, the image
		// and the store directories.
		repo, err := objects.OpenRepository(s.repo)
		if err != nil {
			return "", nil, nil, nil, nil, err
		}
		stores = append(stores, repo)
		dirs = append(dirs, s.repo)
		if s.inRepo || !fileExists(s.image) {
			f, err := repo.OpenImage(s.image)
			if err != nil {
				return "", nil, nil, nil, nil, err
			}
			// The mapping outlives the descriptor, which erofs.Open
			// reopens through /proc.
			imagePath = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
			closers = append(closers, func() { f.Close() })
			imageID, _ = repo.ImageID(s.image)
		}
		// A mount lives long and writes nothing: it gives up the
		// repository's shared lock so that gc does not wait for it
		// (objects.Repository.Unlock).
		if err := repo.Unlock(); err != nil {
			return "", nil, nil, nil, nil, err
		}
	}
	for _, b := range s.basedirs {
		if objects.IsRemote(b) {
			remote, err := remoteCfg()
			if err != nil {
				return "", nil, nil, nil, nil, err
			}
			r, err := objects.OpenRemote(b, *remote)
			if err != nil {
				return "", nil, nil, nil, nil, fmt.Errorf("--basedir: %w", err)
			}
			closers = append(closers, func() { r.Close() })
			stores = append(stores, r)
			logger.Debug("remote object store", "url", r.URL(), "cache", remote.Cache.Dir())
			continue
		}
		flat, err := objects.OpenFlat(b)
		if err != nil {
			return "", nil, nil, nil, nil, err
		}
		closers = append(closers, func() { flat.Close() })
		stores = append(stores, flat)
		dirs = append(dirs, strings.Split(b, ":")...)
	}
	switch len(stores) {
	case 0:
	case 1:
		store = stores[0]
	default:
		store = objects.Multi(stores...)
	}
	return imagePath, store, dirs, imageID, closeEach, nil
}

// fetchImage fetches the image at rawURL whole: with its digest into the
// cache, where it is kept under it, else for this mount alone, said to be
// unverified (a tampered image can name any objects). The view checks the
// digest again over the bytes it loads and serves.
func fetchImage(rawURL string, digest []byte, cfg objects.RemoteConfig, require bool, logger *slog.Logger) (*os.File, error) {
	if digest == nil && require {
		return nil, errUncheckedImage
	}
	r, name, err := objects.OpenRemoteFile(rawURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer r.Close()
	if digest == nil {
		logger.Warn("image fetched without --digest: it is not verified, and a tampered image can name any objects", "url", redactURL(rawURL))
		f, err := r.Open(name)
		if err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		return f, nil
	}
	alg, _ := verity.AlgorithmForDigestSize(len(digest))
	f, err := r.OpenAs(context.Background(), name, alg, digest)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	return f, nil
}

// errUncheckedImage is --verity=require refusing an image from the
// network that nothing checks: every object's check rests on the image.
var errUncheckedImage = errors.New("image over the network without --digest (or an image id): --verity=require refuses an image nothing checks")

// redactURL is rawURL without its user information, for messages and
// the mount's source: credentials never show there.
func redactURL(rawURL string) string {
	if !objects.IsRemote(rawURL) {
		return rawURL
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL)"
	}
	u.User = nil
	return u.String()
}

// remoteConfig is how URL stores fetch: into --cache (made when
// missing), with --ca-file's authorities and the token or headers of
// --token-file and --header-file, checked unless --verity=off.
func remoteConfig(s *settings, vc *verity.Cache) (cfg objects.RemoteConfig, closeCache func(), err error) {
	cfg = objects.RemoteConfig{Verity: vc, NoVerify: s.verity == composefs.VerityOff, Header: http.Header{}, IdleTimeout: s.fetchTimeout}
	if s.caFile != "" {
		if cfg.RootCAs, err = objects.LoadCAFile(s.caFile); err != nil {
			return cfg, nil, fmt.Errorf("--ca-file: %w", err)
		}
	}
	for _, hf := range []struct {
		flag, path string
		parse      func([]byte) (http.Header, error)
	}{{"--token-file", s.tokenFile, objects.BearerHeader}, {"--header-file", s.headerFile, objects.ParseHeaderFile}} {
		if hf.path == "" {
			continue
		}
		data, err := os.ReadFile(hf.path)
		if err != nil {
			return cfg, nil, fmt.Errorf("%s: %w", hf.flag, err)
		}
		h, err := hf.parse(data)
		if err != nil {
			return cfg, nil, fmt.Errorf("%s %s: %w", hf.flag, hf.path, err)
		}
		for k, v := range h {
			cfg.Header[k] = append(cfg.Header[k], v...)
		}
	}
	dir := s.cacheDir
	if dir == "" {
		if dir, err = defaultCacheDir("objects"); err != nil {
			return cfg, nil, fmt.Errorf("no --cache, and %w", err)
		}
	}
	if cfg.Cache, err = objects.OpenCache(dir, s.cacheSize); err != nil {
		return cfg, nil, fmt.Errorf("--cache: %w", err)
	}
	return cfg, func() { cfg.Cache.Close() }, nil
}

// defaultCacheDir is where what is cached under sub (fetched objects,
// trees) goes without a flag naming the place: /var/cache for root, else
// the user's cache directory ($XDG_CACHE_HOME, ~/.cache).
func defaultCacheDir(sub string) (string, error) {
	if os.Geteuid() == 0 {
		return filepath.Join("/var/cache/composefs-fuse", sub), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory to put it in: %w", err)
	}
	return filepath.Join(base, "composefs-fuse", sub), nil
}

// openTrees opens the place the block sums of large objects are kept
// (--tree-cache), or returns nil when none are to be: nothing is checked,
// or the kernel reads objects itself (passthrough), which leaves nothing to
// check block by block. Without the flag: $COMPOSEFS_FUSE_TREE_CACHE, else
// beside the objects fetched from URLs (defaultCacheDir): root's under
// /var/cache, where no user's directory can lead it; a user's in their
// cache directory. A place that cannot be used (no home, not private)
// leaves the mount without trees, as it was before they existed; a place
// asked for, by the flag or the variable, says so.
func openTrees(s *settings, logger *slog.Logger) *verity.Trees {
	if s.treeCache == "none" || s.verity == composefs.VerityOff || s.passthrough && !s.noOpen {
		return nil
	}
	dir := s.treeCache
	if dir == "" {
		dir = os.Getenv(treeCacheEnv)
	}
	asked := dir != ""
	if dir == "none" {
		return nil
	}
	if dir == "" {
		var err error
		if dir, err = defaultCacheDir("trees"); err != nil {
			logger.Debug("no fs-verity trees kept", "err", err)
			return nil
		}
	}
	t, err := verity.OpenTrees(dir)
	if err != nil {
		if asked {
			logger.Warn("no fs-verity trees kept", "err", err)
		} else {
			logger.Debug("no fs-verity trees kept", "err", err)
		}
		return nil
	}
	return t
}

// treeCacheEnv names the variable that moves the default --tree-cache.
const treeCacheEnv = "COMPOSEFS_FUSE_TREE_CACHE"

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// imageDigest is the digest the image must have: --digest (given as hex),
// else the id a --repo image was named by. The view checks it over the
// very bytes it serves (composefs.Config.ImageDigest), not over a file
// that could change after the check.
func imageDigest(given string, imageID []byte) ([]byte, error) {
	if given == "" {
		return imageID, nil
	}
	want, err := hex.DecodeString(given)
	if err != nil {
		return nil, fmt.Errorf("--digest %q: not hex", given)
	}
	if _, ok := verity.AlgorithmForDigestSize(len(want)); !ok {
		return nil, fmt.Errorf("--digest %q: %d bytes is no sha256 or sha512 digest", given, len(want))
	}
	return want, nil
}

// unmountOnSignal unmounts on SIGINT or SIGTERM, noting the signal in
// ended first; when something still holds the mount busy, it detaches it
// lazily, and serving goes on until the last user lets go.
func unmountOnSignal(sig <-chan os.Signal, conn *fuseconn.Conn, mnt string, logger *slog.Logger, ended *atomic.Int32) {
	for got := range sig {
		if signo, ok := got.(syscall.Signal); ok {
			ended.Store(int32(signo))
		}
		err := conn.Unmount()
		if err == nil {
			return
		}
		// One line for what happened, whichever way it went.
		if derr := conn.Detach(); derr != nil {
			logger.Error("unmount failed, the lazy unmount too", "mountpoint", mnt, "err", err, "lazy_err", derr)
			continue
		}
		logger.Warn("unmount failed: detached lazily, serving until its last user lets go", "mountpoint", mnt, "err", err)
		return
	}
}
