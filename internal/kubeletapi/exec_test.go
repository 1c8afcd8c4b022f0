package kubeletapi_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// An executorFactory makes a client-go executor for a URL of the server.
type executorFactory func(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error)

func spdyExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	return remotecommand.NewSPDYExecutor(cfg, "POST", u)
}

// websocketV4Executor speaks the newest WebSocket protocol the kubelet's
// streaming library serves (what the API server proxies to it for
// WebSocket clients other than kubectl 1.29+).
func websocketV4Executor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	return remotecommand.NewWebSocketExecutorForProtocols(cfg, "GET", u.String(), "v4.channel.k8s.io")
}

// kubectlExecutor is what kubectl 1.32 uses: WebSocket v5, falling back to
// SPDY when the upgrade fails.
func kubectlExecutor(cfg *rest.Config, u *url.URL) (remotecommand.Executor, error) {
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(cfg, "POST", u)
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

// execStream runs one session against the server at path.
func execStream(ctx context.Context, h *harness, mk executorFactory, path string, opts remotecommand.StreamOptions) error {
	u, err := url.Parse("https://" + h.addr + path)
	if err != nil {
		return err
	}
	return streamTo(ctx, h.client, mk, u, opts)
}

func streamTo(ctx context.Context, cfg *rest.Config, mk executorFactory, u *url.URL, opts remotecommand.StreamOptions) error {
	ex, err := mk(cfg, u)
	if err != nil {
		return err
	}
	return ex.StreamWithContext(ctx, opts)
}

// sizeQueue feeds terminal sizes to an executor.
type sizeQueue chan remotecommand.TerminalSize

func (q sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q
	if !ok {
		return nil
	}
	return &sz
}

// waitFor waits until buf contains want.
func waitFor(t *testing.T, buf *testutil.SyncBuffer, want string) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		if !strings.Contains(buf.String(), want) {
			return fmt.Errorf("output %q does not contain %q yet", buf.String(), want)
		}
		return nil
	})
}

// sessionTests run exec and attach sessions through one way of reaching the
// server (session builds the client for a kubelet path). stdinEOF tells
// whether the protocol can signal the end of stdin (WebSocket v4 cannot:
// that is why v5 exists).
func sessionTests(t *testing.T, h *harness, stdinEOF bool, session func(path string) func(ctx context.Context, opts remotecommand.StreamOptions) error) {
	h.addPod("ns1", "web", "uid-1", "app")
	tty := h.addPod("ns1", "term", "uid-2", "app")
	tty.containers["app"].current.TTY = true

	t.Run("stdin to stdout", func(t *testing.T) {
		var out, errOut testutil.SyncBuffer
		path := "/exec/ns1/web/app?command=cat&input=1&output=1&error=1"
		if !stdinEOF {
			path = "/exec/ns1/web/app?command=head&command=2&input=1&output=1&error=1"
		}
		err := session(path)(t.Context(), remotecommand.StreamOptions{
			Stdin: strings.NewReader("hello\nworld\n"), Stdout: &out, Stderr: &errOut,
		})
		if err != nil {
			t.Fatalf("exec cat: %v", err)
		}
		if out.String() != "hello\nworld\n" || errOut.String() != "" {
			t.Errorf("exec cat: stdout %q stderr %q", out.String(), errOut.String())
		}
	})

	t.Run("stdout and stderr", func(t *testing.T) {
		var out, errOut testutil.SyncBuffer
		err := session("/exec/ns1/web/uid-1/app?command=echo&command=a&command=b+c&output=1&error=1")(t.Context(), remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
		if err != nil {
			t.Fatalf("exec echo: %v", err)
		}
		if out.String() != "a b c\n" || errOut.String() != "err:a b c\n" {
			t.Errorf("exec echo: stdout %q stderr %q", out.String(), errOut.String())
		}
		h.rt.mu.Lock()
		last := h.rt.execs[len(h.rt.execs)-1]
		h.rt.mu.Unlock()
		if !slices.Equal(last.Cmd, []string{"echo", "a", "b c"}) || last.Stdin != nil || last.TTY {
			t.Errorf("runtime got %+v", last)
		}
	})

	t.Run("exit code", func(t *testing.T) {
		var out testutil.SyncBuffer
		err := session("/exec/ns1/web/app?command=exit&command=3&output=1&error=1")(t.Context(), remotecommand.StreamOptions{Stdout: &out, Stderr: &out})
		if err == nil || err.Error() != "command terminated with exit code 3" {
			t.Fatalf("exit 3: error %v, want \"command terminated with exit code 3\"", err)
		}
		var exitErr utilexec.CodeExitError
		if !errors.As(err, &exitErr) || exitErr.Code != 3 {
			t.Errorf("exit 3: %T %v is not a CodeExitError with code 3", err, err)
		}
	})

	t.Run("runtime error", func(t *testing.T) {
		err := session("/exec/ns1/web/app?command=fail&output=1")(t.Context(), remotecommand.StreamOptions{Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "error executing command in container: boom") {
			t.Errorf("empty command: %v", err)
		}
	})

	t.Run("tty resize", func(t *testing.T) {
		var out testutil.SyncBuffer
		stdinR, stdinW := io.Pipe()
		sizes := make(sizeQueue, 3)
		sizes <- remotecommand.TerminalSize{Width: 80, Height: 24}
		done := make(chan error, 1)
		go func() {
			done <- session("/exec/ns1/web/app?command=resize&input=1&output=1&tty=1")(t.Context(), remotecommand.StreamOptions{
				Stdin: stdinR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes,
			})
		}()
		waitFor(t, &out, "80x24\n")
		sizes <- remotecommand.TerminalSize{Width: 132, Height: 43}
		waitFor(t, &out, "132x43\n")
		sizes <- remotecommand.TerminalSize{Width: 1, Height: 1}
		close(sizes)
		defer stdinW.Close()
		if err := <-done; err != nil {
			t.Fatalf("exec tty: %v", err)
		}
		h.rt.mu.Lock()
		last := h.rt.execs[len(h.rt.execs)-1]
		h.rt.mu.Unlock()
		if !last.TTY || last.Stderr != nil {
			t.Errorf("runtime got tty %v stderr %v", last.TTY, last.Stderr)
		}
	})

	t.Run("attach", func(t *testing.T) {
		var out, errOut testutil.SyncBuffer
		err := session("/attach/ns1/web/app?input=1&output=1&error=1")(t.Context(), remotecommand.StreamOptions{
			Stdin: strings.NewReader("hi\nbye\n"), Stdout: &out, Stderr: &errOut,
		})
		if err != nil {
			t.Fatalf("attach: %v", err)
		}
		if out.String() != "main:hi\n" || errOut.String() != "attached\n" {
			t.Errorf("attach: stdout %q stderr %q", out.String(), errOut.String())
		}
	})

	t.Run("attach tty", func(t *testing.T) {
		var out testutil.SyncBuffer
		stdinR, stdinW := io.Pipe()
		sizes := make(sizeQueue, 2)
		sizes <- remotecommand.TerminalSize{Width: 100, Height: 30}
		done := make(chan error, 1)
		go func() {
			done <- session("/attach/ns1/term/app?input=1&output=1&tty=1")(t.Context(), remotecommand.StreamOptions{
				Stdin: stdinR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes,
			})
		}()
		waitFor(t, &out, "100x30\n")
		sizes <- remotecommand.TerminalSize{Width: 1, Height: 1}
		close(sizes)
		defer stdinW.Close()
		if err := <-done; err != nil {
			t.Fatalf("attach tty: %v", err)
		}
	})
}

func TestSessionsSPDY(t *testing.T) {
	h := newHarness(t)
	sessionTests(t, h, true, func(path string) func(context.Context, remotecommand.StreamOptions) error {
		return func(ctx context.Context, opts remotecommand.StreamOptions) error {
			return execStream(ctx, h, spdyExecutor, path, opts)
		}
	})
}

func TestSessionsWebSocket(t *testing.T) {
	h := newHarness(t)
	sessionTests(t, h, false, func(path string) func(context.Context, remotecommand.StreamOptions) error {
		return func(ctx context.Context, opts remotecommand.StreamOptions) error {
			return execStream(ctx, h, websocketV4Executor, path, opts)
		}
	})
}

// TestSessionsThroughAPIServerProxy runs kubectl 1.32's client (WebSocket v5
// with SPDY fallback) against the API server's own proxy handlers, which
// translate to SPDY towards this server: the path kubectl exec and attach
// take in a cluster.
func TestSessionsThroughAPIServerProxy(t *testing.T) {
	h := newHarness(t)
	api := newAPIProxy(t, h)
	sessionTests(t, h, true, func(path string) func(context.Context, remotecommand.StreamOptions) error {
		return func(ctx context.Context, opts remotecommand.StreamOptions) error {
			return streamTo(ctx, api.config, kubectlExecutor, api.podURL(t, path), opts)
		}
	})
	if api.translated.Load() == 0 || api.proxied.Load() != 0 {
		t.Errorf("%d requests translated from WebSocket v5, %d proxied (SPDY fallback): want all translated", api.translated.Load(), api.proxied.Load())
	}
}

// TestExecErrorsReachTheClient: errors answered before the upgrade reach
// client-go with upstream's wording.
func TestExecErrorsReachTheClient(t *testing.T) {
	h := newHarness(t)
	h.addPod("ns1", "web", "uid-1", "app")
	err := execStream(t.Context(), h, spdyExecutor, "/exec/ns1/web/nope?command=ls&output=1", remotecommand.StreamOptions{Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), `container not found ("nope")`) {
		t.Errorf("exec into a missing container: %v", err)
	}
	err = execStream(t.Context(), h, spdyExecutor, "/exec/ns1/nope/app?command=ls&output=1", remotecommand.StreamOptions{Stdout: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "pod does not exist") {
		t.Errorf("exec into a missing pod: %v", err)
	}
}
