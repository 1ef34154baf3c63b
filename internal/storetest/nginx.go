// Package storetest serves object stores over HTTP for tests: a real
// nginx started on 127.0.0.1 with a configuration of its own (package
// webserver), and a proxy in front of it that injects faults (delays,
// truncated or corrupted bodies, dropped connections, server errors).
package storetest

import (
	"errors"
	"testing"

	"github.com/composefs/composefs-go/internal/webserver"
)

// Nginx is an nginx serving a directory, started by a test.
type Nginx = webserver.Nginx

// StartNginx serves root on a free port of 127.0.0.1 until the test ends.
// Its configuration, pid file, logs and temporary paths are in a
// directory of the test's. The test is skipped when nginx is missing.
func StartNginx(t testing.TB, root string) *Nginx {
	t.Helper()
	n, err := webserver.StartNginx(t.TempDir(), root)
	if errors.Is(err, webserver.ErrNotInstalled) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}
