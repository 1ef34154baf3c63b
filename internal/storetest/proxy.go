package storetest

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Fault is what the proxy does to one request.
type Fault struct {
	Delay    time.Duration // before the answer's header
	Status   int           // answer this status instead of forwarding
	Drop     bool          // close the connection without an answer
	Truncate bool          // send half the body, then close the connection
	Corrupt  bool          // flip one byte of the body
	Stall    bool          // send half the body, then nothing until the client gives up
}

// FaultFunc decides the fault for a request; n counts the requests for
// the same path, from 1. The zero Fault forwards the request as it is.
type FaultFunc func(r *http.Request, n int) Fault

// Proxy forwards requests to an upstream server, injecting faults.
type Proxy struct {
	URL      string
	upstream string
	fault    atomic.Pointer[FaultFunc]
	mu       sync.Mutex
	counts   map[string]int
	total    atomic.Int64
	srv      *http.Server
	client   *http.Client
}

// StartProxy serves on a free port of 127.0.0.1, forwarding to the
// server at upstream ("http://HOST:PORT/") until the test ends.
func StartProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{
		URL:      "http://" + l.Addr().String() + "/",
		upstream: upstream,
		counts:   map[string]int{},
		client:   &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}},
	}
	p.srv = &http.Server{Handler: p}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

// SetFault sets what is done to the requests from now on (nil: nothing).
func (p *Proxy) SetFault(f FaultFunc) {
	if f == nil {
		p.fault.Store(nil)
		return
	}
	p.fault.Store(&f)
}

// Requests is how many requests came for path ("" for all).
func (p *Proxy) Requests(path string) int {
	if path == "" {
		return int(p.total.Load())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[path]
}

func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.total.Add(1)
	p.mu.Lock()
	p.counts[r.URL.Path]++
	n := p.counts[r.URL.Path]
	p.mu.Unlock()
	var f Fault
	if fp := p.fault.Load(); fp != nil {
		f = (*fp)(r, n)
	}
	if f.Delay > 0 {
		select {
		case <-time.After(f.Delay):
		case <-r.Context().Done():
			return
		}
	}
	if f.Drop {
		hijackClose(w)
		return
	}
	if f.Status != 0 {
		http.Error(w, http.StatusText(f.Status), f.Status)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.Path[1:], nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	for _, h := range []string{"Range", "Authorization", "If-Range"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		hijackClose(w)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if f.Corrupt && len(body) > 0 {
		body[len(body)/2] ^= 0x40
	}
	w.WriteHeader(resp.StatusCode)
	if r.Method == http.MethodHead {
		return
	}
	switch {
	case f.Truncate:
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		hijackClose(w)
	case f.Stall:
		w.Write(body[:len(body)/2])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	default:
		w.Write(body)
	}
}

// hijackClose closes the connection under w.
func hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
		}
	}
}
