package verity

import (
	"errors"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoKernelVerity is wrapped by MeasureVerity when the kernel cannot
// give the digest: the file has no fs-verity, the filesystem or kernel
// does not support it, or it was enabled with another algorithm.
var ErrNoKernelVerity = errors.New("no fs-verity digest from the kernel")

// MeasureVerity asks the kernel for f's fs-verity digest
// (FS_IOC_MEASURE_VERITY). It succeeds only when f has fs-verity enabled
// with alg; otherwise the error wraps ErrNoKernelVerity (and the errno).
func MeasureVerity(f *os.File, alg Algorithm) ([]byte, error) {
	// Room for any digest the kernel knows today; EOVERFLOW would mean a
	// future, larger algorithm, which is never the one asked for.
	for _, room := range []int{maxDigestSize, 256} {
		arg := newDigestArg(room)
		err := ioctlRetry(f, fsIocMeasureVerity, unsafe.Pointer(&arg[0]))
		if err == unix.EOVERFLOW {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%w: FS_IOC_MEASURE_VERITY: %w", ErrNoKernelVerity, err)
		}
		got, d, ok := decodeDigestArg(arg)
		if !ok {
			return nil, fmt.Errorf("%w: FS_IOC_MEASURE_VERITY returned a malformed digest", ErrNoKernelVerity)
		}
		if got != alg || len(d) != alg.Size() {
			return nil, fmt.Errorf("%w: fs-verity enabled with %s, not %s", ErrNoKernelVerity, got, alg)
		}
		return append([]byte(nil), d...), nil
	}
	return nil, fmt.Errorf("%w: FS_IOC_MEASURE_VERITY: %w", ErrNoKernelVerity, unix.EOVERFLOW)
}

// EnableVerity turns on fs-verity for f (FS_IOC_ENABLE_VERITY) with alg,
// 4096-byte blocks and no salt. It is best effort: callers usually ignore
// the error, which is returned for logging. f must be open read-only and
// have no writers. A file that already has fs-verity is not an error.
func EnableVerity(f *os.File, alg Algorithm) error {
	if !alg.Valid() {
		return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), errInvalidAlgorithm(alg))
	}
	arg := encodeEnableArg(alg)
	err := ioctlRetry(f, fsIocEnableVerity, unsafe.Pointer(&arg[0]))
	if err == nil || err == unix.EEXIST {
		return nil
	}
	return fmt.Errorf("enable fs-verity on %s: %w", f.Name(), err)
}

// ioctlRetry runs an ioctl whose argument is a pointer, retrying when a
// signal (the Go runtime sends them) interrupts it.
func ioctlRetry(f *os.File, req uint32, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	cerr := rc.Control(func(fd uintptr) {
		for {
			_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
			if errno != unix.EINTR {
				return
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	if errno != 0 {
		return errno
	}
	return nil
}
