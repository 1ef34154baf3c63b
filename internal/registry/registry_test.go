package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func startOrSkip(t *testing.T, dir string) (string, func() error) {
	t.Helper()
	host, stop, err := Start(dir)
	if errors.Is(err, ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	return host, stop
}

// TestStart: two registries started at once answer on ports of their own,
// keep what is pushed to them in their own directory, and are gone once
// stopped.
func TestStart(t *testing.T) {
	dirs := []string{t.TempDir(), t.TempDir()}
	hosts := make([]string, 2)
	stops := make([]func() error, 2)
	for i, d := range dirs {
		hosts[i], stops[i] = startOrSkip(t, d)
		if !strings.HasPrefix(hosts[i], "127.0.0.1:") {
			t.Errorf("registry %d listens on %s, not on 127.0.0.1", i, hosts[i])
		}
	}
	if hosts[0] == hosts[1] {
		t.Fatalf("both registries on %s", hosts[0])
	}
	blob := []byte("a blob pushed to the first registry\n")
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	pushBlob(t, hosts[0], "bench/x", digest, blob)

	for i, h := range hosts {
		resp, err := http.Head("http://" + h + "/v2/bench/x/blobs/" + digest)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := map[int]int{0: http.StatusOK, 1: http.StatusNotFound}[i]
		if resp.StatusCode != want {
			t.Errorf("registry %d: HEAD of the blob: %s, want %d", i, resp.Status, want)
		}
	}
	data := filepath.Join(dirs[0], "storage", "docker", "registry", "v2", "blobs", "sha256", digest[7:9], digest[7:], "data")
	if got, err := os.ReadFile(data); err != nil || !bytes.Equal(got, blob) {
		t.Errorf("the pushed blob in %s: %q, %v", data, got, err)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "config.yml")); err != nil {
		t.Errorf("no config beside the storage: %v", err)
	}

	if err := stops[0](); err != nil {
		t.Errorf("stop: %v", err)
	}
	if err := stops[0](); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if ready(&http.Client{}, hosts[0]) {
		t.Errorf("registry on %s still answers after stop", hosts[0])
	}
	if !ready(&http.Client{}, hosts[1]) {
		t.Errorf("stopping the first registry took down the second on %s", hosts[1])
	}
}

// pushBlob uploads blob to repo on host in one monolithic PUT.
func pushBlob(t *testing.T, host, repo, digest string, blob []byte) {
	t.Helper()
	resp, err := http.Post("http://"+host+"/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusAccepted || loc == "" {
		t.Fatalf("starting an upload: %s, Location %q", resp.Status, loc)
	}
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	if strings.HasPrefix(loc, "/") {
		loc = "http://" + host + loc
	}
	req, err := http.NewRequest(http.MethodPut, loc+sep+"digest="+digest, bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("finishing the upload: %s", resp.Status)
	}
}

// TestStartBadDir: a directory that cannot be made is an error, not a
// registry started without storage.
func TestStartBadDir(t *testing.T) {
	if _, err := os.Stat(Path); err != nil {
		t.Skip(ErrNotInstalled)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stop, err := Start(filepath.Join(file, "sub")); err == nil {
		stop()
		t.Fatal("Start below a regular file succeeded")
	}
	if _, _, err := StartWithAuth(t.TempDir(), ""); err == nil {
		t.Fatal("StartWithAuth without an htpasswd file succeeded")
	}
}

func TestConfig(t *testing.T) {
	plain := Config("/d", "127.0.0.1:5000", "")
	if !strings.Contains(plain, `rootdirectory: "/d/storage"`) || !strings.Contains(plain, "addr: 127.0.0.1:5000") || strings.Contains(plain, "auth:") {
		t.Errorf("config without auth:\n%s", plain)
	}
	auth := Config("/d", "127.0.0.1:5000", "/h/htpasswd")
	if !strings.Contains(auth, `path: "/h/htpasswd"`) {
		t.Errorf("config with auth names no htpasswd:\n%s", auth)
	}
}
