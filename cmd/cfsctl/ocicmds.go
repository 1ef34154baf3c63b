package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/oci"
	"github.com/composefs/composefs-go/oci/store"
	"github.com/composefs/composefs-go/verity"
)

// The commands on pulled images other than pull and mount.
func init() {
	register(ociGroup, &command{
		name: "images", maxArgs: 0,
		summary: "list the pulled images",
		about: `List the images pulled into the repository: each name, its manifest
digest and its composefs image id, sorted by name.`,
		setup: setupOCIImages,
	})
	register(ociGroup, &command{
		name: "inspect", args: "NAME", minArgs: 1, maxArgs: 1,
		summary: "print an image's manifest and config",
		about: `Print the image pulled as NAME (or @sha256:DIGEST, its manifest's digest)
as JSON: its name, digests, composefs image id (composefs-rs's transform),
the composefs images of every transform pulled (by ref key), manifest and
config; with --manifest or --config only that document, as it was pulled.`,
		setup: setupInspect,
	})
	register(ociGroup, &command{
		name: "tag", args: "MANIFEST-DIGEST NAME", minArgs: 2, maxArgs: 2,
		summary: "name a pulled image",
		about: `Name the image whose manifest digest is MANIFEST-DIGEST (sha256:HEX) NAME
too, replacing what NAME named.`,
		setup: setupTag,
	})
	register(ociGroup, &command{
		name: "untag", args: "NAME", minArgs: 1, maxArgs: 1,
		summary: "remove an image's name",
		about: `Remove the name NAME. The image stays in the repository until gc finds
it has no name left.`,
		setup: setupUntag,
	})
	register(ociGroup, &command{
		name: "dump", args: "NAME", minArgs: 1, maxArgs: 1,
		summary: "print an image's root filesystem as a dumpfile",
		about: `Print the root filesystem of the image pulled as NAME, its layers merged
and transformed as the options say, as a composefs dumpfile, one line an
entry: for debugging whiteouts, hardlinks and xattrs. "mkcomposefs
--from-file" makes the image of it.`,
		setup: setupDump,
	})
	register(ociGroup, &command{
		name: "compute-id", args: "NAME", minArgs: 1, maxArgs: 1,
		summary: "print the composefs image id of an image",
		about: `Print the composefs image id (the fs-verity digest of the image) that the
image pulled as NAME has with the transform the options say, in the
repository's image format, without writing anything.`,
		setup: setupComputeID,
	})
}

func setupOCIImages(c *cli.Command) func(*env, []string) error {
	var asJSON bool
	c.Flags.BoolVar(&asJSON, "json", false, "print a JSON array of {name, manifest, image} objects")
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		images, err := store.List(r)
		if err != nil {
			return err
		}
		type row struct {
			Name     string `json:"name"`
			Manifest string `json:"manifest"`
			Image    string `json:"image"`
		}
		rows := make([]row, 0, len(images))
		for _, img := range images {
			rows = append(rows, row{img.Name, img.ManifestDigest, hex.EncodeToString(img.ImageRefs[r.ErofsVersion()])})
		}
		if asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(rows)
		}
		w := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tMANIFEST\tIMAGE ID")
		for _, r := range rows {
			fmt.Fprintf(w, "%s\t%s\t%s\n", r.Name, r.Manifest, r.Image)
		}
		return w.Flush()
	}
}

func setupInspect(c *cli.Command) func(*env, []string) error {
	var manifest, config bool
	c.Flags.BoolVar(&manifest, "manifest", false, "print only the manifest, as pulled")
	c.Flags.BoolVar(&config, "config", false, "print only the config, as pulled")
	return func(e *env, args []string) error {
		if manifest && config {
			return cli.Usagef("--manifest and --config exclude each other")
		}
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		img, err := lookup(r, args[0])
		if err != nil {
			return err
		}
		m, err := store.Manifest(r, img.ManifestDigest)
		if err != nil {
			return err
		}
		c, err := store.Config(r, img.ConfigDigest)
		if err != nil {
			return err
		}
		switch {
		case manifest:
			_, err = e.stdout.Write(m)
			return err
		case config:
			_, err = e.stdout.Write(c)
			return err
		}
		images := map[string]string{}
		for k, id := range img.Images {
			images[k] = hex.EncodeToString(id)
		}
		out := struct {
			Name     string            `json:"name,omitempty"`
			Manifest string            `json:"manifest_digest"`
			Config   string            `json:"config_digest"`
			Image    string            `json:"image_id,omitempty"`
			Images   map[string]string `json:"images"`
			M        json.RawMessage   `json:"manifest"`
			C        json.RawMessage   `json:"config"`
		}{img.Name, img.ManifestDigest, img.ConfigDigest, hex.EncodeToString(img.ImageRefs[r.ErofsVersion()]), images, m, c}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
}

func setupTag(c *cli.Command) func(*env, []string) error {
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		return store.Tag(r, args[0], args[1])
	}
}

func setupUntag(c *cli.Command) func(*env, []string) error {
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		return store.Untag(r, args[0])
	}
}

func setupDump(c *cli.Command) func(*env, []string) error {
	var tf transformFlags
	tf.define(c)
	return func(e *env, args []string) error {
		return withMerged(e, &tf, args[0], func(r *objects.Repository, b *oci.Builder, t oci.Transform) error {
			entries, err := b.Entries(t)
			if err != nil {
				return err
			}
			return dumpfile.WriteAll(e.stdout, entries)
		})
	}
}

func setupComputeID(c *cli.Command) func(*env, []string) error {
	var tf transformFlags
	tf.define(c)
	return func(e *env, args []string) error {
		return withMerged(e, &tf, args[0], func(r *objects.Repository, b *oci.Builder, t oci.Transform) error {
			image, err := b.Image(t, r.ErofsVersion())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, hex.EncodeToString(verity.DigestBytes(r.Algorithm(), image)))
			return err
		})
	}
}

// withMerged runs do on the layers of the image pulled as name, merged,
// and the transform the options say.
func withMerged(e *env, tf *transformFlags, name string, do func(*objects.Repository, *oci.Builder, oci.Transform) error) error {
	t, err := tf.transform()
	if err != nil {
		return err
	}
	r, err := e.openRepo()
	if err != nil {
		return err
	}
	defer r.Close()
	b, err := merged(r, name)
	if err != nil {
		return err
	}
	return transformHint(do(r, b, t))
}

// merged merges the layers of the image pulled as name.
func merged(r *objects.Repository, name string) (*oci.Builder, error) {
	img, err := lookup(r, name)
	if err != nil {
		return nil, err
	}
	return mergeLayers(r, img.DiffIDs)
}

// lookup finds an image by name, or by its manifest digest as
// "@sha256:HEX", as composefs-rs's cfsctl takes them.
func lookup(r *objects.Repository, name string) (*store.Image, error) {
	if d, ok := strings.CutPrefix(name, "@"); ok {
		return store.Open(r, d)
	}
	return store.Resolve(r, name)
}
