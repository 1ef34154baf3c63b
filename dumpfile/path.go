package dumpfile

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// canonicalPath turns a dumpfile PATH into the absolute, clean form an Entry
// holds. C finds the parent by walking names and skipping any run of '/', so
// "a/b" and "/a//b" both mean "/a/b"; the root is exactly "/"; and the last
// name may not be empty (so "//" and "/a/" are refused), ".", ".." or longer
// than NameMax. A "." or ".." or overlong name before the last can never be
// an existing directory in C, so it is refused too.
func canonicalPath(p []byte) (string, error) {
	if len(p) == 0 {
		return "", errors.New("invalid empty path")
	}
	if len(p) == 1 && p[0] == '/' {
		return "/", nil
	}
	if bytes.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q has an embedded NUL", p)
	}
	if p[len(p)-1] == '/' {
		return "", fmt.Errorf("invalid empty file name in path %q", p)
	}
	return joinNames(p)
}

// canonicalTarget cleans a hardlink target the way C looks it up: runs of
// '/' are skipped anywhere, and no names at all means the root.
func canonicalTarget(p []byte) (string, error) {
	if bytes.IndexByte(p, 0) >= 0 {
		return "", fmt.Errorf("path %q has an embedded NUL", p)
	}
	if len(bytes.Trim(p, "/")) == 0 {
		return "/", nil
	}
	return joinNames(p)
}

// joinNames checks the non-empty names of p and joins them into "/a/b".
func joinNames(p []byte) (string, error) {
	var b strings.Builder
	b.Grow(len(p) + 1)
	for _, name := range bytes.Split(p, []byte("/")) {
		if len(name) == 0 {
			continue
		}
		if string(name) == "." || string(name) == ".." {
			return "", fmt.Errorf("invalid . or .. in path %q", p)
		}
		if len(name) > NameMax {
			return "", fmt.Errorf("file name of %d bytes exceeds maximum %d", len(name), NameMax)
		}
		b.WriteByte('/')
		b.Write(name)
	}
	return b.String(), nil
}

// parentOf returns the parent directory of a canonical path ("/" for a
// top-level name) and its last name.
func parentOf(path string) (parent, name string) {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 {
		return "/", path[i+1:]
	}
	return path[:i], path[i+1:]
}
