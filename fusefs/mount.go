package fusefs

import (
	"log"
	"os"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// MountOptions are the settings of a mount beyond the image itself.
type MountOptions struct {
	// AllowOther lets users other than the mounter see the mount.
	AllowOther bool
	// Debug logs every FUSE request and reply.
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
	// Logger receives go-fuse's diagnostics and, with Debug, its request
	// log. Nil means log.Default().
	Logger *log.Logger
}

// Name is the FUSE subtype: mounts show as type fuse.composefs-fuse, which
// is also how mount(8) finds the command through mount.fuse3.
const Name = "composefs-fuse"

// forever is how long the kernel may cache what we tell it: an image never
// changes while it is mounted.
const forever = 365 * 24 * time.Hour

// NodeOptions are the go-fuse options for serving f: caching for as long as
// the mount lives, permissions exactly as stored and checked by the kernel,
// 1 MiB requests, a read-only mount, and as root a direct mount(2).
func (f *FS) NodeOptions(mo MountOptions) *gofs.Options {
	t := forever
	logger := mo.Logger
	if logger == nil {
		logger = log.Default()
	}
	opts := []string{"ro", "default_permissions"}
	opts = append(opts, mo.Options...)
	return &gofs.Options{
		EntryTimeout:    &t,
		AttrTimeout:     &t,
		NegativeTimeout: &t,
		NullPermissions: true,
		RootStableAttr:  &gofs.StableAttr{Ino: f.img.RootNid()},
		Logger:          logger,
		MountOptions: fuse.MountOptions{
			AllowOther:           mo.AllowOther,
			Debug:                mo.Debug,
			Logger:               logger,
			FsName:               mo.FsName,
			Name:                 Name,
			Options:              opts,
			MaxWrite:             1 << 20,
			EnableSymlinkCaching: true,
			// POSIX ACLs stored in the image are enforced by the
			// kernel, as EROFS enforces them.
			EnableAcl:     true,
			DirectMount:   os.Geteuid() == 0,
			MaxStackDepth: mo.MaxStackDepth,
		},
	}
}

// Mount mounts f on dir and starts serving; it returns once the mount is
// live. Server.Wait returns when it is unmounted.
func Mount(dir string, f *FS, mo MountOptions) (*fuse.Server, error) {
	return gofs.Mount(dir, f.Root(), f.NodeOptions(mo))
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
