// Package termprogress keeps a few lines on a terminal up to date while a
// long job runs: the one place that draws progress, for mkcomposefs's scan
// and cfsctl's downloads alike.
//
// It draws only what it is given: callers decide whether to show progress
// at all (IsTerminal on stderr, a --quiet flag) and what the lines say.
package termprogress

import (
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Interval is how often the lines are redrawn.
const Interval = 250 * time.Millisecond

// IsTerminal reports whether w is a terminal, where redrawn lines make
// sense; a file or a pipe would only collect escape sequences.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// Show redraws the lines that lines returns, given the time since Show
// was called, on w every Interval until stop is called, which erases
// them. Nothing is written before the first tick, so a job that ends
// within Interval leaves w untouched.
func Show(w io.Writer, lines func(elapsed time.Duration) []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		t := time.NewTicker(Interval)
		defer t.Stop()
		drawn := 0
		for {
			select {
			case <-done:
				if drawn > 0 {
					io.WriteString(w, erase(drawn))
				}
				return
			case now := <-t.C:
				ls := lines(now.Sub(start))
				io.WriteString(w, erase(drawn)+strings.Join(ls, "\n"))
				drawn = len(ls)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// erase returns what moves the cursor from the end of the last of n
// lines drawn to the start of the first and erases them all: a carriage
// return, n-1 lines up, and erase to the end of the screen; for one line
// or none, erase to the end of the line.
func erase(n int) string {
	if n <= 1 {
		return "\r\x1b[K"
	}
	return "\r" + cursorUp(n-1) + "\x1b[J"
}

func cursorUp(n int) string {
	return "\x1b[" + strconv.Itoa(n) + "A"
}
