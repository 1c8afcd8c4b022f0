package kubeletapi_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// newNetNS creates a network namespace with loopback up, bind-mounted on a
// file in the test's temporary directory, and removes it at the end.
func newNetNS(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	path := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		// The thread stays locked: it leaves the process's network
		// namespace and ends with the goroutine.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", path, err)
		}
	})
	if err := ns.WithNetNSPath(path, func(ns.NetNS) error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatalf("loopback up: %v", err)
	}
	return path
}

// tcpServer answers every connection with name, then "got:" and what the
// client sent until it half-closed. accepted counts connections.
type tcpServer struct {
	ln       net.Listener
	accepted atomic.Int64
}

func serveTCP(t *testing.T, netns, addr, name string) *tcpServer {
	t.Helper()
	s := &tcpServer{}
	listen := func() (err error) {
		s.ln, err = net.Listen("tcp4", addr)
		return err
	}
	var err error
	if netns == "" {
		err = listen()
	} else {
		err = ns.WithNetNSPath(netns, func(ns.NetNS) error { return listen() })
	}
	if err != nil {
		t.Fatalf("listen on %s in %q: %v", addr, netns, err)
	}
	t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, name+"\n")
				b, _ := io.ReadAll(c)
				_, _ = io.WriteString(c, "got:"+string(b))
			}()
		}
	}()
	return s
}

func (s *tcpServer) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// forward starts a client-go port forwarder (local port 0 to remote) and
// returns the local port.
func forward(t *testing.T, dialer httpstream.Dialer, remote int) int {
	t.Helper()
	stop, ready := make(chan struct{}), make(chan struct{})
	var out, errOut testutil.SyncBuffer
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(remote)}, stop, ready, &out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- fw.ForwardPorts() }()
	t.Cleanup(func() {
		close(stop)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("port forwarder did not stop")
		}
	})
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("port forward: %v (%s)", err, errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("port forward not ready")
	}
	ports, err := fw.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	return int(ports[0].Local)
}

// roundTrip connects to the local port, sends msg, half-closes and returns
// everything the other side sent.
func roundTrip(t *testing.T, port int, msg string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read forwarded connection: %v", err)
	}
	return string(b)
}

func spdyDialer(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer {
	t.Helper()
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return spdy.NewDialer(upgrader, &http.Client{Transport: rt}, "POST", u)
}

// kubectlDialer is kubectl 1.32's: SPDY tunneled over WebSocket, falling
// back to SPDY.
func kubectlDialer(t *testing.T, cfg *rest.Config, u *url.URL) httpstream.Dialer {
	t.Helper()
	tunneling, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return portforward.NewFallbackDialer(tunneling, spdyDialer(t, cfg, u), func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}

func TestPortForward(t *testing.T) {
	netns := newNetNS(t)
	// The same port on the node and in the pod: traffic must reach the pod's.
	host := serveTCP(t, "", "127.0.0.1:0", "host")
	pod := serveTCP(t, netns, "127.0.0.1:"+strconv.Itoa(host.port()), "pod")
	// A port only the node listens on: not reachable through the pod.
	hostOnly := serveTCP(t, "", "127.0.0.1:0", "host-only")

	h := newHarness(t)
	p := h.addPod("ns1", "web", "uid-1", "app")
	p.sandbox = kubeletapi.SandboxRef{ID: "sb-1", NetNSPath: netns}
	hostNet := h.addPod("ns1", "hostnet", "uid-2", "app")
	hostNet.sandbox = kubeletapi.SandboxRef{ID: "sb-2"}

	kubelet := func(path string) *url.URL { return &url.URL{Scheme: "https", Host: h.addr, Path: path} }

	t.Run("spdy", func(t *testing.T) {
		local := forward(t, spdyDialer(t, h.client, kubelet("/portForward/ns1/web")), pod.port())
		for i := range 3 {
			msg := fmt.Sprintf("hello %d", i)
			if got := roundTrip(t, local, msg); got != "pod\ngot:"+msg {
				t.Errorf("connection %d: %q", i, got)
			}
		}
	})

	t.Run("spdy with uid", func(t *testing.T) {
		local := forward(t, spdyDialer(t, h.client, kubelet("/portForward/ns1/web/uid-1")), pod.port())
		if got := roundTrip(t, local, "x"); got != "pod\ngot:x" {
			t.Errorf("got %q", got)
		}
	})

	t.Run("kubectl through the API server", func(t *testing.T) {
		api := newAPIProxy(t, h)
		u, _ := url.Parse(api.srv.URL + "/api/v1/namespaces/ns1/pods/web/portforward")
		local := forward(t, kubectlDialer(t, api.config, u), pod.port())
		big := strings.Repeat("0123456789", 100_000)
		if got := roundTrip(t, local, big); got != "pod\ngot:"+big {
			t.Errorf("1 MB round trip: got %d bytes", len(got))
		}
		if api.translated.Load() == 0 || api.proxied.Load() != 0 {
			t.Errorf("%d tunneled requests translated, %d proxied: want all translated", api.translated.Load(), api.proxied.Load())
		}
	})

	t.Run("host network pod", func(t *testing.T) {
		local := forward(t, spdyDialer(t, h.client, kubelet("/portForward/ns1/hostnet")), host.port())
		if got := roundTrip(t, local, "y"); got != "host\ngot:y" {
			t.Errorf("got %q", got)
		}
	})

	t.Run("port closed in the pod", func(t *testing.T) {
		before := hostOnly.accepted.Load()
		local := forward(t, spdyDialer(t, h.client, kubelet("/portForward/ns1/web")), hostOnly.port())
		if got := roundTrip(t, local, "z"); got != "" {
			t.Errorf("forward to a port closed in the pod got %q", got)
		}
		if hostOnly.accepted.Load() != before {
			t.Error("the node's listener got the pod's connection")
		}
	})

	if n := host.accepted.Load(); n != 1 {
		t.Errorf("node listener accepted %d connections, want 1 (the host-network pod's)", n)
	}
}
