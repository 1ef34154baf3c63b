package main

import (
	"fmt"
	"io"
	"time"

	"github.com/composefs/composefs-go/dirscan"
	"github.com/composefs/composefs-go/internal/termprogress"
)

// progressInterval is how often the progress line is redrawn.
const progressInterval = termprogress.Interval

// showProgress keeps one line on w (a terminal) up to date with how far
// the scan p counts has got, until stop is called, which clears it: on a
// tree of hundreds of thousands of files the scan takes seconds to
// minutes, and silence looks like a hang.
func showProgress(w io.Writer, p *dirscan.Progress) (stop func()) {
	return termprogress.Show(w, func(elapsed time.Duration) []string {
		return []string{progressLine(p, elapsed)}
	})
}

// progressLine says what p counts after elapsed: entries found, files read
// and their bytes, and the rate.
func progressLine(p *dirscan.Progress, elapsed time.Duration) string {
	const mib = 1 << 20
	bytes := p.Bytes.Load()
	rate := 0.0
	if s := elapsed.Seconds(); s > 0 {
		rate = float64(bytes) / mib / s
	}
	return fmt.Sprintf("mkcomposefs: %d entries, %d files read, %.1f MiB (%.1f MiB/s)",
		p.Entries.Load(), p.Files.Load(), float64(bytes)/mib, rate)
}
