package source_test

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/composefs/composefs-go/oci/source"
)

// What cfsctl oci pull does with a SOURCE: open it, fetch its layers with
// progress on a terminal, and read each layer's tar in order.
func Example() {
	ctx := context.Background()
	ref, err := source.Parse("docker://quay.io/fedora/fedora:latest")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	im, err := source.Open(ctx, ref, source.Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	defer im.Close()
	progress, stop := source.TerminalProgress(os.Stderr, len(im.Layers()))
	err = im.Fetch(ctx, "/var/tmp/blobs", progress)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for i := range im.Layers() {
		r, err := im.OpenLayer(ctx, i)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				break
			}
			_ = hdr // apply the entry
		}
		// Close reads past the tar's end and says whether the layer was
		// the one the image names.
		if err := r.Close(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return
		}
	}
}
