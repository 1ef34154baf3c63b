// Package ocitest gives tests real OCI parts to work against: a registry
// (Debian's docker-registry) on a free port of 127.0.0.1, OCI image
// layouts built from tar layers, skopeo to copy between them, and
// builders for layer tars.
package ocitest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// RegistryPath is the CNCF distribution registry as Debian installs it.
const RegistryPath = "/usr/bin/docker-registry"

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
	if _, err := os.Stat(RegistryPath); err != nil {
		t.Skipf("%s not found (Debian package docker-registry)", RegistryPath)
	}
	// Another test run may take the free port between our closing it
	// and the registry's binding it: a registry that exits is retried.
	var lastErr error
	for range 5 {
		host, err := tryStartRegistry(t, htpasswd)
		if err == nil {
			return host
		}
		lastErr = err
	}
	t.Fatalf("docker-registry: %v", lastErr)
	return ""
}

func tryStartRegistry(t testing.TB, htpasswd string) (string, error) {
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	host := l.Addr().String()
	l.Close()
	auth := ""
	if htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: ocitest\n    path: %s\n", strconv.Quote(htpasswd))
	}
	conf := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
%s`, strconv.Quote(filepath.Join(dir, "storage")), host, auth)
	confPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return "", err
	}
	var log bytes.Buffer
	cmd := exec.Command(RegistryPath, "serve", confPath)
	// The registry reads REGISTRY_* variables as configuration (a test's
	// REGISTRY_AUTH_FILE would be its auth.file): it gets none of ours.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-exited:
			return "", fmt.Errorf("exited (%v) before answering: %s", err, log.String())
		default:
		}
		resp, err := client.Get("http://" + host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("no answer on %s/v2/ after 15s: %s", host, log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(stop)
	return host, nil
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
