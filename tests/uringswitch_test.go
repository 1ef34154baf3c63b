package tests

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/composefs/composefs-go/internal/logbuf"
)

// joiner is one stand-in for tests/run: a shell that joins the group
// sharing the io_uring switch (scripts/uring-switch.sh) and leaves it when
// its stdin closes.
type joiner struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *logbuf.Buffer
}

// join starts a joiner over the switch file sw and the state directory
// state, and waits until it has joined.
func join(t *testing.T, sw, state string) *joiner {
	t.Helper()
	script := `. scripts/uring-switch.sh; uring_join; trap uring_leave EXIT; echo joined; read -r _ || true`
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "COMPOSEFS_TESTS_URING_SWITCH="+sw, "COMPOSEFS_TESTS_URING_STATE="+state)
	stderr := &logbuf.Buffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "joined\n" {
		t.Fatalf("joiner: %q", line)
	}
	return &joiner{cmd: cmd, stdin: stdin, stderr: stderr}
}

// leave ends the joiner the ordinary way, through its EXIT trap.
func (j *joiner) leave(t *testing.T) {
	t.Helper()
	j.stdin.Close()
	if err := j.cmd.Wait(); err != nil {
		t.Fatalf("joiner: %v", err)
	}
}

// TestUringSwitchShared: runs of tests/run that overlap keep the switch on
// until the last ends, which puts back what the first found; a run killed
// outright leaves a record the next run restores from. A file stands in
// for the fuse module's switch.
func TestUringSwitchShared(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1) (util-linux)")
	}
	dir := t.TempDir()
	sw, state := filepath.Join(dir, "enable_uring"), filepath.Join(dir, "state")
	set := func(v string) {
		if err := os.WriteFile(sw, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(when, want string) {
		t.Helper()
		b, err := os.ReadFile(sw)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != want {
			t.Errorf("%s: switch %s, want %s", when, got, want)
		}
	}
	for _, orig := range []string{"N", "Y"} {
		set(orig)
		a := join(t, sw, state)
		expect("first run in", "Y")
		b := join(t, sw, state)
		a.leave(t)
		expect("first run out, second still in", "Y")
		c := join(t, sw, state)
		b.leave(t)
		c.leave(t)
		expect("all out (was "+orig+")", orig)
	}

	set("N")
	killed := join(t, sw, state)
	killed.cmd.Process.Kill()
	killed.cmd.Wait()
	expect("run killed", "Y")
	next := join(t, sw, state)
	next.leave(t)
	expect("the run after a killed one", "N")
	if !strings.Contains(next.stderr.String(), "a killed run left") {
		t.Errorf("the run after a killed one did not say so: %q", next.stderr.String())
	}
	if _, err := os.Stat(filepath.Join(state, "original")); !os.IsNotExist(err) {
		t.Errorf("record left after the last run: %v", err)
	}
}
