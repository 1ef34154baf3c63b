package cli

import (
	"bytes"
	"errors"
	"io"
	"log"
	"log/slog"
	"log/syslog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/slogtest"
	"time"
)

func TestLogLines(t *testing.T) {
	var b bytes.Buffer
	l := slog.New(NewLogHandler("tool", &b, slog.LevelInfo))
	l.Error("open refused", "path", "/a b", "err", errors.New(`object "x": gone`))
	l.Warn("objects missing", "missing", 3, "objects", 16)
	l.Info("mounted", "dir", "/mnt")
	l.Debug("not shown", "n", 1)
	l.With("queue", 2).WithGroup("ring").Error("stuck", "thread", 5, "why", "")
	l.Error("panicked", "stack", "line 1\nline 2", "eq", "a=b")
	l.Error("from another logger\nsecond line")
	want := `tool: error: open refused path="/a b" err="object \"x\": gone"
tool: warning: objects missing missing=3 objects=16
tool: mounted dir=/mnt
tool: error: stuck queue=2 ring.thread=5 ring.why=""
tool: error: panicked stack="line 1\nline 2" eq="a=b"
tool: error: from another logger\nsecond line
`
	if b.String() != want {
		t.Errorf("logged:\n%s\nwant:\n%s", b.String(), want)
	}
}

// TestLogRedirect: SetOutput moves the lines of every logger made from the
// handler, With and WithGroup ones included.
func TestLogRedirect(t *testing.T) {
	var before, after bytes.Buffer
	h := NewLogHandler("tool", &before, slog.LevelDebug)
	l := slog.New(h).With("mnt", "/m")
	l.Debug("first")
	h.SetOutput(&after, true)
	l.Warn("second")
	if got := before.String(); got != "tool: debug: first mnt=/m\n" {
		t.Errorf("before: %q", got)
	}
	got := after.String()
	stamp, rest, ok := strings.Cut(got, " tool: ")
	if _, err := time.Parse(strings.TrimSpace(stampLayout), stamp); !ok || err != nil || rest != "warning: second mnt=/m\n" {
		t.Errorf("after: %q, want the time, then the line", got)
	}
}

func TestCommandLog(t *testing.T) {
	// slog.SetDefault also moves the log package's output and flags,
	// which setting the old default back does not restore.
	old, w, flags := slog.Default(), log.Writer(), log.Flags()
	defer func() {
		slog.SetDefault(old)
		log.SetOutput(w)
		log.SetFlags(flags)
	}()
	for _, debug := range []bool{false, true} {
		c, _ := testCommand()
		args := []string{"f"}
		if debug {
			args = append(args, "--debug")
		}
		if err := c.Parse(args); err != nil || c.Debug() != debug {
			t.Fatalf("%q: %v, Debug %v", args, err, c.Debug())
		}
		var b bytes.Buffer
		c.Log(&b)
		slog.Debug("detail", "n", 1)
		slog.Info("said")
		want := "tool: said\n"
		if debug {
			want = "tool: debug: detail n=1\n" + want
		}
		if b.String() != want {
			t.Errorf("%q: logged %q, want %q", args, b.String(), want)
		}
	}
}

// TestLogHandler runs slog's own checks of a handler, reading the lines
// back into what they say.
func TestLogHandler(t *testing.T) {
	var b bytes.Buffer
	slogtest.Run(t, func(*testing.T) slog.Handler {
		b.Reset()
		h := NewLogHandler("tool", &b, slog.LevelInfo)
		h.SetOutput(&b, true)
		return h
	}, func(t *testing.T) map[string]any {
		return parseLogLine(t, b.String())
	})
}

// parseLogLine reads a line of LogHandler back: the time, level and
// message under slog's keys, the attributes in nested maps by group.
func parseLogLine(t *testing.T, line string) map[string]any {
	t.Helper()
	m := map[string]any{}
	line = strings.TrimSuffix(line, "\n")
	if strings.Contains(line, "\n") {
		t.Fatalf("more than one line: %q", line)
	}
	if stamp, rest, ok := strings.Cut(line, " tool: "); ok {
		ts, err := time.Parse(strings.TrimSpace(stampLayout), stamp)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		m[slog.TimeKey] = ts
		line = rest
	} else {
		line = strings.TrimPrefix(line, "tool: ")
	}
	m[slog.LevelKey] = slog.LevelInfo
	for word, level := range map[string]slog.Level{"error: ": slog.LevelError, "warning: ": slog.LevelWarn, "debug: ": slog.LevelDebug} {
		if rest, ok := strings.CutPrefix(line, word); ok {
			m[slog.LevelKey], line = level, rest
		}
	}
	msg, line, _ := strings.Cut(line, " ")
	m[slog.MessageKey] = msg
	for line != "" {
		var key, value string
		key, line, _ = strings.Cut(line, "=")
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			value, _ = strconv.Unquote(q)
			line = strings.TrimPrefix(line[len(q):], " ")
		} else {
			value, line, _ = strings.Cut(line, " ")
		}
		group := m
		path := strings.Split(key, ".")
		for _, g := range path[:len(path)-1] {
			sub, ok := group[g].(map[string]any)
			if !ok {
				sub = map[string]any{}
				group[g] = sub
			}
			group = sub
		}
		group[path[len(path)-1]] = value
	}
	return m
}

// TestLogSyslog: after SetSyslog each line goes to syslog at the priority
// of its level, without PROG, which syslog's tag replaces.
func TestLogSyslog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sys, err := syslog.Dial("unixgram", sock, syslog.LOG_DAEMON|syslog.LOG_WARNING, "tool")
	if err != nil {
		t.Fatal(err)
	}
	defer sys.Close()
	h := NewLogHandler("tool", io.Discard, slog.LevelDebug)
	l := slog.New(h)
	h.SetSyslog(sys)
	l.Error("open failed", "path", "/a")
	l.Warn("lazily")
	l.Info("said")
	l.Debug("detail")
	// LOG_DAEMON is 3<<3; then err 3, warning 4, info 6, debug 7.
	for _, want := range []struct{ pri, body string }{
		{"<27>", "open failed path=/a"},
		{"<28>", "lazily"},
		{"<30>", "said"},
		{"<31>", "detail"},
	} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 1024)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		got := string(buf[:n])
		if !strings.HasPrefix(got, want.pri) || !strings.Contains(got, " tool[") || !strings.HasSuffix(got, "]: "+want.body+"\n") {
			t.Errorf("syslog got %q, want priority %s and %q", got, want.pri, want.body)
		}
	}
}
