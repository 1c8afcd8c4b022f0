package prober

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/kubernetes/pkg/probe"
	"k8s.io/utils/ptr"
)

// probeOnce runs p for container c of a test pod through the manager's
// handlers (with upstream's retries on errors).
func probeOnce(m *Manager, p *v1.Probe, c *v1.Container, podIP string) (probe.Result, string, error) {
	j := &job{w: &probeWorker{spec: withDefaults(p)}, pod: testPod(*c), container: c, containerID: "cid", podIP: podIP}
	return m.probe(context.Background(), j)
}

// hostPort splits a listener's 127.0.0.1:port address.
func hostPort(t *testing.T, addr net.Addr) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// probeServer is an HTTP server on 127.0.0.1 with the paths the tests use;
// it remembers the last request's headers.
type probeServer struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
}

func newProbeServer(t *testing.T, tls bool) *probeServer {
	s := &probeServer{}
	done := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.last = r
		s.mu.Unlock()
		fmt.Fprint(w, "fine")
	})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "secret body", http.StatusInternalServerError)
	})
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("/redirect-same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ok", http.StatusFound)
	})
	mux.HandleFunc("/redirect-fail", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/fail", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/redirect-other", func(w http.ResponseWriter, r *http.Request) {
		// Another host name: upstream does not follow it.
		_, port := hostPort(t, s.Listener.Addr())
		http.Redirect(w, r, fmt.Sprintf("http://localhost:%d/fail", port), http.StatusFound)
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-done:
		}
	})
	if tls {
		s.Server = httptest.NewTLSServer(mux)
	} else {
		s.Server = httptest.NewServer(mux)
	}
	t.Cleanup(func() {
		close(done)
		s.Close()
	})
	return s
}

func httpProbe(path string, port intstr.IntOrString, mods ...func(*v1.HTTPGetAction)) *v1.Probe {
	a := &v1.HTTPGetAction{Path: path, Port: port}
	for _, f := range mods {
		f(a)
	}
	return &v1.Probe{ProbeHandler: v1.ProbeHandler{HTTPGet: a}}
}

func TestHTTPGet(t *testing.T) {
	m := New(Config{})
	srv := newProbeServer(t, false)
	host, port := hostPort(t, srv.Listener.Addr())
	c := &v1.Container{Name: "c"}
	for _, tc := range []struct {
		path    string
		timeout int32
		want    probe.Result
		output  string // prefix
	}{
		{path: "/ok", want: probe.Success, output: "fine"},
		{path: "/created", want: probe.Success},
		{path: "/fail", want: probe.Failure, output: "HTTP probe failed with statuscode: 500"},
		{path: "/nothing", want: probe.Failure, output: "HTTP probe failed with statuscode: 404"},
		{path: "/redirect-same", want: probe.Success, output: "fine"},
		{path: "/redirect-fail", want: probe.Failure, output: "HTTP probe failed with statuscode: 500"},
		{path: "/redirect-other", want: probe.Warning, output: "Probe terminated redirects, Response body: "},
		{path: "/slow", timeout: 1, want: probe.Failure, output: fmt.Sprintf(`Get "http://%s:%d/slow": context deadline exceeded (Client.Timeout exceeded`, host, port)},
	} {
		t.Run(tc.path, func(t *testing.T) {
			p := httpProbe(tc.path, intstr.FromInt32(int32(port)))
			p.TimeoutSeconds = tc.timeout
			start := time.Now()
			result, output, err := probeOnce(m, p, c, host)
			if err != nil || result != tc.want || !strings.HasPrefix(output, tc.output) {
				t.Fatalf("probe = %q, %q, %v; want %q, %q...", result, output, err, tc.want, tc.output)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("probe took %s", d)
			}
		})
	}
}

func TestHTTPGetRequest(t *testing.T) {
	m := New(Config{})
	srv := newProbeServer(t, false)
	host, port := hostPort(t, srv.Listener.Addr())
	last := func() *http.Request {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		return srv.last
	}

	// Default host (the pod IP), upstream's user agent and Accept.
	if result, out, err := probeOnce(m, httpProbe("/ok", intstr.FromInt32(int32(port))), &v1.Container{Name: "c"}, host); result != probe.Success {
		t.Fatalf("probe = %q, %q, %v", result, out, err)
	}
	r := last()
	if ua := r.Header.Get("User-Agent"); ua != "kube-probe/1.32" {
		t.Errorf("User-Agent %q, want kube-probe/1.32", ua)
	}
	if a := r.Header.Get("Accept"); a != "*/*" {
		t.Errorf("Accept %q, want */*", a)
	}
	if r.Host != net.JoinHostPort(host, strconv.Itoa(port)) {
		t.Errorf("Host %q", r.Host)
	}

	// Named port, headers, Host and User-Agent overrides; an explicit host
	// wins over the pod IP.
	c := &v1.Container{Name: "c", Ports: []v1.ContainerPort{{Name: "metrics", ContainerPort: 1}, {Name: "http", ContainerPort: int32(port)}}}
	p := httpProbe("/ok?x=1", intstr.FromString("http"), func(a *v1.HTTPGetAction) {
		a.Host = host
		a.HTTPHeaders = []v1.HTTPHeader{
			{Name: "X-Custom", Value: "a"},
			{Name: "X-Custom", Value: "b"},
			{Name: "host", Value: "probe.example"},
			{Name: "user-agent", Value: "mine/1"},
		}
	})
	if result, out, err := probeOnce(m, p, c, "192.0.2.1"); result != probe.Success {
		t.Fatalf("probe = %q, %q, %v", result, out, err)
	}
	r = last()
	if r.Host != "probe.example" || r.Header.Get("User-Agent") != "mine/1" ||
		strings.Join(r.Header.Values("X-Custom"), ",") != "a,b" || r.URL.RawQuery != "x=1" {
		t.Fatalf("request Host %q, User-Agent %q, X-Custom %q, query %q", r.Host, r.Header.Get("User-Agent"), r.Header.Values("X-Custom"), r.URL.RawQuery)
	}

	// A port name the container does not have: the probe errors.
	_, _, err := probeOnce(m, httpProbe("/ok", intstr.FromString("nope")), c, host)
	if err == nil || !strings.Contains(err.Error(), `parsing "nope"`) {
		t.Fatalf("unknown port name: err %v", err)
	}
}

func TestHTTPSWithoutVerification(t *testing.T) {
	m := New(Config{})
	srv := newProbeServer(t, true)
	host, port := hostPort(t, srv.Listener.Addr())
	p := httpProbe("/ok", intstr.FromInt32(int32(port)), func(a *v1.HTTPGetAction) { a.Scheme = v1.URISchemeHTTPS })
	if result, out, err := probeOnce(m, p, &v1.Container{Name: "c"}, host); result != probe.Success || err != nil {
		t.Fatalf("probe = %q, %q, %v", result, out, err)
	}
}

// TestHTTPProbesThroughManager checks the events and results of HTTP
// probes end to end.
func TestHTTPProbesThroughManager(t *testing.T) {
	h := newHarness(t)
	srv := newProbeServer(t, false)
	host, port := hostPort(t, srv.Listener.Addr())
	pod := testPod(v1.Container{
		Name:           "c",
		LivenessProbe:  httpProbe("/fail", intstr.FromInt32(int32(port)), func(*v1.HTTPGetAction) {}),
		ReadinessProbe: httpProbe("/redirect-other", intstr.FromInt32(int32(port))),
	})
	pod.Spec.Containers[0].LivenessProbe.FailureThreshold = 1
	h.m.UpdatePod(pod, host, map[string]Running{"c": {ID: "id1", StartedAt: h.clk.Now()}})
	h.settle()
	k, ok := h.m.TakeKill(pod.UID, "c")
	if !ok || k.Unhealthy != "Liveness probe failed: HTTP probe failed with statuscode: 500" {
		t.Fatalf("TakeKill = %+v, %v", k, ok)
	}
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("a redirect to another host is a success (with a warning)")
	}
	events := strings.Join(h.eventList(), "\n")
	for _, want := range []string{
		"c Warning Unhealthy Liveness probe failed: HTTP probe failed with statuscode: 500",
		"c Warning ProbeWarning Readiness probe warning: Probe terminated redirects, Response body: ",
	} {
		if !strings.Contains(events, want) {
			t.Errorf("no event %q in\n%s", want, events)
		}
	}
}

func TestTCPSocket(t *testing.T) {
	m := New(Config{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	host, port := hostPort(t, l.Addr())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, closedPort := hostPort(t, closed.Addr())
	closed.Close()

	c := &v1.Container{Name: "c", Ports: []v1.ContainerPort{{Name: "db", ContainerPort: int32(port)}}}
	tcp := func(port intstr.IntOrString, host string) *v1.Probe {
		return &v1.Probe{ProbeHandler: v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: port, Host: host}}}
	}
	for _, tc := range []struct {
		name   string
		probe  *v1.Probe
		podIP  string
		want   probe.Result
		output string
	}{
		{"listening", tcp(intstr.FromInt32(int32(port)), ""), host, probe.Success, ""},
		{"named port", tcp(intstr.FromString("db"), ""), host, probe.Success, ""},
		{"explicit host", tcp(intstr.FromInt32(int32(port)), host), "192.0.2.1", probe.Success, ""},
		{"refused", tcp(intstr.FromInt32(int32(closedPort)), ""), host, probe.Failure,
			fmt.Sprintf("dial tcp %s:%d: connect: connection refused", host, closedPort)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result, output, err := probeOnce(m, tc.probe, c, tc.podIP)
			if err != nil || result != tc.want || output != tc.output {
				t.Fatalf("probe = %q, %q, %v; want %q, %q", result, output, err, tc.want, tc.output)
			}
		})
	}
}

func TestGRPC(t *testing.T) {
	m := New(Config{})
	serve := func(withHealth bool) int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		if withHealth {
			hs := health.NewServer()
			hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
			healthpb.RegisterHealthServer(s, hs)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = s.Serve(l)
		}()
		t.Cleanup(func() {
			s.Stop()
			<-done
		})
		_, port := hostPort(t, l.Addr())
		return port
	}
	healthy, bare := serve(true), serve(false)
	grpcProbe := func(port int, service *string) *v1.Probe {
		return &v1.Probe{ProbeHandler: v1.ProbeHandler{GRPC: &v1.GRPCAction{Port: int32(port), Service: service}}}
	}
	for _, tc := range []struct {
		name   string
		probe  *v1.Probe
		want   probe.Result
		output string // prefix
	}{
		{"serving", grpcProbe(healthy, nil), probe.Success, "service healthy"},
		{"not serving", grpcProbe(healthy, ptr.To("down")), probe.Failure, `service unhealthy (responded with "NOT_SERVING")`},
		{"unknown service", grpcProbe(healthy, ptr.To("nope")), probe.Failure, "error: health rpc probe failed: rpc error: code = NotFound"},
		{"no health service", grpcProbe(bare, nil), probe.Failure, "error: this server does not implement the grpc health protocol (grpc.health.v1.Health)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			result, output, err := probeOnce(m, tc.probe, &v1.Container{Name: "c"}, "127.0.0.1")
			if err != nil || result != tc.want || !strings.HasPrefix(output, tc.output) {
				t.Fatalf("probe = %q, %q, %v; want %q, %q...", result, output, err, tc.want, tc.output)
			}
		})
	}
}

func TestMissingHandler(t *testing.T) {
	m := New(Config{})
	_, _, err := probeOnce(m, &v1.Probe{}, &v1.Container{Name: "c"}, "127.0.0.1")
	if err == nil || err.Error() != "missing probe handler for web_default(uid-1):c" {
		t.Fatalf("err %v", err)
	}
	_, _, err = probeOnce(m, &v1.Probe{ProbeHandler: v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{"true"}}}}, &v1.Container{Name: "c"}, "")
	if err == nil {
		t.Fatal("an exec probe without an Execer did not error")
	}
}
