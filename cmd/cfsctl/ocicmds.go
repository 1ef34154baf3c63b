package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/composefs/composefs-go/dumpfile"
	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/oci"
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
as JSON: its name, digests, composefs image id, manifest and config; with
--manifest or --config only that document, as it was pulled.`,
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
		tags, err := oci.Tags(r)
		if err != nil {
			return err
		}
		names := make([]string, 0, len(tags))
		for n := range tags {
			names = append(names, n)
		}
		sort.Strings(names)
		type row struct {
			Name     string `json:"name"`
			Manifest string `json:"manifest"`
			Image    string `json:"image"`
		}
		rows := make([]row, 0, len(names))
		for _, n := range names {
			img, err := oci.LookupImage(r, n)
			if err != nil {
				return err
			}
			rows = append(rows, row{n, img.ManifestDigest, hex.EncodeToString(img.ImageID)})
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
		img, err := oci.LookupImage(r, args[0])
		if err != nil {
			return err
		}
		switch {
		case manifest:
			_, err = e.stdout.Write(img.Manifest)
			return err
		case config:
			_, err = e.stdout.Write(img.Config)
			return err
		}
		out := struct {
			Name     string          `json:"name,omitempty"`
			Manifest string          `json:"manifest_digest"`
			Config   string          `json:"config_digest"`
			Image    string          `json:"image_id,omitempty"`
			M        json.RawMessage `json:"manifest"`
			C        json.RawMessage `json:"config"`
		}{img.Tag, img.ManifestDigest, img.ConfigDigest, hex.EncodeToString(img.ImageID), img.Manifest, img.Config}
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
		// Found and checked by its digest first: a tag names an image
		// that is there.
		if _, err := oci.LookupImage(r, "@"+args[0]); err != nil {
			return err
		}
		return r.NameStream("oci-manifest-"+args[0], oci.TagRef(args[1]))
	}
}

func setupUntag(c *cli.Command) func(*env, []string) error {
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		return r.UnnameStream(oci.TagRef(args[0]))
	}
}

func setupDump(c *cli.Command) func(*env, []string) error {
	var tf transformFlags
	tf.define(c)
	return func(e *env, args []string) error {
		t, err := tf.transform()
		if err != nil {
			return err
		}
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := merged(r, args[0])
		if err != nil {
			return err
		}
		entries, err := b.Entries(t)
		if err != nil {
			return err
		}
		return dumpfile.WriteAll(e.stdout, entries)
	}
}

func setupComputeID(c *cli.Command) func(*env, []string) error {
	var tf transformFlags
	tf.define(c)
	return func(e *env, args []string) error {
		t, err := tf.transform()
		if err != nil {
			return err
		}
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		b, err := merged(r, args[0])
		if err != nil {
			return err
		}
		image, err := b.Image(t, r.ErofsVersion())
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, hex.EncodeToString(verity.DigestBytes(r.Algorithm(), image)))
		return err
	}
}

// merged merges the layers of the image pulled as name.
func merged(r *objects.Repository, name string) (*oci.Builder, error) {
	img, err := oci.LookupImage(r, name)
	if err != nil {
		return nil, err
	}
	return img.Merge(r)
}
