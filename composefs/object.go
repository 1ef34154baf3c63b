package composefs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"

	"github.com/composefs/composefs-go/erofs"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

var (
	// ErrDigestMismatch is wrapped when an object's fs-verity digest is
	// not the one its file's metacopy names: its bytes are not the file's.
	// The error wraps verity.ErrMismatch too.
	ErrDigestMismatch = errors.New("object does not match its fs-verity digest")
	// ErrNoDigest is wrapped when verity is required and the file's
	// metacopy carries no digest to check its object against.
	ErrNoDigest = errors.New("no fs-verity digest to check, and verity is required")
	// ErrNoRedirect is wrapped when a file is marked as metacopy but does
	// not name its object.
	ErrNoRedirect = errors.New("metacopy without trusted.overlay.redirect: no object to read")
)

// External tells whether the content of regular file in lives in the
// object store (it carries trusted.overlay.metacopy) rather than in the
// image.
func (f *FS) External(in *erofs.Inode) (bool, error) {
	if !in.IsRegular() || in.XattrCount == 0 {
		return false, nil
	}
	_, _, present, err := f.img.Metacopy(in)
	return present, err
}

// Object is the opened object of an external file.
type Object struct {
	File *os.File
	// Payload is the object's name in the store ("ab/cdef...").
	Payload string
	// Checked tells whether its whole content was found to match the
	// digest; false when the policy or the file asked for no check, or
	// when Blocks is set.
	Checked bool
	// Blocks, when set (OpenObjectToRead only), checks the object as it
	// is read instead: every read of it must go through Object.ReadAt
	// or Blocks.ReadAt.
	Blocks *ObjectBlocks
	// State, when Checked, is the file's state that the check covers
	// (verity.Cache.VerifyState): a holder that finds the file in that
	// state later holds what was checked. With Blocks it is the state
	// the sums were found in. Zero otherwise.
	State verity.State
}

// ReadAt reads the object's content at off, as io.ReaderAt does, checked
// block by block when Blocks is set.
func (o Object) ReadAt(p []byte, off int64) (int, error) {
	if o.Blocks == nil {
		return o.File.ReadAt(p, off)
	}
	return o.Blocks.ReadAt(o.File, p, off)
}

// ObjectBlocks is how an object checked block by block as it is read is
// checked: the block sums that give its digest, and its name.
type ObjectBlocks struct {
	sums    *verity.BlockSums
	payload string
}

// Len is the memory the object's block sums take, in bytes: 1/128 of its
// size for sha256.
func (b *ObjectBlocks) Len() int64 { return b.sums.Len() }

// ReadAt reads the object's content from src, its file or another
// descriptor of it, into p at off, as io.ReaderAt does, once the blocks the
// bytes come from match their sums (verity.BlockSums.ReadAt). A block that
// does not is an error wrapping ErrDigestMismatch; errors name the object.
func (b *ObjectBlocks) ReadAt(src io.ReaderAt, p []byte, off int64) (int, error) {
	n, err := b.sums.ReadAt(src, p, off)
	if err != nil && err != io.EOF {
		return n, verifyError(b.payload, err)
	}
	return n, err
}

// OpenObject opens the object of external file in and checks it against
// its digest as the policy says, before anything is read from it: with
// fs-verity on the object's file system the kernel's measurement, else the
// digest computed and cached while the object is unchanged (verity.Cache
// says when a cached digest can be trusted for another open). Once
// ctx is done the hashing of a large object stops and the error wraps
// ctx's error, and so does the open of an object a remote store is
// fetching (objects.ContextStore). Errors name the object, and wrap
// fs.ErrNotExist for a missing object (the kernel answers ENOENT),
// ErrDigestMismatch, ErrNoDigest or ErrNoRedirect.
func (f *FS) OpenObject(ctx context.Context, in *erofs.Inode) (Object, error) {
	return f.openObject(ctx, in, false)
}

// OpenObjectToRead is OpenObject for a caller that reads the object only
// through Object.ReadAt or Blocks.ReadAt: a large object from a store with
// one place to look (not a CheckedStore, which must know a copy bad at
// once to try the next), whose block sums the digest cache keeps
// (verity.Cache.KeepTrees) and whose digest it does not know yet, comes
// back with Blocks set, to be checked as it is read, instead of hashed
// whole first. An object hashed whole here has its sums kept, once it
// matches, for the next process. That is what serves a file's first
// bytes soon after a mount: hashing all of a large file before its first
// read waits for the disk to give the whole file, which a reader such as
// dpkg or tar could otherwise have read and worked on meanwhile.
func (f *FS) OpenObjectToRead(ctx context.Context, in *erofs.Inode) (Object, error) {
	return f.openObject(ctx, in, true)
}

// openObject is OpenObject, and with byBlocks OpenObjectToRead.
func (f *FS) openObject(ctx context.Context, in *erofs.Inode, byBlocks bool) (Object, error) {
	t, err := f.objectOf(in)
	if err != nil {
		return Object{}, err
	}
	payload, alg, digest := t.payload, t.alg, t.digest
	if digest == nil && f.cfg.Verity == VerityRequire {
		return Object{}, fmt.Errorf("object %s: %w", payload, ErrNoDigest)
	}
	if f.cfg.Store == nil {
		return Object{}, fmt.Errorf("object %s: no object store: %w", payload, fs.ErrNotExist)
	}
	if objects.Fetches(f.cfg.Store) && in.Size <= math.MaxInt64 {
		// A store that fetches stops a server that sends more. (A
		// local store needs no size, and the open no allocation.)
		ctx = objects.WithSize(ctx, int64(in.Size))
	}
	check := f.checks(t)
	if cs, ok := f.cfg.Store.(objects.CheckedStore); ok && check {
		// A copy that fails the check lets the next store serve.
		var state verity.State
		obj, err := cs.OpenChecked(ctx, payload, func(obj *os.File) error {
			st, err := f.verifyObject(ctx, obj, payload, alg, digest)
			if err == nil {
				state = st // of the copy that passes, which is served
			}
			return err
		})
		if err != nil {
			return Object{}, err // which names the object
		}
		if state == (verity.State{}) {
			// A store that served a copy it did not pass to check:
			// nothing says what was checked, so nothing is served.
			obj.Close()
			return Object{}, fmt.Errorf("object %s: the store served a copy it did not check", payload)
		}
		return Object{File: obj, Payload: payload, Checked: true, State: state}, nil
	}
	obj, err := objects.OpenContext(ctx, f.cfg.Store, payload)
	if err != nil {
		return Object{}, err // which names the object
	}
	if !check {
		return Object{File: obj, Payload: payload}, nil
	}
	var state verity.State
	var sums *verity.BlockSums
	if byBlocks {
		state, sums, err = f.cfg.Cache.VerifyReads(ctx, obj, alg, digest)
	} else {
		state, err = f.cfg.Cache.VerifyState(ctx, obj, alg, digest)
	}
	if err != nil {
		obj.Close()
		return Object{}, verifyError(payload, err)
	}
	if sums != nil {
		return Object{File: obj, Payload: payload, Blocks: &ObjectBlocks{sums: sums, payload: payload}, State: state}, nil
	}
	return Object{File: obj, Payload: payload, Checked: true, State: state}, nil
}

// objectRef is what an external file's inode says of its object: its name
// in the store and, when the image gives one, its digest.
type objectRef struct {
	payload string
	alg     verity.Algorithm
	digest  []byte
}

// objectOf reads in's metacopy and redirect.
func (f *FS) objectOf(in *erofs.Inode) (objectRef, error) {
	alg, digest, present, err := f.img.Metacopy(in)
	if err != nil {
		return objectRef{}, fmt.Errorf("metacopy: %w", err)
	}
	if !present {
		return objectRef{}, fmt.Errorf("inode %d: content in the image, no object: %w", in.Nid, fs.ErrInvalid)
	}
	payload, ok, err := f.img.Redirect(in)
	if err != nil {
		return objectRef{}, fmt.Errorf("redirect: %w", err)
	}
	if !ok {
		return objectRef{}, fmt.Errorf("inode %d: %w", in.Nid, ErrNoRedirect)
	}
	return objectRef{payload: payload, alg: alg, digest: digest}, nil
}

// checks tells whether the verity policy checks the object r names.
func (f *FS) checks(r objectRef) bool { return r.digest != nil && f.cfg.Verity != VerityOff }

// verifyObject checks obj, the object payload, against digest, and
// returns the state of obj the check covers.
func (f *FS) verifyObject(ctx context.Context, obj *os.File, payload string, alg verity.Algorithm, digest []byte) (verity.State, error) {
	state, err := f.cfg.Cache.VerifyState(ctx, obj, alg, digest)
	if err != nil {
		return verity.State{}, verifyError(payload, err)
	}
	return state, nil
}

// verifyError names object payload in err, the failure of its check.
func verifyError(payload string, err error) error {
	if errors.Is(err, verity.ErrMismatch) {
		return fmt.Errorf("object %s: %w: %w", payload, ErrDigestMismatch, err)
	}
	return fmt.Errorf("object %s: fs-verity check: %w", payload, err)
}
