package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/composefs/composefs-go/dirscan"
)

// progressInterval is how often the progress line is redrawn.
const progressInterval = 250 * time.Millisecond

// showProgress keeps one line on w (a terminal) up to date with how far
// the scan p counts has got, until stop is called, which clears it: on a
// tree of hundreds of thousands of files the scan takes seconds to
// minutes, and silence looks like a hang.
func showProgress(w io.Writer, p *dirscan.Progress) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				// Carriage return and erase to the end of the line.
				fmt.Fprint(w, "\r\x1b[K")
				return
			case now := <-t.C:
				fmt.Fprint(w, "\r\x1b[K"+progressLine(p, now.Sub(start)))
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
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
