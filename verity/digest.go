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
	st, err := stateOf(f)
	if err != nil {
		return nil, errpath.New(digestOp, f.Name(), err)
	}
	d, _, err := digestStat(context.Background(), alg, f, st, false)
	return d, err
}

// digestOp is the operation of DigestFile's errors.
const digestOp = "fs-verity digest of"

// digestStat is DigestFile for a file whose stat the caller already has;
// hashing a regular file stops early, with ctx's error, once ctx is done.
// With keep, the block sums of a regular file hashed here come back too,
// when its size is one whose sums are kept (nil otherwise, and for the
// kernel's measurement).
func digestStat(ctx context.Context, alg Algorithm, f *os.File, st State, keep bool) ([]byte, *BlockSums, error) {
	if !st.regular() {
		// Pipes and devices: read what comes, from the current offset.
		d, err := digestStream(alg, f, runtime.NumCPU())
		if err != nil {
			return nil, nil, errpath.New(digestOp, f.Name(), err)
		}
		return d, nil, nil
	}
	if d, measured := kernelDigest(f, alg, st.Dev); measured {
		debugf("fs-verity digest measured by kernel", f, alg, nil)
		return d, nil, nil
	}
	debugf("fs-verity digest computed in userspace", f, alg, nil)
	d, sums, err := computeSized(ctx, alg, f, st.Size, runtime.NumCPU(), keep)
	if err != nil {
		return nil, nil, errpath.New(digestOp, f.Name(), err)
	}
	return d, sums, nil
}

// noKernelVerity holds the devices whose file system answered that it has
// no fs-verity at all (or the kernel has none): asking again for every file
// there would cost an ioctl each time for the same answer.
var noKernelVerity sync.Map // device number -> struct{}

// kernelDigest is f's digest as the kernel measures it, when f, on device
// dev, has fs-verity enabled with alg; measured is false when it has not,
// and the digest is to be computed.
func kernelDigest(f *os.File, alg Algorithm, dev uint64) (d []byte, measured bool) {
	if _, none := noKernelVerity.Load(dev); none {
		return nil, false
	}
	d, err := MeasureVerity(f, alg)
	if err == nil {
		return d, true
	}
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		noKernelVerity.Store(dev, struct{}{})
	}
	return nil, false
}

// computeSized hashes the size bytes of regular file f in userspace, large
// files with the given number of workers, until ctx is done; with keep, it
// also returns the block sums of a file whose sums are kept (keepsSums).
func computeSized(ctx context.Context, alg Algorithm, f *os.File, size int64, workers int, keep bool) ([]byte, *BlockSums, error) {
	computed.Add(1)
	keep = keep && keepsSums(size)
	if size < parallelMin && !keep {
		d, err := digestSmall(ctx, alg, f, size)
		return d, nil, err
	}
	adviseSequential(f)
	return digestAt(ctx, alg, f, size, workers, keep)
}

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
