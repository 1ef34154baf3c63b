package fusemount

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Without -f the command returns only once the mount is live, leaving the
// server running in the background. It re-executes itself with readyEnv
// set: the child mounts, reports readiness on the pipe at fd 3 and lets go
// of the caller's stdio; the parent relays the child's startup errors and
// exits 0 on readiness, 1 if the child gave up.
const readyEnv = "_COMPOSEFS_FUSE_DAEMON"

// readyFd is where the daemon child finds the readiness pipe.
const readyFd = 3

func isDaemonChild() bool { return os.Getenv(readyEnv) == "1" }

func startDaemon() int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		return 1
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		return 1
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		return 1
	}
	cmd := exec.Command(self, os.Args[1:]...)
	cmd.Env = append(os.Environ(), readyEnv+"=1")
	cmd.Stdout = nil // /dev/null
	cmd.Stderr = errW
	cmd.ExtraFiles = []*os.File{readyW} // fd 3
	// A session of its own, so the shell's signals (^C) do not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		return 1
	}
	readyW.Close()
	errW.Close()

	relayed := make(chan struct{})
	go func() {
		io.Copy(os.Stderr, errR)
		close(relayed)
	}()
	var b [1]byte
	n, _ := readyR.Read(b[:])
	if n == 1 {
		// The child lets go of its stderr once ready; wait for what it
		// wrote before that.
		<-relayed
		return 0
	}
	// No readiness: the child failed and said why on stderr.
	<-relayed
	if err := cmd.Wait(); err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			fmt.Fprintf(os.Stderr, "composefs-fuse: %v\n", err)
		}
	}
	return 1
}

// daemonReady tells the waiting parent the mount is live and lets go of
// its stderr, the parent's: log lines go where logDestination said.
func daemonReady() {
	ready := os.NewFile(readyFd, "ready")
	ready.Write([]byte{1})
	ready.Close()
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		syscall.Dup2(int(null.Fd()), 2)
		null.Close()
	}
}
