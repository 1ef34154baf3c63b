package oci

import (
	"io"

	"github.com/composefs/composefs-go/verity"
)

// DigestOnly is an ObjectWriter that computes the fs-verity digest of what
// it is given and stores nothing: for a Builder over layers whose content
// is stored already (oci/store's LayerTar), to compute an image id or a
// dump without writing.
func DigestOnly(alg verity.Algorithm) ObjectWriter { return digestOnly{alg} }

type digestOnly struct{ alg verity.Algorithm }

func (d digestOnly) WriteObject(r io.Reader, size int64) ([]byte, error) {
	return verity.DigestReader(d.alg, io.LimitReader(r, size))
}
