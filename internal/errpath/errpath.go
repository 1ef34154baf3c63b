// Package errpath keeps an error message from naming one path twice.
//
// A function given a path names it in its errors, as an *fs.PathError:
// os.Open's reads "open /x: no such file or directory". A caller that
// wraps such an error in words of its own about the same path would say
// /x twice ("repository /x: open /x: no such file or directory"). It wraps
// Cause(err, path) instead, which drops the inner mention; New does that
// and returns an *fs.PathError in turn, so that its own callers can drop
// the path the same way.
package errpath

import (
	"io/fs"
	"path/filepath"
)

// Cause returns err without its mention of path: while err is an
// *fs.PathError about path, its Err; any other error as it is. What the
// error is stays testable: errors.Is(Cause(err, p), fs.ErrNotExist) holds
// whenever errors.Is(err, fs.ErrNotExist) does.
func Cause(err error, path string) error {
	for {
		pe, ok := err.(*fs.PathError)
		if !ok || !samePath(pe.Path, path) || pe.Err == nil {
			return err
		}
		err = pe.Err
	}
}

// New returns "op path: err" as an *fs.PathError, err's own mention of
// path dropped (Cause). op says what was being done with path, in words
// that read before it: "scan", "repository", "fs-verity digest of".
func New(op, path string, err error) error {
	return &fs.PathError{Op: op, Path: path, Err: Cause(err, path)}
}

func samePath(a, b string) bool {
	return a == b || filepath.Clean(a) == filepath.Clean(b)
}
