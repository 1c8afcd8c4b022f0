package prober

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/probe"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

const (
	// maxProbeRetries is how often upstream runs a probe whose handler
	// errored before it gives up for this period.
	maxProbeRetries = 3
	// maxExecOutput is how much of an exec probe's output upstream keeps.
	maxExecOutput = 10 << 10
	// userAgent is what upstream v1.32's kubelet sends with HTTP probes.
	// (Upstream derives it from the build's version; peapod pins it so that
	// it does not depend on linker flags.)
	userAgent = "kube-probe/1.32"
)

// probe runs j's probe, retrying a handler that errors, as upstream's
// runProbeWithRetries.
func (m *Manager) probe(ctx context.Context, j *job) (probe.Result, string, error) {
	var (
		result probe.Result
		output string
		err    error
	)
	for range maxProbeRetries {
		result, output, err = m.runProbe(ctx, j.w.spec, j.pod, j.container, j.containerID, j.podIP)
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	return result, output, err
}

// runProbe runs the probe's handler once. A non-nil error means the handler
// could not run (not a failed probe).
func (m *Manager) runProbe(ctx context.Context, p *v1.Probe, pod *v1.Pod, c *v1.Container, containerID, podIP string) (probe.Result, string, error) {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	switch {
	case p.Exec != nil:
		return m.execProbe(ctx, c, containerID, p.Exec.Command, timeout)

	case p.HTTPGet != nil:
		req, err := httpprobe.NewRequestForHTTPGetAction(p.HTTPGet, c, podIP, "probe")
		if err != nil {
			return probe.Unknown, "", err
		}
		if !hasHeader(p.HTTPGet.HTTPHeaders, "User-Agent") {
			req.Header.Set("User-Agent", userAgent)
		}
		return m.http.Probe(req.WithContext(ctx), timeout)

	case p.TCPSocket != nil:
		port, err := probe.ResolveContainerPort(p.TCPSocket.Port, c)
		if err != nil {
			return probe.Unknown, "", err
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		return m.tcp.Probe(host, port, timeout)

	case p.GRPC != nil:
		service := ""
		if p.GRPC.Service != nil {
			service = *p.GRPC.Service
		}
		return m.grpc.Probe(podIP, service, int(p.GRPC.Port), timeout)
	}
	return probe.Unknown, "", fmt.Errorf("missing probe handler for %s_%s(%s):%s", pod.Name, pod.Namespace, pod.UID, c.Name)
}

// execProbe runs an exec probe as upstream's exec prober over CRI ExecSync:
// exit code 0 is success, any other a failure with the output; running past
// the timeout is a failure.
func (m *Manager) execProbe(ctx context.Context, c *v1.Container, containerID string, command []string, timeout time.Duration) (probe.Result, string, error) {
	if m.exec == nil {
		return probe.Unknown, "", errors.New("exec probes are not supported on this node")
	}
	// Only the container's static environment, as upstream's
	// ExpandContainerCommandOnlyStatic.
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	mapping := expansion.MappingFuncFor(env)
	cmd := make([]string, len(command))
	for i, a := range command {
		cmd[i] = expansion.Expand(a, mapping)
	}

	ectx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	code, out, err := m.exec.Exec(ectx, containerID, cmd, timeout)
	if len(out) > maxExecOutput {
		out = out[:maxExecOutput]
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			// Upstream's CRI client's words for an ExecSync timeout.
			return probe.Failure, fmt.Sprintf("command timed out: %q timed out after %s", strings.Join(cmd, " "), timeout), nil
		}
		// The runtime's error as is: it becomes the "errored" event.
		return probe.Unknown, "", err
	}
	if code != 0 {
		return probe.Failure, string(out), nil
	}
	return probe.Success, string(out), nil
}

func hasHeader(headers []v1.HTTPHeader, name string) bool {
	for _, h := range headers {
		if http.CanonicalHeaderKey(h.Name) == http.CanonicalHeaderKey(name) {
			return true
		}
	}
	return false
}
