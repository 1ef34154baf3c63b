package webserver

import (
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestStartNginx: two servers of one directory at once, each on a port of
// its own, serve its files byte for byte, answer 404 for what is not
// there, log each request, and are gone after Stop.
func TestStartNginx(t *testing.T) {
	root := t.TempDir()
	want := []byte("object bytes\x00\xff")
	if err := os.MkdirAll(filepath.Join(root, "ab"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "ab", "cdef"), want, 0o644); err != nil {
		t.Fatal(err)
	}
	var servers []*Nginx
	for range 2 {
		n, err := StartNginx(t.TempDir(), root)
		if errors.Is(err, ErrNotInstalled) {
			t.Skip(err)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer n.Stop()
		servers = append(servers, n)
	}
	if servers[0].Addr == servers[1].Addr {
		t.Fatalf("both servers on %s", servers[0].Addr)
	}
	for _, n := range servers {
		resp, err := http.Get(n.URL + "ab/cdef")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(got) != string(want) {
			t.Fatalf("GET ab/cdef: %s %q %v, want 200 %q", resp.Status, got, err, want)
		}
		resp, err = http.Get(n.URL + "ab/missing")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Fatalf("GET ab/missing: %s, want 404", resp.Status)
		}
		if got := logged(n, "", 2); got != 2 {
			t.Errorf("%d requests logged, want 2", got)
		}
		if got := n.Requests("/ab/cdef"); got != 1 {
			t.Errorf("%d requests for /ab/cdef logged, want 1", got)
		}
	}
	servers[0].Stop()
	if _, err := http.Get(servers[0].URL + "ab/cdef"); err == nil {
		t.Errorf("%s still answers after Stop", servers[0].URL)
	}
}

// logged is n.Requests(substr) once it reaches want, or after 5 s: nginx
// writes a request's line after its answer has gone.
func logged(n *Nginx, substr string, want int) int {
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := n.Requests(substr)
		if got >= want || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}
