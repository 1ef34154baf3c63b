package verity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/composefs/composefs-go/internal/errpath"
	"golang.org/x/sys/unix"
)

// DigestReader returns the fs-verity digest of everything r yields.
func DigestReader(alg Algorithm, r io.Reader) ([]byte, error) {
	if !alg.Valid() {
		return nil, fmt.Errorf("fs-verity digest: %w", errInvalidAlgorithm(alg))
	}
	return digestStream(alg, r, runtime.NumCPU())
}

// DigestFile returns the fs-verity digest of the whole content of f (from
// offset 0, leaving the file offset alone). When f has fs-verity enabled
// with alg, the kernel's measurement is used; otherwise the digest is
// computed, hashing large files on all cores. Its errors, and
// DigestPath's, are *fs.PathError naming the file once ("fs-verity digest
// of NAME: ..."), so that a caller naming it too can keep only the cause.
func DigestFile(alg Algorithm, f *os.File) ([]byte, error) {
	if !alg.Valid() {
		return nil, errpath.New(digestOp, f.Name(), errInvalidAlgorithm(alg))
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, errpath.New(digestOp, f.Name(), err)
	}
	return digestStat(context.Background(), alg, f, fi)
}

// digestOp is the operation of DigestFile's errors.
const digestOp = "fs-verity digest of"

// digestStat is DigestFile for a file whose stat the caller already has;
// hashing a regular file stops early, with ctx's error, once ctx is done.
func digestStat(ctx context.Context, alg Algorithm, f *os.File, fi os.FileInfo) ([]byte, error) {
	if !fi.Mode().IsRegular() {
		// Pipes and devices: read what comes, from the current offset.
		d, err := digestStream(alg, f, runtime.NumCPU())
		if err != nil {
			return nil, errpath.New(digestOp, f.Name(), err)
		}
		return d, nil
	}
	var dev uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		dev = uint64(st.Dev)
	}
	return digestRegular(ctx, alg, f, dev, fi.Size())
}

// noKernelVerity holds the devices whose file system answered that it has
// no fs-verity at all (or the kernel has none): asking again for every file
// there would cost an ioctl each time for the same answer.
var noKernelVerity sync.Map // device number -> struct{}

// digestRegular is DigestFile for a regular file whose device and size the
// caller already has.
func digestRegular(ctx context.Context, alg Algorithm, f *os.File, dev uint64, size int64) ([]byte, error) {
	var kerr error = errKernelVerityUnsupported
	if _, none := noKernelVerity.Load(dev); !none {
		var d []byte
		d, kerr = MeasureVerity(f, alg)
		if kerr == nil {
			debugf("fs-verity digest measured by kernel", f, alg, nil)
			return d, nil
		}
		if errors.Is(kerr, unix.ENOTTY) || errors.Is(kerr, unix.EOPNOTSUPP) {
			noKernelVerity.Store(dev, struct{}{})
		}
	}
	debugf("fs-verity digest computed in userspace", f, alg, kerr)
	d, err := computeSized(ctx, alg, f, size, runtime.NumCPU())
	if err != nil {
		return nil, errpath.New(digestOp, f.Name(), err)
	}
	return d, nil
}

// computeSized hashes the size bytes of regular file f in userspace, large
// files with the given number of workers, until ctx is done.
func computeSized(ctx context.Context, alg Algorithm, f *os.File, size int64, workers int) ([]byte, error) {
	computed.Add(1)
	if size < parallelMin {
		return digestSmall(ctx, alg, f, size)
	}
	adviseSequential(f)
	return digestAt(ctx, alg, f, size, workers)
}

var errKernelVerityUnsupported = fmt.Errorf("%w: not supported by this file system", ErrNoKernelVerity)

// DigestPath returns the fs-verity digest of the file at path.
func DigestPath(alg Algorithm, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, errpath.New(digestOp, path, err)
	}
	defer f.Close()
	return DigestFile(alg, f)
}

// computed counts userspace file hashes, for tests of the cache.
var computed atomic.Int64

// digestSmall hashes a file too small to be worth the workers. ctx is
// looked at once a buffer, which is little work between two looks.
func digestSmall(ctx context.Context, alg Algorithm, f *os.File, size int64) ([]byte, error) {
	bp := getBuffer()
	defer putBuffer(bp)
	h := getHasher(alg)
	defer putHasher(h)
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := int(min(int64(len(*bp)), size-off))
		if err := readFullAt(f, (*bp)[:n], off); err != nil {
			return nil, err
		}
		h.Write((*bp)[:n])
		off += int64(n)
	}
	return h.sumFinal(), nil
}

func debugf(msg string, f *os.File, alg Algorithm, reason error) {
	ctx := context.Background()
	if !slog.Default().Enabled(ctx, slog.LevelDebug) {
		return
	}
	if reason != nil {
		slog.Debug(msg, "file", f.Name(), "algorithm", alg.String(), "reason", reason.Error())
		return
	}
	slog.Debug(msg, "file", f.Name(), "algorithm", alg.String())
}

type errInvalidAlgorithm Algorithm

func (e errInvalidAlgorithm) Error() string {
	return "unsupported hash " + Algorithm(e).String()
}
