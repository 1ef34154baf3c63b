package cli

import (
	"context"
	"io"
	"log/slog"
	"log/syslog"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// LogHandler is the slog.Handler every command logs through: one line a
// record, for a person to read,
//
//	PROG: LEVEL: MESSAGE KEY=VALUE...
//
// where LEVEL is "error", "warning" or "debug", and left out at info
// level. A value holding a space, a quote, an '=' or a control character
// is quoted as Go quotes a string, so that every record stays one line;
// the keys of a group are "GROUP.KEY".
//
// Where the lines go can change while the command runs (SetOutput,
// SetSyslog), for every handler made from this one by WithAttrs and
// WithGroup: a daemon logs on stderr until it is mounted, then to a file
// or to syslog.
type LogHandler struct {
	out   *logOutput
	level slog.Leveler
	// attrs are the " KEY=VALUE" of WithAttrs, formatted once.
	attrs []byte
	// group is the "GROUP." that WithGroup puts before the keys to come.
	group string
}

// logOutput is where a LogHandler and those made from it write.
type logOutput struct {
	mu   sync.Mutex
	prog string
	w    io.Writer
	// stamped lines start with the time.
	stamped bool
	// sys, when set, takes the lines instead of w.
	sys *syslog.Writer
}

// stampLayout is the time before a line written to a file: log.LstdFlags'.
const stampLayout = "2006/01/02 15:04:05 "

// NewLogHandler writes the records of level and above (info when nil) to
// w, each line starting with "PROG: ".
func NewLogHandler(prog string, w io.Writer, level slog.Leveler) *LogHandler {
	if level == nil {
		level = slog.LevelInfo
	}
	return &LogHandler{out: &logOutput{prog: prog, w: w}, level: level}
}

// SetOutput sends the lines to w from now on, each starting with the
// time when stamped (for a file, where no one sees them as they come).
func (h *LogHandler) SetOutput(w io.Writer, stamped bool) {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.w, h.out.stamped, h.out.sys = w, stamped, nil
}

// SetSyslog sends the lines to the system log from now on, each at the
// priority of its level; syslog puts its own time and the writer's tag
// where the line would have PROG.
func (h *LogHandler) SetSyslog(sys *syslog.Writer) {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.sys = sys
}

func (h *LogHandler) Enabled(_ context.Context, level slog.Level) bool {
	return level >= h.level.Level()
}

func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	h2 := *h
	h2.attrs = h.attrs[:len(h.attrs):len(h.attrs)]
	for _, a := range attrs {
		h2.attrs = appendAttr(h2.attrs, h.group, a)
	}
	return &h2
}

func (h *LogHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	h2 := *h
	h2.group += name + "."
	return &h2
}

func (h *LogHandler) Handle(_ context.Context, r slog.Record) error {
	body := make([]byte, 0, 160)
	body = appendMessage(body, r.Message)
	body = append(body, h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		body = appendAttr(body, h.group, a)
		return true
	})
	return h.out.write(r.Level, r.Time, body)
}

// write writes one line.
func (o *logOutput) write(level slog.Level, t time.Time, body []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sys != nil {
		msg := string(body)
		switch {
		case level >= slog.LevelError:
			return o.sys.Err(msg)
		case level >= slog.LevelWarn:
			return o.sys.Warning(msg)
		case level >= slog.LevelInfo:
			return o.sys.Info(msg)
		}
		return o.sys.Debug(msg)
	}
	line := make([]byte, 0, len(stampLayout)+len(o.prog)+len(body)+16)
	if o.stamped && !t.IsZero() {
		line = t.AppendFormat(line, stampLayout)
	}
	line = append(line, o.prog...)
	line = append(line, ": "...)
	line = append(line, levelWord(level)...)
	line = append(line, body...)
	line = append(line, '\n')
	_, err := o.w.Write(line)
	return err
}

// levelWord is what a line says of its level: nothing at info.
func levelWord(level slog.Level) string {
	switch {
	case level >= slog.LevelError:
		return "error: "
	case level >= slog.LevelWarn:
		return "warning: "
	case level >= slog.LevelInfo:
		return ""
	}
	return "debug: "
}

// appendMessage appends msg with its line breaks escaped: a message comes
// from code, but one passed on from another library's logger may hold
// them.
func appendMessage(b []byte, msg string) []byte {
	if !strings.ContainsAny(msg, "\r\n") {
		return append(b, msg...)
	}
	r := strings.NewReplacer("\n", `\n`, "\r", `\r`)
	return append(b, r.Replace(msg)...)
}

// appendAttr appends " KEY=VALUE" for a, its key after prefix, or one
// such for each attribute of a group; nothing for an empty attribute or
// group.
func appendAttr(b []byte, prefix string, a slog.Attr) []byte {
	a.Value = a.Value.Resolve()
	if a.Equal(slog.Attr{}) {
		return b
	}
	if a.Value.Kind() == slog.KindGroup {
		if a.Key != "" {
			prefix += a.Key + "."
		}
		for _, g := range a.Value.Group() {
			b = appendAttr(b, prefix, g)
		}
		return b
	}
	b = append(b, ' ')
	b = append(b, prefix...)
	b = append(b, a.Key...)
	b = append(b, '=')
	var s string
	switch a.Value.Kind() {
	case slog.KindTime:
		s = a.Value.Time().Format(time.RFC3339Nano)
	default:
		s = a.Value.String()
	}
	if needsQuotes(s) {
		return strconv.AppendQuote(b, s)
	}
	return append(b, s...)
}

// needsQuotes reports whether a value would not read back as one word.
func needsQuotes(s string) bool {
	if s == "" {
		return true
	}
	for _, r := range s {
		if r == '"' || r == '=' || unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return true
		}
	}
	return false
}
