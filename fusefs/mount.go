package fusefs

import (
	"fmt"
	"log/slog"
	"runtime"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseconn"
)

// MountOptions are the settings of a mount beyond the image itself.
type MountOptions struct {
	// AllowOther lets users other than the mounter see the mount.
	AllowOther bool
	// Debug logs every FUSE request and reply, and each passthrough
	// backing file, at debug level: Logger must be enabled for it.
	Debug bool
	// FsName is the mount's source as mount tables show it (the image).
	FsName string
	// MaxStackDepth is the file system stacking depth allowed below us
	// for FUSE passthrough: 2 when objects live on overlayfs (see
	// StackDepthFor), 0 or 1 otherwise. It costs: a mount allowing depth
	// 2 cannot itself be a layer of overlayfs.
	MaxStackDepth int
	// Options are extra mount options for the kernel or fusermount3, such
	// as nosuid, nodev or noexec.
	Options []string
	// Logger receives the connection's failures, go-fuse's complaints
	// and, with Debug, its request log. Nil means slog.Default().
	Logger *slog.Logger
	// NoIOUring keeps all requests on /dev/fuse even where the kernel
	// offers FUSE over io_uring (package fuseuring).
	NoIOUring bool
}

// Name is the FUSE subtype: mounts show as type fuse.composefs-fuse, which
// is also how mount(8) finds the command through mount.fuse3.
const Name = "composefs-fuse"

// maxWrite is the largest request the kernel may send us (the INIT reply's
// max_write): 1 MiB.
const maxWrite = 1 << 20

// FuseOptions are the go-fuse options for serving f: permissions checked by
// the kernel, 1 MiB requests and a read-only mount. Caching is not an
// option: every answer says how long it holds. go-fuse's own logger, a
// *log.Logger, writes to mo.Logger: its request log at debug level, its
// complaints about malformed requests as warnings.
func (f *FS) FuseOptions(mo MountOptions) *fuse.MountOptions {
	logger := mo.Logger
	if logger == nil {
		logger = slog.Default()
	}
	level := slog.LevelWarn
	if mo.Debug {
		level = slog.LevelDebug
	}
	opts := []string{"ro", "default_permissions"}
	opts = append(opts, mo.Options...)
	return &fuse.MountOptions{
		AllowOther:           mo.AllowOther,
		Debug:                mo.Debug,
		Logger:               slog.NewLogLogger(logger.Handler(), level),
		FsName:               mo.FsName,
		Name:                 Name,
		Options:              opts,
		MaxWrite:             maxWrite,
		EnableSymlinkCaching: true,
		// POSIX ACLs stored in the image are enforced by the kernel, as
		// EROFS enforces them.
		EnableAcl:     true,
		MaxStackDepth: mo.MaxStackDepth,
		PanicHandler:  panicHandler(logger),
	}
}

// panicHandler turns a request that panicked into EIO and one log line,
// at error level. The likely cause is a fault reading the image mapping
// (its file truncated under us), which SetPanicOnFault turns into a
// panic, not a crash; anything else is a bug, logged with its stack.
func panicHandler(logger *slog.Logger) func(any) fuse.Status {
	return func(r any) fuse.Status {
		if e, ok := r.(interface{ Addr() uintptr }); ok {
			logger.Error("fault reading the image (file changed under the mount?)", "addr", fmt.Sprintf("%#x", e.Addr()), "err", r)
			return fuse.EIO
		}
		buf := make([]byte, 16<<10)
		logger.Error("request panicked", "panic", r, "stack", string(buf[:runtime.Stack(buf, false)]))
		return fuse.EIO
	}
}

// Mount mounts f on dir and starts serving; it returns once the mount is
// live. The connection's Wait returns when it is unmounted; call f.Close
// after that. Requests come through io_uring where the kernel offers it,
// unless mo.NoIOUring.
func Mount(dir string, f *FS, mo MountOptions) (*fuseconn.Conn, error) {
	return fuseconn.Mount(dir, f, fuseconn.Options{
		Protocol: *f.FuseOptions(mo),
		Logger:   mo.Logger,
		IOUring:  !mo.NoIOUring,
		Init: func(c *fuseconn.Conn, offered uint64) {
			f.connected(c, offered)
		},
	})
}

// StackDepthFor is the MaxStackDepth passthrough needs for objects stored in
// dirs: 2 if any of them is on overlayfs (itself a stacked file system),
// else 1.
func StackDepthFor(dirs ...string) int {
	for _, d := range dirs {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.OVERLAYFS_SUPER_MAGIC {
			return 2
		}
	}
	return 1
}
