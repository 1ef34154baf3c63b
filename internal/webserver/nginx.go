// Package webserver runs Debian's nginx on a free port of 127.0.0.1,
// serving a directory as static files over plain HTTP, its configuration,
// logs and temporary paths in a directory of the caller's: for the tests
// and the benchmark that fetch objects from a real web server.
package webserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// NginxPath is where Debian's nginx (package nginx-light) installs it.
const NginxPath = "/usr/sbin/nginx"

// ErrNotInstalled is returned when there is no nginx at NginxPath.
var ErrNotInstalled = errors.New(NginxPath + " not found (Debian package nginx-light)")

// tries is how often nginx is started when it does not come up: another
// process may bind the free port between its probe and nginx's bind.
const tries = 5

// readyWithin is how long a started nginx has to accept a connection.
const readyWithin = 10 * time.Second

// Nginx is a running nginx serving a directory.
type Nginx struct {
	URL  string // http://127.0.0.1:PORT/
	Addr string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartNginx serves root on a free port of 127.0.0.1 until Stop, its
// configuration, pid file, logs and temporary paths in dir (made when
// missing). It runs in the foreground as one process, a child stopped by
// its pid, and is killed too when the thread that started it exits, so a
// caller that dies leaves none behind.
func StartNginx(dir, root string) (*Nginx, error) {
	if _, err := os.Stat(NginxPath); err != nil {
		return nil, ErrNotInstalled
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("nginx: %w", err)
	}
	var last error
	for range tries {
		n, err := start(dir, abs)
		if err == nil {
			return n, nil
		}
		last = err
	}
	return nil, fmt.Errorf("nginx: %w", last)
}

// Config is the configuration of an nginx listening on addr and serving
// root as static files, everything it writes kept in dir. Connections are
// kept open for as many requests as a client sends: a store fetches one
// object a request.
func Config(dir, addr, root string) string {
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 512; }
http {
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	default_type application/octet-stream;
	sendfile on;
	keepalive_requests 100000;
	server {
		listen %[2]s;
		root %[3]s;
		location / { }
	}
}
`, dir, addr, root)
}

func start(dir, root string) (*Nginx, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(Config(dir, addr, root)), 0o600); err != nil {
		return nil, err
	}
	// A log of an earlier try, or an earlier server in dir, would count
	// in Requests.
	os.Remove(filepath.Join(dir, "access.log"))
	var stderr bytes.Buffer
	cmd := exec.Command(NginxPath, "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	n := &Nginx{URL: "http://" + addr + "/", Addr: addr, dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(n.done)
	}()
	deadline := time.Now().Add(readyWithin)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("exited at once: %s %s", strings.TrimSpace(stderr.String()), lastLine(log))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return n, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Stop()
	return nil, fmt.Errorf("not listening on %s after %v", addr, readyWithin)
}

// Stop kills nginx, by its pid, and waits for it to go.
func (n *Nginx) Stop() {
	select {
	case <-n.done:
		return
	default:
	}
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.done
}

// Requests counts the requests in the access log whose line contains
// substr ("" for all). nginx writes the line once the answer is sent.
func (n *Nginx) Requests(substr string) int {
	data, _ := os.ReadFile(filepath.Join(n.dir, "access.log"))
	c := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		if line != "" && strings.Contains(line, substr) {
			c++
		}
	}
	return c
}

// freeAddr is a HOST:PORT of 127.0.0.1 that nothing listened on a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// lastLine is the last line of a log, for an error.
func lastLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
