//go:build linux

package fuseconn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// mountSpec is how a mount is made: what mount(2) or fusermount3 is told.
type mountSpec struct {
	dir        string
	source     string // the image, as mount tables show it
	subtype    string // the type shows as fuse.<subtype>
	allowOther bool
	maxRead    int
	// options are the rest: flags (ro, nosuid, nodev, noexec and their
	// opposites) and the file system's own (default_permissions, ...).
	options []string
}

// flagOptions are the options mount(2) takes as flags, not in its data.
var flagOptions = map[string]struct {
	set   bool
	value uintptr
}{
	"ro": {true, unix.MS_RDONLY}, "rw": {false, unix.MS_RDONLY},
	"nosuid": {true, unix.MS_NOSUID}, "suid": {false, unix.MS_NOSUID},
	"nodev": {true, unix.MS_NODEV}, "dev": {false, unix.MS_NODEV},
	"noexec": {true, unix.MS_NOEXEC}, "exec": {false, unix.MS_NOEXEC},
}

// mountDirect opens /dev/fuse and mounts it on spec.dir with mount(2),
// which takes CAP_SYS_ADMIN. The descriptor is the connection's by
// construction. nosuid and nodev hold unless the options say otherwise, as
// fusermount3 has it for users.
func mountDirect(spec mountSpec) (int, error) {
	var st unix.Stat_t
	if err := unix.Stat(spec.dir, &st); err != nil {
		return -1, fmt.Errorf("mountpoint: %w", err)
	}
	fd, err := unix.Open("/dev/fuse", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening /dev/fuse: %w", err)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	data := []string{
		fmt.Sprintf("fd=%d", fd),
		fmt.Sprintf("rootmode=%o", st.Mode&unix.S_IFMT),
		fmt.Sprintf("user_id=%d", os.Geteuid()),
		fmt.Sprintf("group_id=%d", os.Getegid()),
		fmt.Sprintf("max_read=%d", spec.maxRead),
	}
	if spec.allowOther {
		data = append(data, "allow_other")
	}
	for _, o := range spec.options {
		if f, ok := flagOptions[o]; ok {
			if f.set {
				flags |= f.value
			} else {
				flags &^= f.value
			}
			continue
		}
		data = append(data, o)
	}
	source := spec.source
	if source == "" {
		source = spec.subtype
	}
	// The data is split at commas, with no way to escape one: the source
	// (which may hold any) goes as mount(2)'s own argument.
	err = unix.Mount(source, spec.dir, "fuse."+spec.subtype, flags, strings.Join(data, ","))
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("mount(2): %w", err)
	}
	return fd, nil
}

// commFD is where fusermount3 finds its end of the socket it sends the
// connection's descriptor over, as _FUSE_COMMFD tells it.
const commFD = 3

// mountFusermount has the setuid helper fusermount3 open /dev/fuse and
// mount it, and receives the descriptor from it: over a socket pair, one
// end given to the helper, as one SCM_RIGHTS message. For users without
// CAP_SYS_ADMIN.
func mountFusermount(spec mountSpec) (int, error) {
	bin, err := exec.LookPath("fusermount3")
	if err != nil {
		return -1, fmt.Errorf("not root, and no fusermount3 to mount with: %w", err)
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socketpair: %w", err)
	}
	ours := os.NewFile(uintptr(pair[0]), "fusermount3 socket")
	theirs := os.NewFile(uintptr(pair[1]), "fusermount3 socket")
	defer ours.Close()

	opts := []string{fmt.Sprintf("max_read=%d", spec.maxRead), "subtype=" + spec.subtype}
	if spec.source != "" {
		opts = append(opts, "fsname="+spec.source)
	}
	if spec.allowOther {
		opts = append(opts, "allow_other")
	}
	opts = append(opts, spec.options...)
	// fusermount3 splits at commas that no backslash escapes.
	escape := strings.NewReplacer(`\`, `\\`, `,`, `\,`)
	for i, o := range opts {
		opts[i] = escape.Replace(o)
	}
	cmd := exec.Command(bin, "-o", strings.Join(opts, ","), "--", spec.dir)
	cmd.Env = append(os.Environ(), fmt.Sprintf("_FUSE_COMMFD=%d", commFD))
	cmd.ExtraFiles = []*os.File{theirs} // descriptor 3
	err = runHelper("fusermount3", cmd)
	// Our copy of the helper's end closed: once the helper is gone, a
	// read finds the descriptor it sent or, if it sent none, the end.
	theirs.Close()
	if err != nil {
		return -1, err
	}
	return receiveFD(pair[0])
}

// receiveFD reads the one message fusermount3 sends: a byte of data and
// the connection's descriptor as SCM_RIGHTS.
func receiveFD(sock int) (int, error) {
	var data [1]byte
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, data[:], oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("receiving the descriptor from fusermount3: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("fusermount3 sent %d control messages (%v), want the descriptor", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return -1, fmt.Errorf("fusermount3 sent %d descriptors (%v), want one", len(fds), err)
	}
	return fds[0], nil
}

// unmount undoes a mount made by mountDirect (umount2) or by fusermount3
// (fusermount3 -u: a user may not umount2). A mount busy only for a moment
// (a file being closed) is tried again a few times.
func unmount(dir string, direct bool) error {
	var err error
	for try := range 5 {
		if direct {
			err = unix.Unmount(dir, 0)
		} else {
			err = runHelper("fusermount3 -u", exec.Command("fusermount3", "-u", "--", dir))
			if err != nil && !strings.Contains(err.Error(), "busy") {
				return err
			}
		}
		if err == nil || direct && !errors.Is(err, unix.EBUSY) {
			return err
		}
		sleep(try)
	}
	return err
}

// detach unmounts dir lazily: it leaves the tree now, and goes once its
// last user lets go.
func detach(dir string, direct bool) error {
	if direct {
		return unix.Unmount(dir, unix.MNT_DETACH)
	}
	return runHelper("fusermount3 -u -z", exec.Command("fusermount3", "-u", "-z", "--", dir))
}

// helperError is a helper command (fusermount3) that failed: how it ended
// and what it said, on one line.
type helperError struct {
	// Command names the helper and what it was asked ("fusermount3 -u").
	Command string
	// State is how the helper ended; nil when it could not be started.
	State *os.ProcessState
	// Err is why it could not be started or waited for.
	Err error
	// Stderr is what it wrote there, trimmed.
	Stderr string
}

func (e *helperError) Error() string {
	var b strings.Builder
	b.WriteString(e.Command)
	b.WriteString(": ")
	switch ws, ok := e.waitStatus(); {
	case ok && ws.Signaled():
		fmt.Fprintf(&b, "killed by signal %d (%s)", int(ws.Signal()), unix.SignalName(ws.Signal()))
	case ok && ws.Exited():
		fmt.Fprintf(&b, "exit status %d", ws.ExitStatus())
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString(e.State.String())
	}
	// Its lines joined: an error is one line.
	if e.Stderr != "" {
		b.WriteString(": ")
		b.WriteString(oneLine(e.Stderr))
	}
	return b.String()
}

func (e *helperError) Unwrap() error { return e.Err }

func (e *helperError) waitStatus() (syscall.WaitStatus, bool) {
	if e.State == nil {
		return 0, false
	}
	ws, ok := e.State.Sys().(syscall.WaitStatus)
	return ws, ok
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// runHelper runs cmd, whose stderr it collects, and returns a *helperError
// named name when it fails.
func runHelper(name string, cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	he := &helperError{Command: name, State: cmd.ProcessState, Stderr: strings.TrimSpace(stderr.String())}
	if _, exited := err.(*exec.ExitError); !exited {
		he.Err = err
	}
	return he
}
