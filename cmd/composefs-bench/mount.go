package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/composefs/composefs-go/fuseuring"
)

// mounter mounts one image one way and takes it down again.
type mounter interface {
	name() string
	mount(c *corpus, at string) error
	unmount(at string) error
	// daemonPID is the serving process, or 0 when the kernel serves.
	daemonPID(at string) int
}

// kernelMount is the reference: EROFS, then overlayfs with the object store
// as a data-only lower layer.
type kernelMount struct{}

func (kernelMount) name() string { return "kernel" }

func (kernelMount) mount(c *corpus, at string) error {
	lower := at + ".erofs"
	if err := os.MkdirAll(lower, 0o755); err != nil {
		return err
	}
	if err := runCmd("mount", "-t", "erofs", "-o", "ro", c.image, lower); err != nil {
		return err
	}
	opts := fmt.Sprintf("ro,metacopy=on,redirect_dir=on,lowerdir=%s::%s", lower, c.objects)
	if err := runCmd("mount", "-t", "overlay", "overlay", "-o", opts, at); err != nil {
		runCmd("umount", lower)
		return err
	}
	return nil
}

func (kernelMount) unmount(at string) error {
	err := unix.Unmount(at, 0)
	if err2 := runCmd("umount", at+".erofs"); err == nil {
		err = err2
	}
	return err
}

func (kernelMount) daemonPID(string) int { return 0 }

// fuseMount is ours: composefs-fuse in its default (daemon) mode, with
// verity on unless verityOff.
type fuseMount struct {
	bin       string
	verityOff bool
	// devFuse keeps the requests on /dev/fuse (--no-io-uring).
	devFuse bool
	// passthrough answers every open, handing objects to the kernel
	// (--passthrough).
	passthrough bool
	// cache is --cache, where objects from a store at a URL go.
	cache string
	// digest is --digest, the image's fs-verity digest in hex.
	digest string
	// trees is --tree-cache: where the block sums of large objects are
	// kept from one mount to the next, as a user's cache keeps them.
	trees string
	// firstMount empties trees before each mount: every object is hashed
	// whole again, as on the first mount of an image.
	firstMount bool
}

func (f fuseMount) name() string {
	if f.passthrough {
		return "composefs-fuse (--passthrough)"
	}
	if f.devFuse {
		return "composefs-fuse (/dev/fuse)"
	}
	return "composefs-fuse"
}

func (f fuseMount) mount(c *corpus, at string) error {
	mode := "--verity=on"
	if f.verityOff {
		mode = "--verity=off"
	}
	// Its log lines, for a failed run to show why (withDaemonLog).
	os.Remove(mountLog(at))
	args := []string{"--basedir=" + c.objects, mode, c.image, at, "--log=" + mountLog(at)}
	if f.devFuse {
		args = append(args, "--no-io-uring")
	}
	if f.passthrough {
		args = append(args, "--passthrough")
	}
	if f.cache != "" {
		args = append(args, "--cache="+f.cache)
	}
	if f.digest != "" {
		args = append(args, "--digest="+f.digest)
	}
	if f.trees == "" {
		args = append(args, "--tree-cache=none")
	} else {
		if f.firstMount {
			if err := os.RemoveAll(f.trees); err != nil {
				return err
			}
		}
		args = append(args, "--tree-cache="+f.trees)
	}
	return runCmd(filepath.Join(f.bin, "composefs-fuse"), args...)
}

func (f fuseMount) unmount(at string) error { return unmountDaemon(at, f.daemonPID(at)) }

// unmountDaemon unmounts the FUSE mount at and waits for pid, its server
// (0: none known), to go.
func unmountDaemon(at string, pid int) error {
	if err := unix.Unmount(at, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", at, err)
	}
	// Wait for the daemon to go, so that runs do not overlap.
	for i := 0; pid != 0 && i < 500; i++ {
		if unix.Kill(pid, 0) != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// cServerMount is the C project's FUSE server (tools/cfs-fuse.c), which
// takes its image and store as -o source=,basedir= and checks no digest.
type cServerMount struct{ bin string }

func (cServerMount) name() string { return "C composefs-fuse" }

func (m cServerMount) mount(c *corpus, at string) error {
	return runCmd(m.bin, "-o", "source="+c.image+",basedir="+c.objects, at)
}

func (cServerMount) unmount(at string) error { return fuseMount{}.unmount(at) }

func (cServerMount) daemonPID(at string) int { return fuseMount{}.daemonPID(at) }

// daemonPID finds the composefs-fuse process serving the mountpoint.
func (fuseMount) daemonPID(at string) int { return daemonOf("composefs-fuse", at) }

// daemonOf finds the process of the program named prog (its argv[0]
// ending so) that has the mountpoint at among its arguments; 0 if none.
func daemonOf(prog, at string) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if len(args) == 0 || !bytes.HasSuffix(args[0], []byte(prog)) {
			continue
		}
		for _, a := range args[1:] {
			if string(a) == at {
				pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
				return pid
			}
		}
	}
	return 0
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// dropCaches empties the page, dentry and inode caches so that the next
// access is cold for both mounts alike.
func dropCaches() error {
	unix.Sync()
	return os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0)
}

// statusKiB reads one of a process's memory figures from /proc/PID/status:
// VmRSS (resident now) or VmHWM (the peak resident).
func statusKiB(pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// useTransport sets the kernel up for the transports asked for and returns
// how to put it back. A column over io_uring needs the fuse module's switch
// on (composefs-fuse uses io_uring wherever the kernel offers it): when it
// is already on nothing is touched; else it is turned on for the run and
// back off after. The /dev/fuse column passes --no-io-uring and needs
// nothing.
func useTransport(transport string) (restore func(), err error) {
	switch transport {
	case "dev":
		fmt.Fprintln(os.Stderr, "transport: /dev/fuse (--no-io-uring)")
		return func() {}, nil
	case "io_uring", "both":
	default:
		return nil, fmt.Errorf("--transport %q: want both, io_uring or dev", transport)
	}
	old, err := os.ReadFile(fuseuring.KernelSwitch)
	if err != nil {
		fmt.Fprintf(os.Stderr, "transport: the io_uring column is /dev/fuse (this kernel has no FUSE over io_uring: %v)\n", err)
		return func() {}, nil
	}
	if strings.TrimSpace(string(old)) == "Y" {
		fmt.Fprintf(os.Stderr, "transport: %s (fuse.enable_uring already on)\n", transport)
		return func() {}, nil
	}
	if err := os.WriteFile(fuseuring.KernelSwitch, []byte("Y\n"), 0); err != nil {
		return nil, fmt.Errorf("turning on %s: %w", fuseuring.KernelSwitch, err)
	}
	fmt.Fprintf(os.Stderr, "transport: %s (fuse.enable_uring turned on for this run, off again after)\n", transport)
	return func() { os.WriteFile(fuseuring.KernelSwitch, old, 0) }, nil
}

// mountLog is where composefs-fuse mounted at at logs.
func mountLog(at string) string { return at + ".log" }

// withDaemonLog is err with the last lines composefs-fuse mounted at at
// logged, if any, for the report of a run that failed.
func withDaemonLog(at string, err error) error {
	b, rerr := os.ReadFile(mountLog(at))
	if rerr != nil || len(b) == 0 {
		return err
	}
	return fmt.Errorf("%w; composefs-fuse logged:\n%s", err, lastLines(b, 5))
}
