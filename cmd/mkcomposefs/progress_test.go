package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/composefs/composefs-go/dirscan"
	"github.com/composefs/composefs-go/internal/logbuf"
)

// TestProgressCounts: the counts a scan reports are those of the tree, and
// the line shows them.
func TestProgressCounts(t *testing.T) {
	src := t.TempDir()
	for i, size := range []int{10, 5000, 70_000} {
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), bytes.Repeat([]byte{'x'}, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(src, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := new(dirscan.Progress)
	if _, err := dirscan.Scan(src, dirscan.Options{ComputeDigest: true, Progress: p}); err != nil {
		t.Fatal(err)
	}
	// "/", d and three files; all three files read.
	if e, f, b := p.Entries.Load(), p.Files.Load(), p.Bytes.Load(); e != 5 || f != 3 || b != 75_010 {
		t.Errorf("progress: %d entries, %d files, %d bytes; want 5, 3, 75010", e, f, b)
	}
	line := progressLine(p, 2*time.Second)
	if !strings.Contains(line, "5 entries, 3 files read, 0.1 MiB") || strings.Contains(line, "\n") {
		t.Errorf("progress line %q", line)
	}
}

// TestProgressLineCleared: what showProgress draws is erased when it
// stops, and nothing else is written.
func TestProgressLineCleared(t *testing.T) {
	var buf logbuf.Buffer
	stop := showProgress(&buf, new(dirscan.Progress))
	time.Sleep(3 * progressInterval)
	stop()
	out := buf.String()
	if !strings.Contains(out, "0 entries") || !strings.HasSuffix(out, "\r\x1b[K") || strings.Contains(out, "\n") {
		t.Errorf("progress output %q", out)
	}
}

// TestNoProgressWhenNotATerminal: a scan with stderr not a terminal
// writes nothing there.
func TestNoProgressWhenNotATerminal(t *testing.T) {
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run([]string{src, filepath.Join(t.TempDir(), "img.cfs")}, nil, &stdout, &stderr); code != 0 || stderr.Len() != 0 {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}
