package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
)

// portForward serves /portForward/{podNamespace}/{podID}[/{uid}] as upstream
// kubelet's getPortForward and GetPortForward do, with ServePortForward in
// place of the redirect to the CRI streaming server.
func (s *Server) portForward(w http.ResponseWriter, r *http.Request) {
	namespace, pod, uid := r.PathValue("podNamespace"), r.PathValue("podID"), types.UID(r.PathValue("uid"))
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	sb, err := s.cfg.Pods.Sandbox(namespace, pod, uid)
	switch {
	case errors.Is(err, ErrPodNotFound):
		writeError(w, http.StatusNotFound, "pod does not exist")
		return
	case errors.Is(err, ErrNoInstance):
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("pod not found (%q)", pod+"_"+namespace))
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	s.log.Debug("port-forward", "namespace", namespace, "pod", pod, "sandbox", sb.ID, "netns", sb.NetNSPath)
	portforward.ServePortForward(w, r, &forwarder{netns: sb.NetNSPath, log: s.log}, pod, uid, opts,
		s.cfg.StreamIdleTimeout, s.cfg.StreamCreationTimeout, portforward.SupportedProtocols)
}

// forwarder connects forwarded streams to ports in one network namespace.
type forwarder struct {
	netns string // "" is the node's own
	log   *slog.Logger
}

var _ portforward.PortForwarder = (*forwarder)(nil)

// PortForward implements portforward.PortForwarder: it connects to
// localhost:port in the pod's network namespace and copies both ways. When
// the client stops sending, the pod's side is half-closed; the forward ends
// when the pod's side stops sending (or either side fails).
func (f *forwarder) PortForward(ctx context.Context, _ string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	conn, err := f.dial(port)
	if err != nil {
		return err
	}
	defer conn.Close()

	go func() {
		_, err := io.Copy(conn, stream)
		if err != nil {
			f.log.Debug("port-forward: client to pod", "port", port, "err", err)
			_ = conn.Close()
			return
		}
		_ = conn.CloseWrite()
	}()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		done <- err
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		f.log.Debug("port-forward: pod to client", "port", port, "err", err)
	}
	return nil
}

// dial connects to 127.0.0.1:port, else [::1]:port, from inside the network
// namespace (the socket is created there and stays there), as containerd's
// CRI port-forward does.
func (f *forwarder) dial(port int32) (*net.TCPConn, error) {
	var conn net.Conn
	var err4, err6 error
	d := net.Dialer{Timeout: 10 * time.Second}
	dial := func() {
		p := strconv.Itoa(int(port))
		conn, err4 = d.Dial("tcp4", net.JoinHostPort("127.0.0.1", p))
		if err4 != nil {
			conn, err6 = d.Dial("tcp6", net.JoinHostPort("::1", p))
		}
	}
	if f.netns == "" {
		dial()
	} else if err := ns.WithNetNSPath(f.netns, func(ns.NetNS) error { dial(); return nil }); err != nil {
		return nil, fmt.Errorf("failed to enter network namespace %q: %w", f.netns, err)
	}
	if conn == nil {
		return nil, fmt.Errorf("failed to connect to localhost:%d inside namespace %q, IPv4: %v IPv6 %v", port, f.netns, err4, err6)
	}
	return conn.(*net.TCPConn), nil
}
