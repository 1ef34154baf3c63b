package main

import (
	"bufio"
	"encoding/hex"
	"slices"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/internal/errpath"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// printObjects prints, sorted and once each, the payloads of the external
// files of all images; for missing-objects only those not found under
// the flat object store at --basedir (without --basedir, C finds none, so
// all are listed).
func printObjects(paths []string, opts options, missingOnly bool, out *bufio.Writer) error {
	var store *objects.FlatStore
	if opts.basedir != "" {
		s, err := objects.OpenFlat(opts.basedir)
		if err != nil {
			return fail("Can't open basedir `%s`: %v", opts.basedir, errpath.Cause(err, opts.basedir))
		}
		defer s.Close()
		store = s
	}
	set := map[string]bool{}
	for _, p := range paths {
		t, err := loadTree(p, opts.filters)
		if err != nil {
			return err
		}
		for i := range t.entries {
			e := &t.entries[i]
			if e.Hardlink != "" || !e.IsRegular() || e.Payload == "" || set[e.Payload] {
				continue
			}
			if missingOnly && store != nil {
				// An unsafe payload or a non-regular object counts as
				// missing: it could not be served.
				if ok, err := store.Has(e.Payload); err == nil && ok {
					continue
				}
			}
			set[e.Payload] = true
		}
	}
	list := make([]string, 0, len(set))
	for p := range set {
		list = append(list, p)
	}
	slices.Sort(list)
	for _, p := range list {
		out.WriteString(p)
		out.WriteByte('\n')
	}
	return nil
}

// measureFiles prints the fs-verity digest of each file, lowercase hex,
// one per line.
func measureFiles(files []string, hash string, out *bufio.Writer) error {
	alg, err := verity.ParseAlgorithm(hash)
	if err != nil {
		return cli.Usagef("--hash: %v", err)
	}
	for _, f := range files {
		d, err := verity.DigestPath(alg, f)
		if err != nil {
			return fail("failed to measure '%s': %v", f, errpath.Cause(err, f))
		}
		out.WriteString(hex.EncodeToString(d))
		out.WriteByte('\n')
	}
	return nil
}
