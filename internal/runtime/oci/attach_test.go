package oci_test

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
)

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestAttachLongStatePath attaches, resizes and reopens the log of a
// container whose bundle path is far beyond a socket address's 108 bytes.
func TestAttachLongStatePath(t *testing.T) {
	requireTools(t, "runc")
	long := strings.Repeat("a-rather-long-directory-name/", 6)
	open := func(t testing.TB, state string) runtime.Runtime {
		r, err := oci.New(oci.Config{StateDir: filepath.Join(state, long), Runtime: "runc", Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f := runtimetest.NewFixture(t, open, runtimetest.BusyboxRootfs(t))
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "long"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "cat", Stdin: true, TTY: true, Args: []string{"cat"}}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	if p := filepath.Join(f.State, long, "containers", id, "attach"); len(p) < 108 {
		t.Fatalf("the attach socket's path %q is not too long for a socket address", p)
	}

	in, w := io.Pipe()
	var out syncBuffer
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	resize := make(chan runtime.TerminalSize, 1)
	done := make(chan error, 1)
	go func() {
		done <- f.RT.Attach(actx, id, runtime.AttachOptions{Stdin: in, Stdout: &out, Resize: resize})
	}()
	resize <- runtime.TerminalSize{Width: 90, Height: 30}
	if _, err := io.WriteString(w, "hello\n"); err != nil {
		t.Fatal(err)
	}
	if err := runtimetest.WaitFor(ctx, 30*time.Second, func() (bool, error) { return strings.Contains(out.String(), "hello"), nil }); err != nil {
		t.Fatalf("the echo of stdin: %v (got %q)", err, out.String())
	}
	var size string
	err := runtimetest.WaitFor(ctx, 30*time.Second, func() (bool, error) {
		var b strings.Builder
		code, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: runtimetest.Sh("stty size </proc/1/fd/0"), Stdout: &b})
		size = b.String()
		return err == nil && code == 0 && size == "30 90\n", err
	})
	if err != nil {
		t.Errorf("the container's terminal after a resize: %q, %v; want 30 90", size, err)
	}
	w.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Attach = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Attach did not return after its stdin ended")
	}
	if err := f.RT.ReopenContainerLog(ctx, id); err != nil {
		t.Errorf("ReopenContainerLog: %v", err)
	}
}
