// Package objects finds the content of composefs external files: the flat
// digest store of C mkcomposefs (--digest-store, the basedir of mount), the
// composefs-rs repository, or several of them in order. Payloads come from
// untrusted images, so every open stays beneath the store's root.
package objects

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"

	"github.com/composefs/composefs-go/verity"
)

// Store is where the content of external files lives.
type Store interface {
	// Open opens the object named by payload (the redirect path, e.g.
	// "ab/cdef..." with or without a leading "/"), safely beneath the
	// store's root(s); only regular files. Its errors name the object.
	Open(payload string) (*os.File, error)
	// Has tells whether the object exists.
	Has(payload string) (bool, error)
}

// ContextStore is a Store whose opens take a context: a remote store's
// fetch, which may take long, returns ctx's error at once once ctx is
// done. A Multi is one too, to pass the context on to the stores it holds
// (Fetches tells whether any may fetch).
type ContextStore interface {
	Store
	OpenContext(ctx context.Context, payload string) (*os.File, error)
}

// OpenContext opens payload from s, through OpenContext where s has it.
func OpenContext(ctx context.Context, s Store, payload string) (*os.File, error) {
	if cs, ok := s.(ContextStore); ok {
		return cs.OpenContext(ctx, payload)
	}
	return s.Open(payload)
}

// CheckedStore is a Store of several stores that can check an object as
// it opens it, and try the next store when the check finds the object
// does not match its digest: a damaged local copy falls through to a
// good one further on.
type CheckedStore interface {
	Store
	// OpenChecked opens payload from the first store whose copy passes
	// check, and returns that very copy, the file check passed (a caller
	// learns from check what it covers). A check error that does not
	// wrap verity.ErrMismatch stops the search; when every copy found
	// mismatched, the last mismatch is returned.
	OpenChecked(ctx context.Context, payload string, check func(*os.File) error) (*os.File, error)
}

var (
	// ErrUnsafePath is wrapped when a payload would leave the store root:
	// an absolute path, a ".." or empty component, a NUL byte, or a
	// symlink met on the way.
	ErrUnsafePath = errors.New("unsafe object path")
	// ErrNotRegular is wrapped when the path names something other than a
	// regular file (a directory, device, fifo, socket).
	ErrNotRegular = errors.New("object is not a regular file")
)

// PayloadForDigest formats a digest as the store's relative path
// "xx/rest": the first byte in hex, a slash, the other bytes in hex.
func PayloadForDigest(digest []byte) string {
	h := hex.EncodeToString(digest)
	if len(h) < 2 {
		return h
	}
	return h[:2] + "/" + h[2:]
}

// Multi searches several stores in order: the first that has an object
// serves it. An error other than "does not exist" stops the search.
func Multi(stores ...Store) Store {
	return multiStore(append([]Store(nil), stores...))
}

type multiStore []Store

// Fetches tells whether opening an object of s may take long: s is a
// remote store, or a Multi with one among its stores. (A Multi of local
// directories is a ContextStore too, for the stores it may hold, but
// opens as fast as they do.)
func Fetches(s Store) bool {
	switch s := s.(type) {
	case multiStore:
		return slices.ContainsFunc(s, Fetches)
	case ContextStore:
		return true
	}
	return false
}

func (m multiStore) Open(payload string) (*os.File, error) {
	return m.OpenContext(context.Background(), payload)
}

func (m multiStore) OpenContext(ctx context.Context, payload string) (*os.File, error) {
	for _, s := range m {
		f, err := OpenContext(ctx, s, payload)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return f, err
		}
	}
	return nil, fmt.Errorf("object %q not found in any of %d stores: %w", payload, len(m), fs.ErrNotExist)
}

func (m multiStore) OpenChecked(ctx context.Context, payload string, check func(*os.File) error) (*os.File, error) {
	var mismatch error
	for _, s := range m {
		f, err := OpenContext(ctx, s, payload)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = check(f)
		if err == nil {
			return f, nil
		}
		f.Close()
		if !errors.Is(err, verity.ErrMismatch) {
			return nil, err
		}
		mismatch = err
	}
	if mismatch != nil {
		return nil, mismatch
	}
	return nil, fmt.Errorf("object %q not found in any of %d stores: %w", payload, len(m), fs.ErrNotExist)
}

func (m multiStore) Has(payload string) (bool, error) {
	for _, s := range m {
		ok, err := s.Has(payload)
		if ok || err != nil {
			return ok, err
		}
	}
	return false, nil
}

var (
	_ Store = (*FlatStore)(nil)
	_ Store = (*Repository)(nil)
	_ Store = multiStore(nil)

	_ ContextStore = multiStore(nil)
	_ ContextStore = (*Remote)(nil)
	_ CheckedStore = multiStore(nil)
)
