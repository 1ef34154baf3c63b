package dirscan

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/verity"
	"golang.org/x/sys/unix"
)

// readFiles reads every regular file that needs it, Options.Threads at a
// time: the content of small files, the digest (or the store copy) of the
// others. The first error stops the work and is returned.
func (s *scanner) readFiles() error {
	var (
		next    atomic.Int64
		failed  atomic.Bool
		errOnce sync.Once
		first   error
		wg      sync.WaitGroup
	)
	workers := min(s.opts.Threads, len(s.files))
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= len(s.files) {
					return
				}
				job := s.files[i]
				e := &s.entries[job.index]
				if err := s.readFile(e, job.fsPath); err != nil {
					errOnce.Do(func() { first = scanError(job.fsPath, err) })
					failed.Store(true)
					return
				}
				if p := s.opts.Progress; p != nil {
					p.Files.Add(1)
					p.Bytes.Add(int64(e.Size))
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// readFile fills one regular file's entry: inline content up to
// RecommendedInlineContentMax bytes (C's threshold), else payload and digest.
func (s *scanner) readFile(e *dumpfile.Entry, fsPath string) error {
	f, err := openRegular(fsPath)
	if err != nil {
		return err
	}
	defer f.Close()
	if e.Size <= dumpfile.RecommendedInlineContentMax {
		// C reads exactly the size lstat gave, and fails if the file
		// has shrunk since.
		content := make([]byte, e.Size)
		if _, err := io.ReadFull(f, content); err != nil {
			return fmt.Errorf("reading %d bytes of inline content: %w", e.Size, errpath.Cause(err, fsPath))
		}
		e.Content = content
		return nil
	}
	alg := s.opts.DigestAlgorithm
	var digest []byte
	if s.opts.Store != nil {
		e.Payload, digest, err = s.opts.Store.Add(alg, f)
	} else {
		digest, err = verity.DigestFile(alg, f)
		e.Payload = payloadForDigest(digest)
	}
	if err != nil {
		return err
	}
	if len(digest) != alg.Size() {
		return fmt.Errorf("%s digest of %d bytes", alg, len(digest))
	}
	e.Digest = hex.EncodeToString(digest)
	return nil
}

// openRegular opens a file that lstat said is regular, refusing anything
// else it may have been replaced by (without blocking on a FIFO).
func openRegular(fsPath string) (*os.File, error) {
	fd, err := unix.Open(fsPath, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: fsPath, Err: err}
	}
	f := os.NewFile(uintptr(fd), fsPath)
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("no longer a regular file")
	}
	return f, nil
}

// payloadForDigest names an object after its digest as C does: the first
// byte in hex, a slash, the rest in hex.
func payloadForDigest(digest []byte) string {
	h := hex.EncodeToString(digest)
	return h[:2] + "/" + h[2:]
}
