package objects

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Opening a path beneath a directory fd so that nothing in the path can
// lead outside it. openat2 does this in the kernel; where it is missing
// (ENOSYS: kernels before 5.6, some seccomp filters) the path is walked
// one component at a time with O_NOFOLLOW.

// resolution says what a path may contain besides plain names.
type resolution int

const (
	// noSymlinks: no symlink anywhere (object payloads).
	noSymlinks resolution = iota
	// symlinksBeneath: relative symlinks are followed as long as they stay
	// beneath the root (the images/ and refs/ links of a repository).
	symlinksBeneath
)

// maxSymlinks is the kernel's limit on symlinks in one resolution.
const maxSymlinks = 40

// openat2Missing is set once openat2 answered ENOSYS.
var openat2Missing atomic.Bool

// openBeneath opens rel, already checked by cleanRelative, beneath dirfd.
// Errors: ErrUnsafePath wrapped for a symlink (noSymlinks) or an escape,
// fs.ErrNotExist wrapped when a component is missing or not a directory,
// else the errno.
func openBeneath(dirfd int, rel string, flags int, res resolution) (int, error) {
	flags |= unix.O_CLOEXEC
	if !openat2Missing.Load() {
		how := unix.OpenHow{
			Flags:   uint64(flags),
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
		}
		if res == noSymlinks {
			how.Resolve |= unix.RESOLVE_NO_SYMLINKS
		}
		for range 16 {
			fd, err := unix.Openat2(dirfd, rel, &how)
			switch err {
			case nil:
				return fd, nil
			case unix.EINTR, unix.EAGAIN:
				// EAGAIN: a concurrent rename made the kernel unsure the
				// walk stayed beneath; trying again is the documented cure.
				continue
			case unix.ENOSYS:
				openat2Missing.Store(true)
			default:
				return -1, openErr(err, res)
			}
			break
		}
		if !openat2Missing.Load() {
			return -1, fmt.Errorf("openat2 kept failing with EAGAIN: %w", unix.EAGAIN)
		}
	}
	if res == noSymlinks {
		return walkNoSymlinks(dirfd, rel, flags)
	}
	return walkSymlinksBeneath(dirfd, rel, flags)
}

// openErr gives openat2's errors their meaning here.
func openErr(err error, res resolution) error {
	switch err {
	case unix.ELOOP:
		if res == noSymlinks {
			return fmt.Errorf("%w: a path component is a symlink", ErrUnsafePath)
		}
		return fmt.Errorf("%w: too many symlinks", ErrUnsafePath)
	case unix.EXDEV:
		return fmt.Errorf("%w: resolves outside the store root", ErrUnsafePath)
	case unix.ENOTDIR:
		return fmt.Errorf("%w: a path component is not a directory", fs.ErrNotExist)
	}
	return err
}

// walkNoSymlinks is the fallback for noSymlinks: every directory is opened
// with O_PATH|O_DIRECTORY|O_NOFOLLOW, the last component with O_NOFOLLOW.
func walkNoSymlinks(dirfd int, rel string, flags int) (int, error) {
	comps := strings.Split(rel, "/")
	cur := dirfd
	for i, c := range comps {
		last := i == len(comps)-1
		f := unix.O_NOFOLLOW | unix.O_CLOEXEC
		if last {
			f |= flags
		} else {
			f |= unix.O_PATH | unix.O_DIRECTORY
		}
		fd, err := openatRetry(cur, c, f)
		if err != nil && (err == unix.ELOOP || err == unix.ENOTDIR) && isSymlinkAt(cur, c) {
			err = fmt.Errorf("%w: %q is a symlink", ErrUnsafePath, strings.Join(comps[:i+1], "/"))
		} else if err != nil {
			err = openErr(err, noSymlinks)
		}
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return -1, err
		}
		cur = fd
	}
	return cur, nil
}

// walkSymlinksBeneath is the fallback for symlinksBeneath: the walk keeps
// the directories it went through on a stack, so ".." (from a symlink
// target) pops one and can never rise above the root; absolute symlink
// targets are refused.
func walkSymlinksBeneath(dirfd int, rel string, flags int) (int, error) {
	var stack []int // directories below the root, deepest last
	defer func() {
		for _, fd := range stack {
			unix.Close(fd)
		}
	}()
	cur := func() int {
		if len(stack) == 0 {
			return dirfd
		}
		return stack[len(stack)-1]
	}
	queue := strings.Split(rel, "/")
	links := 0
	for len(queue) > 0 {
		c := queue[0]
		queue = queue[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) == 0 {
				return -1, fmt.Errorf("%w: resolves outside the store root", ErrUnsafePath)
			}
			unix.Close(stack[len(stack)-1])
			stack = stack[:len(stack)-1]
			continue
		}
		var st unix.Stat_t
		if err := unix.Fstatat(cur(), c, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return -1, openErr(err, symlinksBeneath)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFLNK {
			if links++; links > maxSymlinks {
				return -1, openErr(unix.ELOOP, symlinksBeneath)
			}
			target, err := readlinkat(cur(), c)
			if err != nil {
				return -1, err
			}
			if strings.HasPrefix(target, "/") {
				return -1, fmt.Errorf("%w: absolute symlink %q", ErrUnsafePath, target)
			}
			queue = append(strings.Split(target, "/"), queue...)
			continue
		}
		if len(queue) == 0 {
			// O_NOFOLLOW: if it turned into a symlink since the fstatat,
			// fail rather than follow it.
			fd, err := openatRetry(cur(), c, flags|unix.O_NOFOLLOW)
			if err != nil {
				return -1, openErr(err, noSymlinks)
			}
			return fd, nil
		}
		fd, err := openatRetry(cur(), c, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC)
		if err != nil {
			return -1, openErr(err, noSymlinks)
		}
		stack = append(stack, fd)
	}
	// The path ended on a directory (e.g. a symlink to ".").
	return openatRetry(cur(), ".", flags)
}

func openatRetry(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, flags, 0)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

func isSymlinkAt(dirfd int, name string) bool {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK
}

func readlinkat(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		if len(buf) >= maxPathLen {
			return "", fmt.Errorf("symlink target longer than %d bytes: %w", maxPathLen, unix.ENAMETOOLONG)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// openRegular opens rel beneath dirfd read-only and makes sure it is a
// regular file. O_NONBLOCK keeps a fifo from blocking the open; it is
// cleared again once the file is known to be regular.
//
// O_NOATIME, as overlayfs opens its lower files: reading an object must not
// dirty its inode. Only the owner (or CAP_FOWNER) may ask for it, so EPERM
// retries without.
func openRegular(dirfd int, rel, name string, res resolution) (*os.File, error) {
	const flags = unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY
	noatime := unix.O_NOATIME
	fd, err := openBeneath(dirfd, rel, flags|noatime, res)
	if errors.Is(err, unix.EPERM) {
		noatime = 0
		fd, err = openBeneath(dirfd, rel, flags, res)
	}
	if err != nil {
		return nil, err
	}
	if err := checkRegular(fd); err != nil {
		unix.Close(fd)
		return nil, err
	}
	// Blocking again, in one F_SETFL: the status flags it sets are those
	// the open gave less O_NONBLOCK (O_NOATIME kept as it was, which
	// needs no ownership then). unix.SetNonblock would read them first.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, noatime); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// statRegular tells whether rel beneath dirfd is a regular file, without
// opening its content (O_PATH).
func statRegular(dirfd int, rel string, res resolution) (bool, error) {
	fd, err := openBeneath(dirfd, rel, unix.O_PATH, res)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	if err := checkRegular(fd); err != nil {
		return false, err
	}
	return true, nil
}

func checkRegular(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		return nil
	case unix.S_IFLNK:
		// Only an O_PATH|O_NOFOLLOW open of the fallback gets here.
		return fmt.Errorf("%w: the object is a symlink", ErrUnsafePath)
	case unix.S_IFDIR:
		return fmt.Errorf("%w: it is a directory", ErrNotRegular)
	default:
		return fmt.Errorf("%w: file type %#o", ErrNotRegular, st.Mode&unix.S_IFMT)
	}
}
