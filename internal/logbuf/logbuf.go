// Package logbuf is a log destination for tests: a buffer that a server's
// goroutines and the test write and read at the same time.
package logbuf

import (
	"log/slog"
	"strings"
	"sync"
)

// Buffer collects what is written to it, safe for concurrent use.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Logger logs to the buffer, every level, in slog's text format.
func (l *Buffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Discard is a logger that drops everything, for a test that expects log
// lines it has no use for.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
