package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// OpenLayer returns the uncompressed tar stream of layer i, fetched to
// the directory Fetch was given. The reader checks, when it reaches the
// end, the blob's sha256 against the manifest's digest and the tar's
// against the config's diff_id; a mismatch is the error of that last
// Read, naming the layer, in place of io.EOF. Close reads what is left
// when the caller stopped early (tar.Reader stops at the archive's end
// marker, before the padding after it), so that Close's error too says
// whether the layer was what the image said; reads stop once ctx is done.
func (im *Image) OpenLayer(ctx context.Context, i int) (io.ReadCloser, error) {
	if i < 0 || i >= len(im.layers) {
		return nil, fmt.Errorf("%s: no layer %d; the image has %d", im.src, i, len(im.layers))
	}
	if im.dir == "" {
		return nil, fmt.Errorf("%s: %w", im.src, errNotFetched)
	}
	l := im.layers[i]
	comp, err := layerCompression(l.MediaType)
	if err != nil {
		return nil, fmt.Errorf("%s: layer %d (%s): %w", im.src, i, l.Digest, err)
	}
	f, err := os.Open(filepath.Join(im.dir, BlobName(l.Digest)))
	if err != nil {
		return nil, fmt.Errorf("%s: layer %d: %w", im.src, i, err)
	}
	lr := &layerReader{
		ctx: ctx, f: f, layer: l,
		name:         fmt.Sprintf("%s: layer %d (%s)", im.src, i, l.Digest),
		compressed:   sha256.New(),
		uncompressed: sha256.New(),
	}
	lr.raw = io.TeeReader(&countingReader{r: f, n: &lr.rawSize}, lr.compressed)
	switch comp {
	case uncompressed:
		lr.tar = lr.raw
	case gzipped:
		zr, err := gzip.NewReader(lr.raw)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: gzip: %w", lr.name, err)
		}
		lr.tar, lr.closeDec = zr, func() { zr.Close() }
	case zstdCompressed:
		zr, err := zstd.NewReader(lr.raw, zstd.WithDecoderConcurrency(1))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: zstd: %w", lr.name, err)
		}
		lr.tar, lr.closeDec = zr, zr.Close
	}
	return lr, nil
}

// layerReader decompresses a layer blob, hashing both the blob and the
// tar as they go by.
type layerReader struct {
	ctx          context.Context
	f            *os.File
	layer        Layer
	name         string // the source and layer, for errors
	raw          io.Reader
	rawSize      int64
	tar          io.Reader
	closeDec     func()
	compressed   hash.Hash
	uncompressed hash.Hash
	err          error // once set, every Read returns it
}

func (lr *layerReader) Read(p []byte) (int, error) {
	if lr.err != nil {
		return 0, lr.err
	}
	if err := lr.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := lr.tar.Read(p)
	lr.uncompressed.Write(p[:n])
	switch {
	case err == io.EOF:
		lr.err = lr.verify()
	case err != nil:
		lr.err = fmt.Errorf("%s: %w", lr.name, err)
	}
	return n, lr.err
}

// verify runs at the end of the tar: the rest of the blob (nothing, for
// a well-formed one) is read, then both digests checked.
func (lr *layerReader) verify() error {
	if _, err := io.Copy(io.Discard, lr.raw); err != nil {
		return fmt.Errorf("%s: %w", lr.name, err)
	}
	if lr.rawSize != lr.layer.Size {
		return fmt.Errorf("%s: blob has %d bytes, the manifest says %d", lr.name, lr.rawSize, lr.layer.Size)
	}
	if got := "sha256:" + hex.EncodeToString(lr.compressed.Sum(nil)); got != lr.layer.Digest {
		return fmt.Errorf("%s: blob's sha256 is %s: %w", lr.name, got, ErrDigestMismatch)
	}
	if got := "sha256:" + hex.EncodeToString(lr.uncompressed.Sum(nil)); got != lr.layer.DiffID {
		return fmt.Errorf("%s: uncompressed sha256 is %s, the config's diff_id %s: %w", lr.name, got, lr.layer.DiffID, ErrDigestMismatch)
	}
	return io.EOF
}

// Close reads the layer to its end if the caller did not, returning the
// error that gives (nil when the layer checked out), and closes it.
func (lr *layerReader) Close() error {
	var err error
	if lr.err == nil {
		_, err = io.Copy(io.Discard, lr)
	} else if lr.err != io.EOF {
		err = lr.err
	}
	if lr.closeDec != nil {
		lr.closeDec()
	}
	if cerr := lr.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	lr.err = fmt.Errorf("%s: read after close", lr.name)
	return err
}

// countingReader counts the bytes read through it into *n.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}
