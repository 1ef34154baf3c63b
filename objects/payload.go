package objects

import (
	"fmt"
	"strings"
)

// maxPathLen is PATH_MAX: no longer path can be opened anyway.
const maxPathLen = 4096

// cleanPayload turns a redirect payload into a path relative to a store
// root. One leading "/" is allowed and means the root (as overlayfs reads
// redirects in a data-only layer). What remains must be plain names: no
// "", "." or ".." component, no NUL byte, no second leading "/".
func cleanPayload(payload string) (string, error) {
	return cleanRelative(strings.TrimPrefix(payload, "/"))
}

// cleanRelative checks that rel is a relative path of plain names.
func cleanRelative(rel string) (string, error) {
	switch {
	case rel == "":
		return "", fmt.Errorf("%w: empty path", ErrUnsafePath)
	case len(rel) > maxPathLen:
		return "", fmt.Errorf("%w: %d bytes long", ErrUnsafePath, len(rel))
	case strings.IndexByte(rel, 0) >= 0:
		return "", fmt.Errorf("%w: contains a NUL byte", ErrUnsafePath)
	case rel[0] == '/':
		return "", fmt.Errorf("%w: absolute path", ErrUnsafePath)
	}
	for c := range strings.SplitSeq(rel, "/") {
		switch c {
		case "":
			return "", fmt.Errorf("%w: empty path component", ErrUnsafePath)
		case ".", "..":
			return "", fmt.Errorf("%w: %q component", ErrUnsafePath, c)
		}
	}
	return rel, nil
}
