package objects

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"golang.org/x/sys/unix"
)

// Coordination with composefs-rs, which locks the repository directory
// with flock(2): every open takes a shared lock and keeps it until the
// repository is closed, and garbage collection turns it into an exclusive
// one. So gc waits for every pull, write and open to finish, and they wait
// for gc, whichever tool runs them. A read-only descriptor is enough for
// flock, so a repository one cannot write is locked all the same.

// ErrLocked is wrapped when the repository lock could not be had in time.
var ErrLocked = errors.New("repository is in use by another process")

// openLockWait bounds how long an open waits for a garbage collection to
// finish.
var openLockWait = 10 * time.Minute

// lockPoll is how often a waiting lock is tried again.
const lockPoll = 50 * time.Millisecond

// flockWait takes the flock how (LOCK_SH or LOCK_EX) on fd, trying again
// until ctx is done; after a second of waiting it says so in the log.
// Note that a failed LOCK_EX|LOCK_NB on a descriptor holding LOCK_SH may
// have dropped that shared lock (flock conversions are not atomic).
func flockWait(ctx context.Context, fd int, how int, path string) error {
	start := time.Now()
	said := false
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		switch err {
		case nil:
			return nil
		case unix.EINTR:
			continue
		case unix.EWOULDBLOCK:
		default:
			return fmt.Errorf("flock: %w", err)
		}
		if !said && time.Since(start) > time.Second {
			slog.Info("waiting for the repository lock", "repository", path, "exclusive", how == unix.LOCK_EX)
			said = true
		}
		t := time.NewTimer(lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (waited %s): %w", ErrLocked, time.Since(start).Round(time.Millisecond), context.Cause(ctx))
		case <-t.C:
		}
	}
}

// lockShared takes the shared lock an open holds. A file system without
// flock leaves the repository unlocked, with a warning, rather than
// unusable.
func (r *Repository) lockShared() error {
	ctx, cancel := context.WithTimeout(context.Background(), openLockWait)
	defer cancel()
	err := flockWait(ctx, int(r.dir.Fd()), unix.LOCK_SH, r.path)
	if errors.Is(err, ErrLocked) {
		return fmt.Errorf("%w (a garbage collection still running?)", err)
	}
	if err != nil {
		slog.Warn("repository not locked", "repository", r.path, "reason", err.Error())
	}
	return nil
}

// Unlock gives up the shared lock the repository holds from its open, for
// a process that keeps it open for long but writes nothing, such as a
// mount: garbage collection no longer waits for it, and may then remove
// the objects of an image no ref names any more, as it does under
// composefs-rs' kernel mounts, which hold no lock either.
func (r *Repository) Unlock() error {
	if err := unix.Flock(int(r.dir.Fd()), unix.LOCK_UN); err != nil {
		return fmt.Errorf("unlock repository %s: %w", r.path, err)
	}
	return nil
}
