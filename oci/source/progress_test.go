package source

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// TestProgressLines: the board shows layers done of all and a line per
// layer downloading with its short digest, bytes of total and rate.
func TestProgressLines(t *testing.T) {
	b := newProgressBoard(3)
	l0 := Layer{Digest: "sha256:" + strings.Repeat("a", 64), Size: 4 << 20}
	l1 := Layer{Digest: "sha256:" + strings.Repeat("b", 64), Size: 100}
	b.update(LayerProgress{Index: 0, Layer: l0, State: Downloading, Done: 1 << 20})
	b.update(LayerProgress{Index: 1, Layer: l1, State: Present, Done: 100})
	b.layers[0].start = time.Now().Add(-2 * time.Second)
	lines := b.lines(time.Now())
	if len(lines) != 2 || lines[0] != "layers: 1 of 3 done" ||
		!strings.HasPrefix(lines[1], "  aaaaaaaaaaaa  1.0 MiB / 4.0 MiB  512.0 KiB/s") {
		t.Errorf("lines %q", lines)
	}
	b.update(LayerProgress{Index: 0, Layer: l0, State: Failed})
	if lines := b.lines(time.Now()); len(lines) != 1 || lines[0] != "layers: 1 of 3 done, 1 failed" {
		t.Errorf("after a failure: %q", lines)
	}
}

// TestTerminalProgressSilent: not a terminal, nothing is drawn.
func TestTerminalProgressSilent(t *testing.T) {
	var buf bytes.Buffer
	progress, stop := TerminalProgress(&buf, 1)
	if progress != nil {
		t.Error("a progress func for a buffer")
	}
	stop()
	if buf.Len() != 0 {
		t.Errorf("wrote %q", buf.String())
	}
}
