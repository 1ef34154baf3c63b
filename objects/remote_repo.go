package objects

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/composefs/composefs-go/verity"
)

// RemoteRepository is a composefs-rs repository served over HTTP(S)
// (meta.json, objects/, images/), read the way Repository reads a local
// one: its objects are a Remote on objects/, its images are named by id
// (an object, fetched and checked against the id, kept in the cache) or by
// a ref under images/refs/ (fetched as the server resolves it, unchecked:
// a ref says no digest).
type RemoteRepository struct {
	top     *Remote // the repository's URL
	objects *Remote // its objects/
	meta    *Meta
	alg     verity.Algorithm
}

// OpenRemoteRepository opens the repository at rawURL and reads its
// meta.json; a repository without one (404) takes its algorithm from the
// image ids it is asked for.
func OpenRemoteRepository(rawURL string, cfg RemoteConfig) (*RemoteRepository, error) {
	top, err := OpenRemote(rawURL, cfg)
	if err != nil {
		return nil, fmt.Errorf("repository: %w", err)
	}
	objs, err := OpenRemote(top.base.String()+"objects/", cfg)
	if err != nil {
		top.Close()
		return nil, fmt.Errorf("repository: %w", err)
	}
	rr := &RemoteRepository{top: top, objects: objs}
	if err := rr.readMeta(); err != nil {
		rr.Close()
		return nil, fmt.Errorf("repository %s: %w", top.URL(), err)
	}
	return rr, nil
}

func (rr *RemoteRepository) readMeta() error {
	f, err := rr.top.Open("meta.json")
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	m, err := ReadMeta(f)
	if err != nil {
		return fmt.Errorf("meta.json: %w", err)
	}
	rr.meta, rr.alg = m, m.Algorithm
	return nil
}

// Objects is the repository's object store.
func (rr *RemoteRepository) Objects() *Remote { return rr.objects }

// Meta is the repository's meta.json, nil when it has none.
func (rr *RemoteRepository) Meta() *Meta { return rr.meta }

// URL is the repository's URL, without credentials.
func (rr *RemoteRepository) URL() string { return rr.top.URL() }

// Close stops the fetches in flight.
func (rr *RemoteRepository) Close() error {
	rr.objects.Close()
	return rr.top.Close()
}

// ImageID is the id nameOrID names an image by: hex of the repository's
// algorithm's size (either size without meta.json).
func (rr *RemoteRepository) ImageID(nameOrID string) ([]byte, bool) {
	if !isHex(nameOrID) {
		return nil, false
	}
	alg, ok := verity.AlgorithmForDigestSize(len(nameOrID) / 2)
	if !ok || len(nameOrID)%2 != 0 || rr.meta != nil && alg != rr.alg {
		return nil, false
	}
	id, err := hex.DecodeString(nameOrID)
	return id, err == nil
}

// OpenImage opens an image by its id (the object of that digest, checked
// and cached like any) or by a ref name under images/refs/. id is the
// image's digest when it was named by one, nil for a ref.
func (rr *RemoteRepository) OpenImage(ctx context.Context, nameOrID string) (f *os.File, id []byte, err error) {
	name, err := cleanRelative(nameOrID)
	if err != nil {
		return nil, nil, fmt.Errorf("image %q: %w", nameOrID, err)
	}
	if id, ok := rr.ImageID(name); ok {
		f, err := rr.objects.OpenContext(ctx, PayloadForDigest(id))
		if err != nil {
			return nil, nil, fmt.Errorf("image %s: %w", name, err)
		}
		return f, id, nil
	}
	f, err = rr.top.OpenContext(ctx, "images/refs/"+name)
	if err != nil {
		return nil, nil, fmt.Errorf("image %q: %w", nameOrID, err)
	}
	return f, nil, nil
}
