package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/oci"
	"github.com/composefs/composefs-go/oci/source"
	"github.com/composefs/composefs-go/oci/store"
	"github.com/composefs/composefs-go/verity"
)

func init() {
	register(ociGroup, &command{
		name: "pull", args: "SOURCE [NAME]", minArgs: 1, maxArgs: 2,
		summary: "pull an image into the repository",
		about: `Pull the image SOURCE names into the repository, making the repository
when it is missing, and name it NAME (SOURCE when not given). SOURCE is in
skopeo's syntax: docker://HOST/REPO[:TAG|@DIGEST], oci:DIR[:REF],
oci-archive:FILE[:REF] or docker-archive:FILE. Every blob is checked against
its digest and every layer against its diff_id; layers are downloaded three
at a time, with their progress shown when stderr is a terminal. The files'
content goes into the repository's objects, shared with the images already
there; then the image's layers are merged into a composefs image, which
"cfsctl oci mount" mounts. Prints the composefs image id.`,
		setup: setupPull,
	})
}

func setupPull(c *cli.Command) func(*env, []string) error {
	var (
		tf        transformFlags
		tlsVerify bool
		authFile  string
		platform  string
	)
	tf.define(c)
	c.Flags.BoolVar(&tlsVerify, "tls-verify", true, "check registries' TLS certificates and refuse plain HTTP unless registries.conf says the registry is insecure; --tls-verify=false allows both, for a local registry")
	c.Flags.StringVar(&authFile, "authfile", "", "registry credentials `FILE`, as podman login writes it (default $REGISTRY_AUTH_FILE, then $XDG_RUNTIME_DIR/containers/auth.json, ~/.config/containers/auth.json, ~/.docker/config.json)")
	c.Flags.StringVar(&platform, "platform", "", "the image to take from a multi-platform index: `OS/ARCH[/VARIANT]` (default linux and this machine's architecture)")
	return func(e *env, args []string) error {
		t, err := tf.transform()
		if err != nil {
			return err
		}
		ref, err := source.Parse(args[0])
		if err != nil {
			return cli.Usagef("%v", err)
		}
		name := args[0]
		if len(args) == 2 {
			name = args[1]
		}
		ctx, stop := interruptible()
		defer stop()
		// The source first: a reference that leads nowhere leaves no
		// repository behind.
		img, err := source.Open(ctx, ref, source.Options{SkipTLSVerify: !tlsVerify, AuthFile: authFile, Platform: platform})
		if err != nil {
			return err
		}
		defer img.Close()
		// What the repository will refuse is refused before anything
		// is downloaded.
		if err := store.CheckImage(img.Manifest(), img.Config()); err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		repo, err := e.createRepo()
		if err != nil {
			return err
		}
		defer repo.Close()
		layers := img.Layers()
		// Layers the repository has from earlier pulls are neither
		// downloaded nor stored again.
		var missing []int
		for i, l := range layers {
			_, ok, err := store.HasLayer(repo, l.DiffID)
			if err != nil {
				return err
			}
			if !ok {
				missing = append(missing, i)
			}
		}
		blobs := filepath.Join(repo.Path(), blobDir)
		if len(missing) > 0 {
			progress, stopProgress := source.TerminalProgress(e.stderr, len(missing))
			err = img.FetchLayers(ctx, blobs, missing, progress)
			stopProgress()
			if err != nil {
				return err
			}
		}
		for _, i := range missing {
			if err := importLayer(ctx, repo, img, i); err != nil {
				return err
			}
			// Its stream holds it now.
			os.Remove(filepath.Join(blobs, source.BlobName(layers[i].Digest)))
		}
		diffIDs := make([]string, len(layers))
		for i, l := range layers {
			diffIDs[i] = l.DiffID
		}
		b, err := mergeLayers(repo, diffIDs)
		if err != nil {
			return err
		}
		id, err := b.Commit(repo, t)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, transformHint(err))
		}
		// The image's streams name its composefs image from the start,
		// and its name comes last: a name always names an image that
		// can be mounted.
		key, err := imageKey(repo.ErofsVersion(), t)
		if err != nil {
			return err
		}
		stored, err := store.StoreImageWithID(repo, img.Manifest(), img.Config(), "", key, id)
		if err != nil {
			return fmt.Errorf("%s: %w", ref, err)
		}
		if !bytes.Equal(stored.Images[key], id) {
			// Pulled before with another transform, or by composefs-rs
			// without its image: record this one.
			err = store.SetImageID(repo, stored.ManifestDigest, key, id, name)
		} else {
			err = store.Tag(repo, stored.ManifestDigest, name)
		}
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, hex.EncodeToString(id))
		return err
	}
}

// blobDir is where pull keeps the layer blobs it downloaded, below the
// repository, until their content is in it: a pull interrupted there
// downloads only the rest the next time.
const blobDir = "tmp/oci-blobs"

// importLayer stores layer i of img, fetched, as its split stream: its
// tar checked against the blob's digest and the config's diff_id as it
// is read, and registered only when both hold.
func importLayer(ctx context.Context, repo *objects.Repository, img *source.Image, i int) error {
	// Another pull may have stored it meanwhile, and removed the blob.
	if _, ok, err := store.HasLayer(repo, img.Layers()[i].DiffID); err != nil || ok {
		return err
	}
	r, err := img.OpenLayer(ctx, i)
	if err != nil {
		return err
	}
	_, _, err = store.ImportLayer(repo, img.Layers()[i].DiffID, r)
	// Close says whether the layer was the one the image names, also
	// when the import stopped early.
	if cerr := r.Close(); cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("%s: layer %d: %w", img.Source(), i, err)
	}
	return nil
}

// mergeLayers merges the stored image's layers, read from their streams,
// into a Builder; the files' content is in repo already, and is neither
// read nor written again (store.Merger).
func mergeLayers(repo *objects.Repository, diffIDs []string) (*oci.Builder, error) {
	b := oci.NewBuilder(nil)
	for _, d := range diffIDs {
		m, err := store.MergeLayer(repo, d)
		if err != nil {
			return nil, err
		}
		err = b.ApplyStoredLayer(m, m)
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", d, err)
		}
	}
	return b, nil
}

// createRepo opens the repository the global options name for writing,
// making it when missing, with --hash's algorithm or composefs-rs's
// default.
func (e *env) createRepo() (*objects.Repository, error) {
	dir, err := e.repoPath()
	if err != nil {
		return nil, err
	}
	alg, given, err := e.hashAlgorithm()
	if err != nil {
		return nil, err
	}
	if _, serr := os.Stat(filepath.Join(dir, "meta.json")); serr == nil && !given {
		return e.openRepo()
	}
	if !given {
		alg = verity.SHA512
	}
	return objects.CreateRepository(dir, alg)
}

// imageOf is the composefs image id of the image pulled as name, of the
// transform whose ref key is key.
func imageOf(r *objects.Repository, name, key string) ([]byte, error) {
	img, err := lookup(r, name)
	if err != nil {
		return nil, err
	}
	id := img.Images[key]
	if id == nil {
		return nil, fmt.Errorf("image %q: no composefs image %s in %s (pulled with other --xattrs or --no-transform?)", name, key, r.Path())
	}
	return id, nil
}
