package cli

import (
	"runtime/debug"
)

// Version is the line --version prints: the command's name, the module's
// version and the commit the binary was built from, as the Go toolchain
// recorded them in it:
//
//	mkcomposefs (devel) revision 930a697c0ffe+dirty 2025-12-06T21:14:03Z
//
// "+dirty" marks a build from a work tree with changes not committed; a
// build without VCS stamping (-buildvcs=false, go test) says "revision
// unknown".
func Version(name string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return name + " (unknown version) revision unknown"
	}
	return name + " " + describe(bi)
}

// revisionLen is how much of a commit hash Version shows, as much as Go's
// pseudo-versions do.
const revisionLen = 12

// describe is the version and revision part of Version's line.
func describe(bi *debug.BuildInfo) string {
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return v + " revision unknown"
	}
	if len(rev) > revisionLen {
		rev = rev[:revisionLen]
	}
	line := v + " revision " + rev
	if dirty {
		line += "+dirty"
	}
	if at != "" {
		line += " " + at
	}
	return line
}
