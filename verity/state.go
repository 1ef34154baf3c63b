package verity

import (
	"os"

	"golang.org/x/sys/unix"
)

// State is a file as fstat shows it at one moment: its identity, size,
// type and last changes. Any write moves its mtime or ctime, so two equal
// States of an open file mean the content did not change between them
// (within the grain of the file system's clock, see Cache). It is what the
// Cache knows a digest by, and what a check reports it covered
// (VerifyState): a caller that keeps it learns, by comparing a later
// fstat with it, whether what it holds is still what was checked.
type State struct {
	Dev, Ino     uint64
	Size         int64
	Mode         uint32
	Mtime, Ctime unix.Timespec
}

// stateOfStat is the State an fstat gave.
func stateOfStat(st *unix.Stat_t) State {
	return State{
		// Converted: some architectures give narrower fields.
		Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: int64(st.Size), Mode: uint32(st.Mode),
		Mtime: st.Mtim, Ctime: st.Ctim,
	}
}

// StateOfFd is the State of the file open at fd now: one fstat.
func StateOfFd(fd int) (State, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return State{}, err
	}
	return stateOfStat(&st), nil
}

// regular tells whether the state is a regular file's.
func (s State) regular() bool { return s.Mode&unix.S_IFMT == unix.S_IFREG }

// stateOf is f's State now: one fstat, through f's descriptor without
// changing its mode (os.File.Fd would make a pipe blocking).
func stateOf(f *os.File) (State, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return State{}, err
	}
	var st State
	var serr error
	if err := rc.Control(func(fd uintptr) { st, serr = StateOfFd(int(fd)) }); err != nil {
		// The one way Control fails: f is closed (as os.File.Stat says).
		return State{}, &os.PathError{Op: "stat", Path: f.Name(), Err: os.ErrClosed}
	}
	if serr != nil {
		return State{}, &os.PathError{Op: "stat", Path: f.Name(), Err: serr}
	}
	return st, nil
}
