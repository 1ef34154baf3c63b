package verity

import (
	"os"

	"golang.org/x/sys/unix"
)

// adviseSequential tells the kernel f is about to be read front to back,
// for a larger readahead on cold files. Purely a hint.
func adviseSequential(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.Fadvise(int(fd), 0, 0, unix.FADV_SEQUENTIAL)
	})
}
