package main

import (
	"bufio"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/composefs/composefs-go/verity"
)

// printObjects prints, sorted and once each, the payloads of the external
// files of all images; for missing-objects only those not found under
// --basedir (without --basedir, C finds none, so all are listed).
func printObjects(paths []string, opts options, missingOnly bool, out *bufio.Writer) error {
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
			if missingOnly && opts.basedir != "" && objectExists(opts.basedir, e.Payload) {
				continue
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

// objectExists: the object's path, relative to basedir, names something
// (C's fstatat, following symlinks).
func objectExists(basedir, payload string) bool {
	_, err := os.Stat(filepath.Join(basedir, strings.TrimLeft(payload, "/")))
	return err == nil
}

// measureFiles prints the fs-verity digest of each file, lowercase hex,
// one per line.
func measureFiles(files []string, hash string, out *bufio.Writer) error {
	alg, err := verity.ParseAlgorithm(hash)
	if err != nil {
		return fail("%v", err)
	}
	for _, f := range files {
		d, err := verity.DigestPath(alg, f)
		if err != nil {
			return fail("failed to measure '%s': %v", f, err)
		}
		out.WriteString(hex.EncodeToString(d))
		out.WriteByte('\n')
	}
	return nil
}
