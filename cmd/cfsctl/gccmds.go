package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/composefs/composefs-go/composefs"
	"github.com/composefs/composefs-go/internal/cli"
)

// gc and fsck, composefs-rs's repository maintenance commands.
func init() {
	register(nil, &command{
		name: "gc", maxArgs: 0,
		summary: "remove the objects no image or stream ref reaches",
		about: `Remove every object that no named image (images/refs/) and no named
stream (streams/refs/, with the streams and objects it references) reaches,
then the links of images/ and streams/ left broken, and the temporary files
of writers that died. It waits, up to --wait, for every other cfsctl (or
composefs-rs) process that has the repository open to close it, and they
wait for it; running mounts do not hold it. Prints what it removed: objects
and bytes, image and stream links, temporary files.`,
		setup: setupGC,
	})
	register(nil, &command{
		name: "fsck", maxArgs: 0,
		summary: "check the repository's objects, streams, images and refs",
		about: `Check meta.json, every object's fs-verity digest against its name,
every link of images/ and streams/ and their refs/, every stream and image
(parsed, and the objects they name present). Prints the counts, then one line
per problem; the exit status is 1 when there is any. Changes nothing.`,
		setup: setupFsck,
	})
}

func setupGC(c *cli.Command) func(*env, []string) error {
	var dryRun bool
	var wait time.Duration
	c.Flags.BoolVar(&dryRun, "dry-run", false, "only say what would be removed")
	c.Flags.DurationVar(&wait, "wait", time.Minute, "wait up to `DURATION` for other processes to close the repository")
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		ctx, stop := interruptible()
		defer stop()
		ctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		res, err := r.GC(ctx, dryRun, composefs.ImageObjects)
		if err != nil {
			return err
		}
		verb := "removed"
		if dryRun {
			verb = "would remove"
		}
		fmt.Fprintf(e.stdout, "%s %d objects (%d bytes), %d image links, %d stream links, %d temporary files\n",
			verb, res.ObjectsRemoved, res.ObjectsBytes, res.ImagesPruned, res.StreamsPruned, res.TempsRemoved)
		return nil
	}
}

func setupFsck(c *cli.Command) func(*env, []string) error {
	var asJSON, metadataOnly bool
	c.Flags.BoolVar(&asJSON, "json", false, "print the result as a JSON object")
	c.Flags.BoolVar(&metadataOnly, "metadata-only", false, "skip computing the objects' digests")
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		res, err := r.Fsck(!metadataOnly, composefs.ImageObjects)
		if err != nil {
			return err
		}
		if asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(res); err != nil {
				return err
			}
		} else {
			if !metadataOnly {
				fmt.Fprintf(e.stdout, "objects: %d/%d ok\n", res.ObjectsChecked-res.ObjectsCorrupted, res.ObjectsChecked)
			}
			fmt.Fprintf(e.stdout, "streams: %d/%d ok\n", res.StreamsChecked-res.StreamsCorrupted, res.StreamsChecked)
			fmt.Fprintf(e.stdout, "images: %d/%d ok\n", res.ImagesChecked-res.ImagesCorrupted, res.ImagesChecked)
			fmt.Fprintf(e.stdout, "broken links: %d, missing objects: %d\n", res.BrokenLinks, res.MissingObjects)
			for _, p := range res.Problems {
				fmt.Fprintln(e.stdout, p)
			}
		}
		if !res.OK() {
			return exitStatus(1)
		}
		return nil
	}
}
