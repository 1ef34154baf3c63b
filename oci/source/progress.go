package source

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/composefs/composefs-go/internal/termprogress"
)

// TerminalProgress draws the downloads Fetch reports on w while it is a
// terminal: a line per layer being downloaded (short digest, bytes of
// total, rate) under a line counting the layers done. stop erases them.
// When w is not a terminal it draws nothing: progress is nil and stop
// does nothing.
func TerminalProgress(w io.Writer, layers int) (progress ProgressFunc, stop func()) {
	if !termprogress.IsTerminal(w) {
		return nil, func() {}
	}
	b := newProgressBoard(layers)
	return b.update, termprogress.Show(w, func(time.Duration) []string { return b.lines(time.Now()) })
}

// progressBoard keeps the latest report of every layer.
type progressBoard struct {
	mu     sync.Mutex
	total  int
	layers map[int]*layerLine
}

type layerLine struct {
	digest string
	done   int64
	size   int64
	state  LayerState
	start  time.Time
}

func newProgressBoard(total int) *progressBoard {
	return &progressBoard{total: total, layers: map[int]*layerLine{}}
}

func (b *progressBoard) update(p LayerProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	l := b.layers[p.Index]
	if l == nil {
		l = &layerLine{digest: p.Layer.Digest, size: p.Layer.Size, start: time.Now()}
		b.layers[p.Index] = l
	}
	l.done, l.state = p.Done, p.State
}

// lines says how the downloads stand at now.
func (b *progressBoard) lines(now time.Time) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var finished, failed int
	var active []int
	for i, l := range b.layers {
		switch l.state {
		case Present, Complete:
			finished++
		case Failed:
			failed++
		default:
			active = append(active, i)
		}
	}
	sort.Ints(active)
	head := fmt.Sprintf("layers: %d of %d done", finished, b.total)
	if failed > 0 {
		head += fmt.Sprintf(", %d failed", failed)
	}
	out := []string{head}
	for _, i := range active {
		l := b.layers[i]
		rate := 0.0
		if s := now.Sub(l.start).Seconds(); s > 0 {
			rate = float64(l.done) / s
		}
		out = append(out, fmt.Sprintf("  %s  %s / %s  %s/s", shortDigest(l.digest), formatBytes(float64(l.done)), formatBytes(float64(l.size)), formatBytes(rate)))
	}
	return out
}

// shortDigest is the first 12 hex digits, as docker shows layers.
func shortDigest(d string) string {
	_, hx, _ := strings.Cut(d, ":")
	if len(hx) > 12 {
		hx = hx[:12]
	}
	return hx
}

func formatBytes(n float64) string {
	const unit = 1024
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	u := 0
	for n >= unit && u < len(units)-1 {
		n /= unit
		u++
	}
	if u == 0 {
		return fmt.Sprintf("%.0f %s", n, units[u])
	}
	return fmt.Sprintf("%.1f %s", n, units[u])
}
