package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/composefs/composefs-go/internal/cli"
	"github.com/composefs/composefs-go/verity"
)

// The repository locations composefs-rs's cfsctl uses: under the home
// directory for --user, the one a composefs system boots from for
// --system.
const (
	userRepoPath   = ".var/lib/composefs" // below $HOME
	systemRepoPath = "/sysroot/composefs"
)

// globals are the options before the command's name.
type globals struct {
	repo         string
	user, system bool
	hash         string
	log          *cli.LogHandler
}

func (g *globals) define(c *cli.Command) {
	c.Flags.StringVar(&g.repo, "repo", "", "the repository `DIR`")
	c.Flags.BoolVar(&g.user, "user", false, "the repository in ~/.var/lib/composefs (the default when not root)")
	c.Flags.BoolVar(&g.system, "system", false, "the repository in /sysroot/composefs (the default for root)")
	c.Flags.StringVar(&g.hash, "hash", "", "fs-verity `ALG` of a repository made now, sha256 or sha512; one that exists must match (default from meta.json, else sha512)")
}

// env is what a command runs with: the global options and where its
// output goes.
type env struct {
	globals
	stdout, stderr io.Writer
	// name is the command as typed, for messages: "cfsctl oci pull".
	name string
}

// repoPath is the repository's directory as the global options say.
func (g *globals) repoPath() (string, error) {
	set := 0
	for _, b := range []bool{g.repo != "", g.user, g.system} {
		if b {
			set++
		}
	}
	if set > 1 {
		return "", cli.Usagef("--repo, --user and --system exclude each other")
	}
	switch {
	case g.repo != "":
		return g.repo, nil
	case g.system:
		return systemRepoPath, nil
	case g.user:
		return userRepo()
	case os.Geteuid() == 0:
		return systemRepoPath, nil
	}
	return userRepo()
}

func userRepo() (string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("--user: %w", err)
	}
	return filepath.Join(home, userRepoPath), nil
}

// hashAlgorithm is --hash's algorithm, with ok false when it was not given.
func (g *globals) hashAlgorithm() (alg verity.Algorithm, ok bool, err error) {
	if g.hash == "" {
		return 0, false, nil
	}
	if alg, err = verity.ParseAlgorithm(g.hash); err != nil {
		return 0, false, cli.Usagef("--hash: %v", err)
	}
	return alg, true, nil
}

// errNoRepo is wrapped when the repository a command reads does not exist.
var errNoRepo = errors.New("no repository here (cfsctl init makes one; oci pull makes one too)")
