package termprogress

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to write from Show's goroutine while
// the test reads it after stop.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestShowRedrawsAndErases: several lines are drawn, redrawn in place
// (the cursor moved up over the earlier ones) and erased at stop.
func TestShowRedrawsAndErases(t *testing.T) {
	var buf syncBuffer
	stop := Show(&buf, func(time.Duration) []string { return []string{"one", "two", "three"} })
	time.Sleep(3 * Interval)
	stop()
	out := buf.String()
	if strings.Count(out, "one\ntwo\nthree") < 2 {
		t.Fatalf("lines not redrawn: %q", out)
	}
	if !strings.Contains(out, "\r\x1b[2A\x1b[J") || !strings.HasSuffix(out, "\r\x1b[2A\x1b[J") {
		t.Errorf("lines not erased in place: %q", out)
	}
}

// TestShowQuickJob: a job done before the first tick writes nothing.
func TestShowQuickJob(t *testing.T) {
	var buf syncBuffer
	stop := Show(&buf, func(time.Duration) []string { return []string{"x"} })
	stop()
	if out := buf.String(); out != "" {
		t.Errorf("output %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := openNonTerminal(t)
	if err != nil {
		t.Fatal(err)
	}
	if IsTerminal(f) {
		t.Error("a regular file is a terminal")
	}
}

func openNonTerminal(t *testing.T) (*os.File, error) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err == nil {
		t.Cleanup(func() { f.Close() })
	}
	return f, err
}
