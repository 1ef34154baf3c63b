package main

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/composefs/composefs-go/dirscan"
	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/objects"
)

// scanDirectory reads a directory SOURCE as C mkcomposefs does: every
// external file named by its fs-verity digest, and copied into the digest
// store when one is given. Copies other users can reach of files they
// could not read get one warning in the log.
func scanDirectory(s *settings, stderr io.Writer) ([]dumpfile.Entry, error) {
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
			return nil, fmt.Errorf("digest store %s: %w", s.digestStore, errpath.Cause(err, s.digestStore))
		}
		defer store.Close()
		defer warnExposure(store)
		opts.Store = store
	}
	if !s.quiet && isTerminal(stderr) {
		opts.Progress = new(dirscan.Progress)
		stop := showProgress(stderr, opts.Progress)
		defer stop()
	}
	// Scan's errors name the file on disk they are about: SOURCE or a
	// path within it.
	entries, err := dirscan.Scan(s.source, opts)
	if err != nil {
		return nil, err
	}
	return entries, nil
}

// warnExposure says once how many files other users could not read were
// copied into a store they can read.
func warnExposure(store *objects.FlatStore) {
	e := store.Exposure()
	if e.Shared && e.Unreadable > 0 {
		slog.Warn("files other users cannot read were copied into a store they can read; chmod o-x the store to keep them private", "files", e.Unreadable, "store", e.Dir)
	}
}
