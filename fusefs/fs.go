package fusefs

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/objects"
)

// Config holds the settings of serving beyond what the image shows.
type Config struct {
	// Logger receives one line per refused open and per damaged part of
	// the image met while serving, at error level. Nil means
	// slog.Default().
	Logger *slog.Logger
	// NoReadAhead turns off the opening and checking of objects ahead of
	// lookups that walk a directory (ahead.go): objects are then read
	// only when their file is opened.
	NoReadAhead bool
	// Passthrough answers the OPEN of every regular file, and hands an
	// external file's object to the kernel (FUSE passthrough), which
	// then reads it without asking us, sharing the object's page cache
	// with every other mount of it. Without it (the default), the kernel
	// opens files by itself, with no OPEN or RELEASE (FUSE's no_open,
	// which it learns from the first OPEN answering ENOSYS), and keeps
	// their page cache: an external file's object is opened and checked
	// at its first READ, and reads come to us. Those two round trips
	// are most of what a small file costs once cached (a warm
	// find | xargs cat of 20,000 files: 0.9 of the kernel's time without
	// them, 3.7 with them), while a large file costs about the same
	// either way once the object is hashed. Errors (a missing or
	// tampered object) show at the open with Passthrough, at the first
	// read without. Passthrough needs root and a kernel that has it;
	// without them, it is not used.
	Passthrough bool
}

// FS is one composefs image served through FUSE: a fuse.RawFileSystem that
// answers every request from the image's view (package composefs),
// addressed by the node id the kernel sends (see nodeid.go). It keeps no per-inode state; the only state
// is the objects of external files the kernel holds open.
type FS struct {
	// The defaults answer ENOSYS, which tells the kernel to stop asking
	// (OPENDIR, FLUSH, ACCESS, ...) or to do the work itself.
	fuse.RawFileSystem

	view    *composefs.FS
	img     *erofs.Image // view's image, for the bytes stored in it
	cfg     Config
	rootNid uint64

	// conn is the connection, once mounted: for passthrough and for
	// pushing small files into the page cache. Nil when driven directly.
	conn Conn
	// willWait is the connection's Conn.WillWait where it has one (a
	// *fuseconn.Conn): called before a request waits for long, so that
	// the requests behind it are read meanwhile.
	willWait func()
	// fetches: the store's opens may take long (objects.Fetches).
	fetches bool
	// passthrough is cleared by the first failed backing file
	// registration (not root, or a kernel without it): reads of external
	// files then come to us.
	passthrough atomic.Bool
	// noOpendir: the kernel takes ENOSYS from OPENDIR as "no need".
	noOpendir bool
	// noOpen: OPEN answers ENOSYS (no Config.Passthrough, or none possible).
	noOpen bool

	// ahead reads objects ahead of sequential lookups (ahead.go).
	ahead readAhead
	// listedBufs recycles the lists of regular files a READDIRPLUS
	// answer gathers for it: a walk sends thousands.
	listedBufs sync.Pool

	objMu sync.Mutex
	open  map[uint64]*openObject // by nid: objects held, open or idle
	idle  idleObjects            // those no open holds (objects.go)
	// idleMax caps idle objects (defaultIdleMax).
	idleMax int
	// stored are the inodes whose small content storeSmall has pushed
	// into the kernel's page cache, which keeps it until it forgets the
	// inode: an open of one of them again has nothing to push.
	stored map[uint64]struct{}

	// failed are the external files whose object failed to open or
	// check at a READ, with when and how (readObject).
	failMu sync.Mutex
	failed map[uint64]readFailure

	// For naming inodes in log lines (path.go).
	recent recentDirs
	pathMu sync.Mutex
	paths  map[uint64]string
}

// New serves view. Closing view is the caller's business, once the server
// has stopped and Close has returned.
func New(view *composefs.FS, cfg Config) *FS {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &FS{
		RawFileSystem: fuse.NewDefaultRawFileSystem(),
		fetches:       objects.Fetches(view.Config().Store),
		view:          view,
		img:           view.Image(),
		cfg:           cfg,
		noOpen:        !cfg.Passthrough,
		idleMax:       defaultIdleMax(),
		rootNid:       view.RootNid(),
		open:          map[uint64]*openObject{},
		stored:        map[uint64]struct{}{},
		failed:        map[uint64]readFailure{},
		listedBufs: sync.Pool{New: func() any {
			b := make([]dirFile, 0, 128)
			return &b
		}},
	}
}

// View is the image's view being served.
func (f *FS) View() *composefs.FS { return f.view }

func (f *FS) String() string { return Name }

// Conn is what FS needs of its connection beyond answering requests:
// passthrough backing files and page-cache pushes. A *fuseconn.Conn (see
// Mount) is one, and so is go-fuse's *fuse.Server.
type Conn interface {
	RegisterBackingFd(m *fuse.BackingMap) (int32, syscall.Errno)
	UnregisterBackingFd(id int32) syscall.Errno
	InodeNotifyStoreCache(node uint64, offset int64, data []byte) fuse.Status
}

// Init is go-fuse's call once its server has the connection: for serving
// f with fuse.NewServer rather than Mount.
func (f *FS) Init(s *fuse.Server) { f.connected(s, s.KernelSettings().Flags64()) }

// connected is called once the kernel has accepted the connection, before
// any request: offered is what the kernel offered at INIT.
func (f *FS) connected(c Conn, offered uint64) {
	f.conn = c
	if w, ok := c.(interface{ WillWait() }); ok {
		f.willWait = w.WillWait
	}
	f.passthrough.Store(f.cfg.Passthrough && offered&fuse.CAP_PASSTHROUGH != 0 && canPassthrough(c))
	f.noOpen = !f.passthrough.Load()
	f.noOpendir = offered&fuse.CAP_NO_OPENDIR_SUPPORT != 0
}

// aboutToWait is said before a request waits for long: see willWait. Not
// before every open of an object: a small one, read from a local disk and
// hashed, takes less than another reader would cost to wake.
func (f *FS) aboutToWait() {
	if f.willWait != nil {
		f.willWait()
	}
}

// canPassthrough tries what passthrough takes beyond the kernel's offer,
// the privilege to register a backing file, on a memfd.
func canPassthrough(c Conn) bool {
	fd, err := unix.MemfdCreate("composefs-passthrough-probe", unix.MFD_CLOEXEC)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	id, errno := c.RegisterBackingFd(&fuse.BackingMap{Fd: int32(fd)})
	if errno != 0 {
		return false
	}
	c.UnregisterBackingFd(id)
	return true
}

// OnUnmount stops the background read-ahead and lets go of the objects.
func (f *FS) OnUnmount() { f.Close() }

// Close stops the work f does in the background and waits for it: call it
// once the server has stopped, before closing the image. Safe to call more
// than once, and after OnUnmount.
func (f *FS) Close() {
	f.stopAhead()
	f.dropObjects()
}

// fail turns an error from the view into the status the request answers,
// the kernel's (composefs.Errno): ENOENT, EINVAL, or EIO for damage and
// refused objects, which fails that one request and nothing more. All but
// ENOENT are logged as "OP failed", naming the inode by a path that leads
// to it, with what else the request named (args, key-value pairs).
func (f *FS) fail(nid uint64, op string, err error, args ...any) fuse.Status {
	errno := composefs.Errno(err)
	if errno != syscall.ENOENT {
		attrs := append([]any{"path", f.pathOf(nid)}, args...)
		f.cfg.Logger.Error(op+" failed", append(attrs, "err", err)...)
	}
	return fuse.Status(errno)
}
