// Package storetest serves object stores over HTTP for tests: a real
// nginx started on 127.0.0.1 with a configuration of its own, and a
// proxy in front of it that injects faults (delays, truncated or
// corrupted bodies, dropped connections, server errors).
package storetest

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NginxPath is where Debian's nginx (package nginx-light) installs it.
const NginxPath = "/usr/sbin/nginx"

// Nginx is an nginx serving a directory, started by a test.
type Nginx struct {
	URL  string // http://127.0.0.1:PORT/
	Addr string // 127.0.0.1:PORT
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// StartNginx serves root on a free port of 127.0.0.1 until the test ends
// (or Stop). Its configuration, pid file, logs and temporary paths are in
// a directory of the test's; it runs in the foreground as one process,
// a child stopped by its pid. The test is skipped when nginx is missing.
func StartNginx(t testing.TB, root string) *Nginx {
	t.Helper()
	if _, err := os.Stat(NginxPath); err != nil {
		t.Skipf("%s not installed (Debian package nginx-light)", NginxPath)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	for range 5 {
		n, err := startNginx(t, abs)
		if err == nil {
			t.Cleanup(n.Stop)
			return n
		}
		last = err // most likely the port, taken between probe and bind
	}
	t.Fatalf("nginx: %v", last)
	return nil
}

func startNginx(t testing.TB, root string) (*Nginx, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	conf := fmt.Sprintf(`daemon off;
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
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return nil, err
	}
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
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return nil, fmt.Errorf("exited at once: %s %s", strings.TrimSpace(stderr.String()), strings.TrimSpace(string(log)))
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return n, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.Stop()
	return nil, fmt.Errorf("not listening on %s after 10 s", addr)
}

// Stop kills nginx, by its pid, and waits for it.
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

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ReadyClient is an HTTP client for checking a server from a test.
var ReadyClient = &http.Client{Timeout: 10 * time.Second}
