// Package ocitest gives tests real OCI parts to work against: a registry
// (Debian's docker-registry) on a free port of 127.0.0.1, OCI image
// layouts built from tar layers, skopeo to copy between them, and
// builders for layer tars.
package ocitest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/composefs/composefs-go/internal/registry"
)

// RegistryPath is the CNCF distribution registry as Debian installs it.
const RegistryPath = registry.Path

// StartRegistry runs a registry that anyone may push to and pull from,
// over plain HTTP on 127.0.0.1, storing in a temporary directory, and
// returns its HOST:PORT. It is stopped when the test ends. The test is
// skipped when docker-registry is not installed.
func StartRegistry(t testing.TB) string {
	return startRegistry(t, "")
}

// StartRegistryWithAuth runs a registry like StartRegistry's that wants
// user and password (HTTP basic auth from an htpasswd file). The bcrypt
// hash is made by htpasswd (apache2-utils) or, failing that, perl's crypt
// (libxcrypt); the test is skipped when neither can.
func StartRegistryWithAuth(t testing.TB, user, password string) string {
	line, err := htpasswdLine(user, password)
	if err != nil {
		t.Skipf("cannot make a bcrypt htpasswd entry (install apache2-utils): %v", err)
	}
	file := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(file, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return startRegistry(t, file)
}

func startRegistry(t testing.TB, htpasswd string) string {
	t.Helper()
	var (
		host string
		stop func() error
		err  error
	)
	if htpasswd == "" {
		host, stop, err = registry.Start(t.TempDir())
	} else {
		host, stop, err = registry.StartWithAuth(t.TempDir(), htpasswd)
	}
	if errors.Is(err, registry.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	})
	return host
}

// htpasswdLine returns "user:bcrypt-hash" for the registry's htpasswd.
func htpasswdLine(user, password string) (string, error) {
	if _, err := exec.LookPath("htpasswd"); err == nil {
		out, err := exec.Command("htpasswd", "-nbB", user, password).Output()
		if err != nil {
			return "", fmt.Errorf("htpasswd: %v", err)
		}
		return string(bytes.TrimSpace(out)), nil
	}
	perl, err := exec.LookPath("perl")
	if err != nil {
		return "", fmt.Errorf("neither htpasswd nor perl is installed")
	}
	// perl's crypt is libc's, which (libxcrypt) knows bcrypt: $2b$.
	salt := "$2b$05$" + "composefsgoocitestsalu"
	out, err := exec.Command(perl, "-e", `print crypt($ARGV[0], $ARGV[1])`, password, salt).Output()
	if err != nil {
		return "", fmt.Errorf("perl crypt: %v", err)
	}
	if !bytes.HasPrefix(out, []byte("$2b$05$")) || len(out) != 60 {
		return "", fmt.Errorf("perl's crypt has no bcrypt (gave %q)", out)
	}
	return user + ":" + string(out), nil
}
