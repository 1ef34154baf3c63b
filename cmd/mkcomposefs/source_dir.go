package main

import (
	"fmt"

	"github.com/composefs/composefs-go/dirscan"
	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/objects"
)

// scanDirectory reads a directory SOURCE as C mkcomposefs does: every
// external file named by its fs-verity digest, and copied into the digest
// store when one is given.
func scanDirectory(s *settings) ([]dumpfile.Entry, error) {
	opts := dirscan.Options{
		UseEpoch:      s.useEpoch,
		SkipDevices:   s.skipDevices,
		SkipXattrs:    s.skipXattrs,
		UserXattrs:    s.userXattrs,
		Hardlinks:     s.hardlinks,
		ComputeDigest: true,
		Threads:       s.threads,
	}
	if s.digestStore != "" {
		// Like C, create the store directory when it is missing; unlike
		// C, make it private.
		store, err := objects.CreateFlat(s.digestStore)
		if err != nil {
			return nil, fmt.Errorf("digest store: %w", err)
		}
		defer store.Close()
		opts.Store = store
	}
	entries, err := dirscan.Scan(s.source, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.source, err)
	}
	return entries, nil
}
