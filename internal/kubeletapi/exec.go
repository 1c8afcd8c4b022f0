package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	remotecommandserver "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// exec serves /exec/{podNamespace}/{podID}[/{uid}]/{containerName} as
// upstream kubelet's getExec and GetExec do, with ServeExec in place of the
// redirect to the CRI streaming server.
func (s *Server) exec(w http.ResponseWriter, r *http.Request) {
	namespace, pod, uid, container := r.PathValue("podNamespace"), r.PathValue("podID"), types.UID(r.PathValue("uid")), r.PathValue("containerName")
	streamOpts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, _, ok := s.resolveRunning(r.Context(), w, namespace, pod, uid, container, fmt.Sprintf("container not found (%q)", container))
	if !ok {
		return
	}
	cmd := r.URL.Query()[v1.ExecCommandParam]
	s.log.Debug("exec", "namespace", namespace, "pod", pod, "container", container, "id", id, "cmd", cmd, "tty", streamOpts.TTY)
	remotecommandserver.ServeExec(w, r, &streamAdapter{rt: s.cfg.Runtime, id: id, opts: *streamOpts},
		pod, uid, container, cmd, streamOpts, s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout,
		remotecommandconsts.SupportedStreamingProtocols)
}

// attach serves /attach/{podNamespace}/{podID}[/{uid}]/{containerName} as
// upstream kubelet's getAttach and GetAttach do: the terminal setting is the
// container's, not the request's.
func (s *Server) attach(w http.ResponseWriter, r *http.Request) {
	namespace, pod, uid, container := r.PathValue("podNamespace"), r.PathValue("podID"), types.UID(r.PathValue("uid")), r.PathValue("containerName")
	streamOpts, err := remotecommandserver.NewOptions(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, tty, ok := s.resolveRunning(r.Context(), w, namespace, pod, uid, container, fmt.Sprintf("container %s not found in pod %s_%s", container, pod, namespace))
	if !ok {
		return
	}
	streamOpts.TTY = tty
	if tty {
		streamOpts.Stderr = false
	}
	s.log.Debug("attach", "namespace", namespace, "pod", pod, "container", container, "id", id, "tty", tty)
	remotecommandserver.ServeAttach(w, r, &streamAdapter{rt: s.cfg.Runtime, id: id, opts: *streamOpts},
		pod, uid, container, streamOpts, s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout,
		remotecommandconsts.SupportedStreamingProtocols)
}

// resolveRunning finds the running instance of a container, or answers the
// request with upstream's errors: 404 "pod does not exist" for an unknown
// pod, 500 notFound for a container that is not running (upstream finds
// containers among the runtime's running ones and words it so).
func (s *Server) resolveRunning(ctx context.Context, w http.ResponseWriter, namespace, pod string, uid types.UID, container, notFound string) (string, bool, bool) {
	ref, err := s.cfg.Pods.Container(namespace, pod, uid, container, false)
	switch {
	case errors.Is(err, ErrPodNotFound):
		writeError(w, http.StatusNotFound, "pod does not exist")
		return "", false, false
	case errors.Is(err, ErrContainerNotFound) || errors.Is(err, ErrNoInstance):
		writeError(w, http.StatusInternalServerError, notFound)
		return "", false, false
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return "", false, false
	}
	st, err := s.cfg.Runtime.ContainerStatus(ctx, ref.ID)
	switch {
	case errors.Is(err, runtime.ErrNotFound) || err == nil && st.State != runtime.ContainerRunning:
		writeError(w, http.StatusInternalServerError, notFound)
		return "", false, false
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return "", false, false
	}
	return ref.ID, ref.TTY, true
}

// streamAdapter runs ServeExec's and ServeAttach's sessions on the runtime,
// for one resolved container. Streams the client did not ask for are not
// passed on (the WebSocket protocol hands out placeholders for them).
type streamAdapter struct {
	rt   Runtime
	id   string
	opts remotecommandserver.Options
}

var (
	_ remotecommandserver.Executor = (*streamAdapter)(nil)
	_ remotecommandserver.Attacher = (*streamAdapter)(nil)
)

func (a *streamAdapter) streams(in io.Reader, out, errw io.WriteCloser, tty bool) (io.Reader, io.Writer, io.Writer) {
	var stdin io.Reader
	var stdout, stderr io.Writer
	if a.opts.Stdin && in != nil {
		stdin = in
	}
	if a.opts.Stdout && out != nil {
		stdout = out
	}
	if a.opts.Stderr && !tty && errw != nil {
		stderr = errw
	}
	return stdin, stdout, stderr
}

// ExecInContainer implements remotecommandserver.Executor; a non-zero exit
// code is returned as a utilexec.ExitError, which ServeExec reports as the
// NonZeroExitCode status ("command terminated with exit code N").
func (a *streamAdapter) ExecInContainer(ctx context.Context, _ string, _ types.UID, _ string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	var stop func()
	opts := runtime.ExecOptions{Cmd: cmd, TTY: tty}
	opts.Stdin, opts.Stdout, opts.Stderr = a.streams(in, out, errw, tty)
	opts.Resize, stop = relayResize(resize, tty)
	defer stop()
	code, err := a.rt.Exec(ctx, a.id, opts)
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// AttachContainer implements remotecommandserver.Attacher.
func (a *streamAdapter) AttachContainer(ctx context.Context, _ string, _ types.UID, _ string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	var opts runtime.AttachOptions
	opts.Stdin, opts.Stdout, opts.Stderr = a.streams(in, out, errw, tty)
	var stop func()
	opts.Resize, stop = relayResize(resize, tty)
	defer stop()
	return a.rt.Attach(ctx, a.id, opts)
}

// relayResize converts the protocol's terminal sizes to the runtime's until
// in is closed (when the connection ends), then closes the returned channel.
// After stop, sizes are drained and dropped. Without a terminal there is
// nothing to resize (the WebSocket protocol opens a resize channel anyway):
// the sizes are drained and the runtime gets no channel.
func relayResize(in <-chan remotecommand.TerminalSize, tty bool) (<-chan runtime.TerminalSize, func()) {
	if in == nil {
		return nil, func() {}
	}
	if !tty {
		go func() {
			for range in {
			}
		}()
		return nil, func() {}
	}
	out := make(chan runtime.TerminalSize)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for sz := range in {
			select {
			case out <- runtime.TerminalSize{Width: sz.Width, Height: sz.Height}:
			case <-done:
			}
		}
	}()
	return out, func() { close(done) }
}
