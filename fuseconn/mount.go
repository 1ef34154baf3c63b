//go:build linux

package fuseconn

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

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
		return -1, fmt.Errorf("mount(2) %s: %w", spec.dir, err)
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
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	// Our copy of the helper's end closed: once the helper is gone, a
	// read finds the descriptor it sent or, if it sent none, the end.
	theirs.Close()
	if err != nil {
		return -1, fmt.Errorf("fusermount3: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
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
			var stderr bytes.Buffer
			cmd := exec.Command("fusermount3", "-u", "--", dir)
			cmd.Stderr = &stderr
			if err = cmd.Run(); err != nil {
				err = fmt.Errorf("fusermount3 -u: %w: %s", err, bytes.TrimSpace(stderr.Bytes()))
				if !strings.Contains(stderr.String(), "busy") {
					return err
				}
			}
		}
		if err == nil || direct && !errors.Is(err, unix.EBUSY) {
			return err
		}
		sleep(try)
	}
	return err
}
