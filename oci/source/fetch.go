package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/composefs/composefs-go/internal/errpath"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// LayerState is where a layer's download is.
type LayerState int

const (
	// Downloading: bytes are coming; Done counts them.
	Downloading LayerState = iota
	// Present: the blob was in the directory already, from an earlier
	// Fetch; nothing was downloaded.
	Present
	// Complete: the blob was downloaded and checked.
	Complete
	// Failed: the download stopped; Err says why.
	Failed
)

// LayerProgress reports on one layer's download.
type LayerProgress struct {
	Index int // the layer's index in Layers
	Layer Layer
	State LayerState
	Done  int64 // bytes so far
	Err   error // for Failed
}

// ProgressFunc is called as layers download, from several goroutines at
// once: with State Downloading as bytes arrive, then once with Present,
// Complete or Failed. It should return quickly.
type ProgressFunc func(LayerProgress)

// BlobName returns the name under which Fetch keeps a blob of digest
// ("sha256:HEX") in its directory: "sha256-HEX".
func BlobName(digest string) string {
	return strings.Replace(digest, ":", "-", 1)
}

// Fetch downloads the image's layer blobs that dir (created if missing)
// does not have yet, Options.Jobs at a time. Each is written to a
// temporary name in dir and renamed to BlobName(digest) only once its
// size and sha256 match the manifest's, so an interrupted Fetch leaves
// only complete, checked blobs under those names, and the next Fetch
// downloads only the rest. A blob already there of the right size is
// taken as it is (OpenLayer checks its digest as it reads). Temporary
// files are removed on failure; a process killed mid-download leaves its
// own, hidden (.sha256-HEX.partial-*), which no later Fetch mistakes for
// a blob. progress, if not nil, hears of every layer.
// The first failure stops the other downloads; its error names the
// source and the layer.
func (im *Image) Fetch(ctx context.Context, dir string, progress ProgressFunc) error {
	all := make([]int, len(im.layers))
	for i := range all {
		all[i] = i
	}
	return im.FetchLayers(ctx, dir, all, progress)
}

// FetchLayers is Fetch for the layers at the given indices only: those a
// repository lacks, say. OpenLayer may then open those.
func (im *Image) FetchLayers(ctx context.Context, dir string, which []int, progress ProgressFunc) error {
	for _, i := range which {
		if i < 0 || i >= len(im.layers) {
			return fmt.Errorf("%s: no layer %d; the image has %d", im.src, i, len(im.layers))
		}
	}
	if progress == nil {
		progress = func(LayerProgress) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%s: %w", im.src, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, im.jobs)
	for _, i := range which {
		l := im.layers[i]
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			state, err := im.fetchLayer(ctx, dir, i, l, progress)
			if err != nil {
				progress(LayerProgress{Index: i, Layer: l, State: Failed, Err: err})
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("%s: layer %d (%s): %w", im.src, i, l.Digest, err)
					cancel(firstErr)
				}
				mu.Unlock()
				return
			}
			progress(LayerProgress{Index: i, Layer: l, State: state, Done: l.Size})
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", im.src, context.Cause(ctx))
	}
	im.dir = dir
	return nil
}

// fetchLayer downloads layer i to dir unless it is there.
func (im *Image) fetchLayer(ctx context.Context, dir string, i int, l Layer, progress ProgressFunc) (LayerState, error) {
	final := filepath.Join(dir, BlobName(l.Digest))
	if fi, err := os.Lstat(final); err == nil && fi.Mode().IsRegular() && fi.Size() == l.Size {
		return Present, nil
	}
	h, err := v1.NewHash(l.Digest)
	if err != nil {
		return Failed, err
	}
	progress(LayerProgress{Index: i, Layer: l, State: Downloading})
	rc, err := im.store.blob(ctx, h)
	if err != nil {
		return Failed, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(dir, "."+BlobName(l.Digest)+".partial-*")
	if err != nil {
		return Failed, err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	sum := sha256.New()
	cw := &countingWriter{report: func(n int64) {
		progress(LayerProgress{Index: i, Layer: l, State: Downloading, Done: n})
	}}
	n, err := io.Copy(io.MultiWriter(tmp, sum, cw), io.LimitReader(rc, l.Size+1))
	if err != nil {
		if cerr := context.Cause(ctx); cerr != nil {
			return Failed, cerr
		}
		return Failed, err
	}
	// A cancel that came while the last bytes were already buffered
	// still stops the layer: a Fetch that was interrupted keeps only the
	// layers finished before.
	if ctx.Err() != nil {
		return Failed, context.Cause(ctx)
	}
	if n != l.Size {
		return Failed, fmt.Errorf("blob has %d bytes or more, the manifest says %d", n, l.Size)
	}
	if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); got != l.Digest {
		return Failed, fmt.Errorf("blob's sha256 is %s: %w", got, ErrDigestMismatch)
	}
	if err := tmp.Sync(); err != nil {
		return Failed, errpath.Cause(err, tmp.Name())
	}
	if err := tmp.Close(); err != nil {
		return Failed, errpath.Cause(err, tmp.Name())
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return Failed, err
	}
	ok = true
	return Complete, nil
}

// countingWriter counts what goes through it and reports the count.
type countingWriter struct {
	n      int64
	report func(int64)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	c.report(c.n)
	return len(p), nil
}

var errNotFetched = errors.New("layers not fetched: call Fetch first")
