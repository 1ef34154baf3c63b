// Package registry runs Debian's docker-registry (the CNCF distribution
// registry) on a free port of 127.0.0.1 over plain HTTP, its
// configuration and storage in a directory of the caller's, for tests and
// the benchmark that need a real registry to push to and pull from.
package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Path is the registry's binary as Debian installs it (package
// docker-registry).
const Path = "/usr/bin/docker-registry"

// ErrNotInstalled is returned when there is no registry at Path.
var ErrNotInstalled = errors.New(Path + " not found (Debian package docker-registry)")

// readyWithin is how long a started registry has to answer on /v2/.
const readyWithin = 15 * time.Second

// tries is how often a registry is started when it exits at once: another
// process may bind the free port found between its closing and the
// registry's binding it.
const tries = 5

// Start runs a registry that anyone may push to and pull from, its
// config.yml, log and storage in dir (made if missing), and returns its
// HOST:PORT once it answers, with stop, which ends it and waits for it to
// go. The registry is also killed when the thread that started it exits,
// so a caller that dies leaves none behind.
func Start(dir string) (host string, stop func() error, err error) {
	return start(dir, "")
}

// StartWithAuth is Start with HTTP basic auth: the registry takes only the
// users of htpasswd, an htpasswd file of bcrypt hashes.
func StartWithAuth(dir, htpasswd string) (host string, stop func() error, err error) {
	if htpasswd == "" {
		return "", nil, errors.New("registry: no htpasswd file given")
	}
	return start(dir, htpasswd)
}

func start(dir, htpasswd string) (string, func() error, error) {
	if _, err := os.Stat(Path); err != nil {
		return "", nil, ErrNotInstalled
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("registry: %w", err)
	}
	var lastErr error
	for range tries {
		host, stop, err := tryStart(dir, htpasswd)
		if err == nil {
			return host, stop, nil
		}
		lastErr = err
	}
	return "", nil, fmt.Errorf("docker-registry: %w", lastErr)
}

// Config is the registry's configuration: storage below dir, listening on
// host, with basic auth from htpasswd when it is not "".
func Config(dir, host, htpasswd string) string {
	auth := ""
	if htpasswd != "" {
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: composefs-go\n    path: %s\n", strconv.Quote(htpasswd))
	}
	return fmt.Sprintf(`version: 0.1
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
}

// freePort is a HOST:PORT of 127.0.0.1 that nothing listened on a moment
// ago.
func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	host := l.Addr().String()
	return host, l.Close()
}

func tryStart(dir, htpasswd string) (string, func() error, error) {
	host, err := freePort()
	if err != nil {
		return "", nil, err
	}
	confPath := filepath.Join(dir, "config.yml")
	if err := writeFile(confPath, []byte(Config(dir, host, htpasswd))); err != nil {
		return "", nil, err
	}
	logPath := filepath.Join(dir, "registry.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return "", nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(Path, "serve", confPath)
	// The registry reads REGISTRY_* variables as configuration (a
	// REGISTRY_AUTH_FILE meant for skopeo would be its auth.file): it
	// gets none of ours.
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(5 * time.Second):
				cmd.Process.Kill()
				<-exited
				stopErr = fmt.Errorf("docker-registry (pid %d) did not end on SIGTERM within 5s: killed", cmd.Process.Pid)
			}
		})
		return stopErr
	}
	deadline := time.Now().Add(readyWithin)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-exited:
			return "", nil, fmt.Errorf("exited (%v) before answering on %s: %s", cmd.ProcessState, host, logTail(logPath))
		default:
		}
		if ready(client, host) {
			return host, stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return "", nil, fmt.Errorf("no answer on http://%s/v2/ after %v: %s", host, readyWithin, logTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ready reports whether a registry answers on host: /v2/ says 200, or
// 401 when it wants credentials.
func ready(client *http.Client, host string) bool {
	resp, err := client.Get("http://" + host + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized
}

// writeFile writes a file whole or leaves what was there.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// logTail is the last lines of the registry's log, for an error.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	return strings.Join(lines, "\n")
}
