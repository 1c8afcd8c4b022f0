package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// attachSession is an Attach running in the background.
type attachSession struct {
	stdout, stderr *testutil.SyncBuffer
	cancel         context.CancelFunc
	done           chan error
}

// attach starts Attach in the background with buffers for its output.
func (f *Fixture) attach(id string, stdin io.Reader, resize <-chan runtime.TerminalSize) *attachSession {
	ctx, cancel := context.WithCancel(f.ctx)
	s := &attachSession{stdout: &testutil.SyncBuffer{}, stderr: &testutil.SyncBuffer{}, cancel: cancel, done: make(chan error, 1)}
	go func() {
		s.done <- f.RT.Attach(ctx, id, runtime.AttachOptions{Stdin: stdin, Stdout: s.stdout, Stderr: s.stderr, Resize: resize})
	}()
	f.T.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(waitTimeout):
			f.T.Errorf("Attach(%s) did not return %s after its context was cancelled", id, waitTimeout)
		}
	})
	return s
}

// waitOutput waits until buf holds want.
func (f *Fixture) waitOutput(what string, buf *testutil.SyncBuffer, want string) {
	f.T.Helper()
	err := WaitFor(f.ctx, waitTimeout, func() (bool, error) { return strings.Contains(buf.String(), want), nil })
	if err != nil {
		f.T.Fatalf("waiting for %q in %s: %v (got %q)", want, what, err, buf.String())
	}
}

// wait waits for Attach to return.
func (s *attachSession) wait(t testing.TB, what string) error {
	t.Helper()
	select {
	case err := <-s.done:
		s.done <- err // for the cleanup
		return err
	case <-time.After(waitTimeout):
		t.Fatalf("Attach did not return within %s after %s", waitTimeout, what)
		return nil
	}
}

func testAttachOutput(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "attach"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "talker",
		Args: Sh(`i=0; while :; do i=$((i+1)); echo "out $i"; echo "err $i" >&2; sleep 0.05; done`)}, true)
	f.waitLog(id, "out 2")

	s := f.attach(id, nil, nil)
	f.waitOutput("attached stdout", s.stdout, "out ")
	f.waitOutput("attached stderr", s.stderr, "err ")
	if strings.Contains(s.stdout.String(), "err") || strings.Contains(s.stderr.String(), "out") {
		t.Errorf("streams mixed up: stdout %q, stderr %q", s.stdout.String(), s.stderr.String())
	}
	if strings.HasPrefix(s.stdout.String(), "out 1\n") || strings.Contains(s.stdout.String(), "\nout 1\n") {
		t.Errorf("attach replayed output written before it: %q", s.stdout.String())
	}
	s.cancel()
	if err := s.wait(t, "its context was cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("Attach after cancel = %v, want context.Canceled", err)
	}
	if st := f.Status(id); st.State != runtime.ContainerRunning {
		t.Fatalf("the container is %s after an attach session ended", st.State)
	}

	// A session ends when the process exits.
	s = f.attach(id, nil, nil)
	f.waitOutput("attached stdout", s.stdout, "out ")
	if err := f.RT.StopContainer(ctx, id, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(t, "the container stopped"); err != nil {
		t.Errorf("Attach when the container exited = %v", err)
	}
}

func testAttachStdin(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "attach-stdin"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "cat", Stdin: true, Args: []string{"cat"}}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	for _, word := range []string{"hello", "again"} {
		in, w := io.Pipe()
		s := f.attach(id, in, nil)
		if _, err := io.WriteString(w, word+"\n"); err != nil {
			t.Fatal(err)
		}
		f.waitOutput("the echo of stdin", s.stdout, word+"\n")
		// The end of stdin ends the session but, without StdinOnce, leaves
		// the process's stdin open for the next one.
		w.Close()
		if err := s.wait(t, "its stdin ended"); err != nil {
			t.Errorf("Attach after stdin ended = %v", err)
		}
		if st := f.Status(id); st.State != runtime.ContainerRunning {
			t.Fatalf("cat is %s after an attach session (exit code %d): its stdin was closed", st.State, st.ExitCode)
		}
	}
	f.waitLog(id, "again")
	if lines := f.LogLines(f.Status(id).LogPath); strings.Join(lines, ",") != "hello,again" {
		t.Errorf("log = %q", lines)
	}
}

func testAttachStdinOnce(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "stdin-once"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "once", Stdin: true, StdinOnce: true,
		Args: Sh(`cat; echo eof-seen`)}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	// With StdinOnce the end of stdin closes the process's stdin and the
	// session lasts until the process exits.
	s := f.attach(id, strings.NewReader("hello\n"), nil)
	if err := s.wait(t, "the process read EOF"); err != nil {
		t.Errorf("Attach = %v", err)
	}
	if got := s.stdout.String(); got != "hello\neof-seen\n" {
		t.Errorf("attached stdout = %q, want hello and eof-seen", got)
	}
	if st := f.WaitExited(id); st.ExitCode != 0 {
		t.Errorf("exit code %d", st.ExitCode)
	}
}

func testAttachTTY(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "tty"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "term", TTY: true, Stdin: true,
		Args: Sh(`while :; do s=$(stty size 2>/dev/null); echo "size ${s:-none} $TERM $(tty)"; sleep 0.05; done`)}, true)
	// The process has a terminal (and TERM), still without a size.
	f.waitLog(id, "size none xterm /dev/pts/0") // ParseCRILog drops the "\r"
	resize := make(chan runtime.TerminalSize, 2)
	s := f.attach(id, nil, resize)
	// A terminal turns "\n" into "\r\n".
	f.waitOutput("the terminal's output", s.stdout, "size none xterm /dev/pts/0\r\n")
	resize <- runtime.TerminalSize{Width: 100, Height: 40}
	f.waitOutput("the terminal's output", s.stdout, "size 40 100 xterm /dev/pts/0\r\n")
	resize <- runtime.TerminalSize{Width: 132, Height: 50}
	f.waitOutput("the terminal's output", s.stdout, "size 50 132 xterm /dev/pts/0\r\n")
	if s.stderr.String() != "" {
		t.Errorf("a terminal's output went to stderr: %q", s.stderr.String())
	}
	// Typed input reaches the terminal (and is echoed by it).
	in, w := io.Pipe()
	typer := f.attach(id, in, nil)
	if _, err := io.WriteString(w, "typed-text\n"); err != nil {
		t.Fatal(err)
	}
	f.waitOutput("the terminal's echo", typer.stdout, "typed-text")
	w.Close()
	s.cancel()
	if err := s.wait(t, "its context was cancelled"); !errors.Is(err, context.Canceled) {
		t.Errorf("Attach after cancel = %v", err)
	}
	if err := f.RT.StopContainer(f.Ctx(), id, 0, 0); err != nil {
		t.Fatal(err)
	}
	es, err := ParseCRILog(f.Status(id).LogPath)
	if err != nil {
		t.Fatal(err)
	}
	sawResize := false
	for _, e := range es {
		if e.Stream != "stdout" {
			t.Errorf("a terminal's log line on %s: %q", e.Stream, e.Content)
		}
		sawResize = sawResize || e.Content == "size 40 100 xterm /dev/pts/0"
	}
	if !sawResize {
		t.Errorf("the log lacks the output after the resize")
	}
}

func testExecTTYResize(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "exec-tty"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "target", Args: []string{"sleep", "3600"}}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	// A size given before the command runs, then one while it runs; the
	// command waits (up to 10 s each) for each to arrive.
	resize := make(chan runtime.TerminalSize, 1)
	resize <- runtime.TerminalSize{Width: 100, Height: 40}
	waitSize := func(want string) string {
		return `i=0; while [ $i -lt 200 ]; do s=$(stty size); [ "$s" = "` + want + `" ] && break; i=$((i+1)); sleep 0.05; done; echo "size $s"; [ "$s" = "` + want + `" ] || exit 1; `
	}
	var out testutil.SyncBuffer
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := f.RT.Exec(f.Ctx(), id, runtime.ExecOptions{TTY: true, Stdout: &out, Resize: resize,
			Cmd: Sh(waitSize("40 100") + waitSize("50 132"))})
		done <- result{code, err}
	}()
	f.waitOutput("exec's terminal", &out, "size 40 100")
	resize <- runtime.TerminalSize{Width: 132, Height: 50}
	select {
	case r := <-done:
		if r.err != nil || r.code != 0 || !strings.Contains(out.String(), "size 50 132") {
			t.Errorf("exec with a resized tty = %d, %v, %q", r.code, r.err, out.String())
		}
	case <-time.After(waitTimeout):
		t.Fatalf("exec did not return within %s: %q", waitTimeout, out.String())
	}
}

func testReopenLog(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "reopen"})
	logPath := filepath.Join(f.TempDir(), "reopen", "0.log")
	id := f.Container(sb, runtime.ContainerConfig{Name: "counter", LogPath: logPath,
		Args: Sh(`i=0; while :; do i=$((i+1)); echo "line $i"; sleep 0.01; done`)}, true)
	f.waitLog(id, "line 3")
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := f.RT.ReopenContainerLog(ctx, id); err != nil {
		t.Fatal(err)
	}
	old, err := os.Stat(rotated)
	if err != nil {
		t.Fatal(err)
	}
	f.waitLog(id, "line "+strconv.Itoa(countLines(t, rotated)+3))
	if err := f.RT.StopContainer(ctx, id, 0, 0); err != nil {
		t.Fatal(err)
	}
	if now, err := os.Stat(rotated); err != nil || now.Size() != old.Size() {
		t.Errorf("the renamed log changed after the reopen: %v -> %v (%v)", old.Size(), now.Size(), err)
	}
	// Every line is in exactly one of the files, in order.
	var nums []int
	for _, p := range []string{rotated, logPath} {
		for _, l := range f.LogLines(p) {
			n, err := strconv.Atoi(strings.TrimPrefix(l, "line "))
			if err != nil {
				t.Fatalf("%s: unexpected line %q", p, l)
			}
			nums = append(nums, n)
		}
	}
	for i, n := range nums {
		if n != i+1 {
			t.Fatalf("lines across the reopen are not 1..%d: %v", len(nums), nums)
		}
	}

	// Attach and reopen need a running container.
	created := f.Container(sb, runtime.ContainerConfig{Name: "created", Args: []string{"true"}}, false)
	for _, c := range []struct{ what, id string }{{"an exited", id}, {"a created", created}} {
		err := f.RT.Attach(ctx, c.id, runtime.AttachOptions{Stdout: io.Discard})
		isErr(t, fmt.Sprintf("Attach to %s container", c.what), err, runtime.ErrFailedPrecondition)
		isErr(t, fmt.Sprintf("ReopenContainerLog of %s container", c.what), f.RT.ReopenContainerLog(ctx, c.id), runtime.ErrFailedPrecondition)
	}
	unknown := strings.Repeat("cd", 16)
	isErr(t, "Attach to an unknown container", f.RT.Attach(ctx, unknown, runtime.AttachOptions{}), runtime.ErrNotFound)
	isErr(t, "ReopenContainerLog of an unknown container", f.RT.ReopenContainerLog(ctx, unknown), runtime.ErrNotFound)
}

// countLines counts a file's complete lines.
func countLines(t testing.TB, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}
