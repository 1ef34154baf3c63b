package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/objects"
	"github.com/composefs/composefs-go/verity"
)

// The commands on the repository itself, beside the OCI ones.
func init() {
	register(nil, &command{
		name: "init", args: "[PATH]", maxArgs: 1,
		summary: "make a repository (meta.json)",
		about: `Make a composefs repository at PATH, or where the global options say:
the directory (0700, made with its parents when missing) and its meta.json,
which records the fs-verity algorithm of its objects and the format of its
images. A repository that exists with the same algorithm is left as it is.`,
		setup: setupInit,
	})
	register(nil, &command{
		name: "images", maxArgs: 0,
		summary: "list the named images",
		about: `List the repository's named images (images/refs/), a name and the
image's id a line, sorted by name.`,
		setup: setupImages,
	})
}

func setupInit(c *cli.Command) func(*env, []string) error {
	var algorithm string
	c.Flags.StringVar(&algorithm, "algorithm", "", "the fs-verity `ALG` of the objects, as composefs-rs spells it (fsverity-sha512-12, fsverity-sha256-12) or sha256, sha512 (default sha512, or --hash)")
	return func(e *env, args []string) error {
		alg, err := initAlgorithm(algorithm, &e.globals)
		if err != nil {
			return err
		}
		dir := ""
		if len(args) == 1 {
			dir = args[0]
		} else if dir, err = e.repoPath(); err != nil {
			return err
		}
		r, err := objects.CreateRepository(dir, alg)
		if err != nil {
			return err
		}
		return r.Close()
	}
}

// initAlgorithm is the algorithm of a repository init makes: --algorithm,
// else the global --hash, else composefs-rs's default, sha512.
func initAlgorithm(flag string, g *globals) (verity.Algorithm, error) {
	global, given, err := g.hashAlgorithm()
	if err != nil {
		return 0, err
	}
	if flag == "" {
		if given {
			return global, nil
		}
		return verity.SHA512, nil
	}
	alg, err := verity.ParseAlgorithm(strings.TrimSuffix(strings.TrimPrefix(flag, "fsverity-"), "-12"))
	if err != nil {
		return 0, cli.Usagef("--algorithm %q: want fsverity-sha256-12 or fsverity-sha512-12", flag)
	}
	if given && global != alg {
		return 0, cli.Usagef("--algorithm %s and --hash %s disagree", flag, g.hash)
	}
	return alg, nil
}

func setupImages(c *cli.Command) func(*env, []string) error {
	var asJSON bool
	c.Flags.BoolVar(&asJSON, "json", false, "print a JSON array of {name, digest} objects")
	return func(e *env, args []string) error {
		r, err := e.openRepo()
		if err != nil {
			return err
		}
		defer r.Close()
		refs, err := r.Refs()
		if err != nil {
			return err
		}
		names := make([]string, 0, len(refs))
		for n := range refs {
			names = append(names, n)
		}
		sort.Strings(names)
		if asJSON {
			type image struct {
				Name   string `json:"name"`
				Digest string `json:"digest"`
			}
			list := make([]image, 0, len(names))
			for _, n := range names {
				list = append(list, image{n, hex.EncodeToString(refs[n])})
			}
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(list)
		}
		w := tabwriter.NewWriter(e.stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(w, "NAME\tIMAGE ID")
		for _, n := range names {
			fmt.Fprintf(w, "%s\t%s\n", n, hex.EncodeToString(refs[n]))
		}
		return w.Flush()
	}
}

// openRepo opens the repository the global options name, for reading; a
// missing one is an error that says how to make one.
func (e *env) openRepo() (*objects.Repository, error) {
	dir, err := e.repoPath()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", dir, errNoRepo)
	}
	r, err := objects.OpenRepository(dir)
	if err != nil {
		return nil, err
	}
	if want, given, err := e.hashAlgorithm(); err != nil || given && want != r.Algorithm() {
		r.Close()
		if err == nil {
			err = fmt.Errorf("%s: its objects are %s, not --hash %s", dir, r.Algorithm(), e.hash)
		}
		return nil, err
	}
	return r, nil
}
