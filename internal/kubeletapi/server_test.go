package kubeletapi_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/runtime"
)

func TestNewChecksConfig(t *testing.T) {
	c := newCA(t, "ca")
	cert, key := c.issue(t, "node", nil, true)
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	good := func() kubeletapi.Config {
		return kubeletapi.Config{
			TLS:       &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: c.pool(), ClientAuth: tls.RequireAndVerifyClientCert},
			Authorize: kubeletapi.AllowCommonNames(apiserverCN),
			Runtime:   newFakeRuntime(),
			Pods:      &fakePods{},
		}
	}
	if _, err := kubeletapi.New(good()); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for name, mutate := range map[string]func(*kubeletapi.Config){
		"no TLS":          func(c *kubeletapi.Config) { c.TLS = nil },
		"no client CAs":   func(c *kubeletapi.Config) { c.TLS.ClientCAs = nil },
		"no client auth":  func(c *kubeletapi.Config) { c.TLS.ClientAuth = tls.RequestClientCert },
		"no serving cert": func(c *kubeletapi.Config) { c.TLS.Certificates = nil },
		"no Authorize":    func(c *kubeletapi.Config) { c.Authorize = nil },
		"no Runtime":      func(c *kubeletapi.Config) { c.Runtime = nil },
		"no Pods":         func(c *kubeletapi.Config) { c.Pods = nil },
	} {
		cfg := good()
		mutate(&cfg)
		if _, err := kubeletapi.New(cfg); err == nil {
			t.Errorf("%s: New accepted the config", name)
		}
	}
}

func TestClientCertificates(t *testing.T) {
	h := newHarness(t)

	if code, body := h.get(t, h.httpClient(), "/healthz"); code != http.StatusOK || body != "ok" {
		t.Errorf("healthz with the API server's certificate: %d %q", code, body)
	}

	// No client certificate: the TLS handshake fails.
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConfig(t, nil, nil)}, Timeout: 10 * time.Second}
	if resp, err := noCert.Get("https://" + h.addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("request without a client certificate got %s", resp.Status)
	}

	// A certificate with the right name from another CA: the handshake fails.
	other := newCA(t, "other-ca")
	cert, key := other.issue(t, apiserverCN, []string{"system:masters"}, false)
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConfig(t, cert, key)}, Timeout: 10 * time.Second}
	if resp, err := foreign.Get("https://" + h.addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("request with another CA's certificate got %s", resp.Status)
	}

	// A node's own client certificate (same CA): 403 in upstream's words.
	cert, key = h.ca.issue(t, "system:node:node-2", []string{"system:nodes"}, false)
	node := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConfig(t, cert, key)}, Timeout: 10 * time.Second}
	code, body := h.get(t, node, "/containerLogs/default/p/c")
	if want := "Forbidden (user=system:node:node-2, verb=get, resource=nodes, subresource(s)=[proxy])\n"; code != http.StatusForbidden || body != want {
		t.Errorf("node certificate: %d %q, want 403 %q", code, body, want)
	}
	resp, err := node.Post("https://"+h.addr+"/exec/default/p/c?command=ls&output=1", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("node certificate, POST exec: %s", resp.Status)
	}
}

func TestUnauthenticatedIs401(t *testing.T) {
	h := newHarness(t, func(c *kubeletapi.Config) { c.TLS.ClientAuth = tls.VerifyClientCertIfGiven })
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConfig(t, nil, nil)}, Timeout: 10 * time.Second}
	if code, body := h.get(t, noCert, "/healthz"); code != http.StatusUnauthorized || body != "Unauthorized" {
		t.Errorf("no certificate: %d %q, want 401 Unauthorized", code, body)
	}
	// A client certificate from another CA fails verification (the
	// handshake fails).
	other := newCA(t, "other-ca")
	cert, key := other.issue(t, apiserverCN, nil, false)
	foreign := &http.Client{Transport: &http.Transport{TLSClientConfig: h.tlsConfig(t, cert, key)}, Timeout: 10 * time.Second}
	if resp, err := foreign.Get("https://" + h.addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("another CA's certificate got %s", resp.Status)
	}
}

// TestStreamingErrors checks the answers given before any protocol upgrade,
// worded as upstream's kubelet words them.
func TestStreamingErrors(t *testing.T) {
	h := newHarness(t)
	h.addPod("ns1", "web", "uid-1", "app", "done")
	h.rt.setState("web-done-1", runtime.ContainerExited)
	waiting := h.addPod("ns1", "new", "uid-2", "app")
	waiting.containers["app"].err = &kubeletapi.WaitingError{Reason: "ContainerCreating"}
	stopped := h.addPod("ns1", "stopped", "uid-3", "app")
	stopped.sandboxErr = kubeletapi.ErrNoInstance
	c := h.httpClient()

	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/nothing", http.StatusNotFound, "404 page not found\n"},
		{"/exec/ns1/web/app?command=ls", http.StatusBadRequest, "you must specify at least 1 of stdin, stdout, stderr"},
		{"/exec/ns1/nope/app?command=ls&output=1", http.StatusNotFound, "pod does not exist"},
		{"/exec/ns1/web/uid-other/app?command=ls&output=1", http.StatusNotFound, "pod does not exist"},
		{"/exec/ns1/web/nope?command=ls&output=1", http.StatusInternalServerError, `container not found ("nope")`},
		{"/exec/ns1/web/done?command=ls&output=1", http.StatusInternalServerError, `container not found ("done")`},
		{"/exec/ns1/new/app?command=ls&output=1", http.StatusInternalServerError, `container not found ("app")`},
		{"/attach/ns1/nope/app?output=1", http.StatusNotFound, "pod does not exist"},
		{"/attach/ns1/web/nope?output=1", http.StatusInternalServerError, "container nope not found in pod web_ns1"},
		{"/attach/ns1/web/uid-1/done?output=1", http.StatusInternalServerError, "container done not found in pod web_ns1"},
		{"/portForward/ns1/nope", http.StatusNotFound, "pod does not exist"},
		{"/portForward/ns1/web/uid-other", http.StatusNotFound, "pod does not exist"},
		{"/portForward/ns1/stopped", http.StatusInternalServerError, `pod not found ("stopped_ns1")`},
	} {
		code, body := h.get(t, c, tc.path)
		if code != tc.code || body != tc.body {
			t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.code, tc.body)
		}
	}

	req, err := http.NewRequest(http.MethodPut, "https://"+h.addr+"/exec/ns1/web/app?command=ls&output=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("PUT exec: %s, want 405", resp.Status)
	}
}

func TestAllowCommonNames(t *testing.T) {
	allow := kubeletapi.AllowCommonNames("a", "b")
	for cn, want := range map[string]bool{"a": true, "b": true, "c": false, "": false} {
		cert := &x509.Certificate{}
		cert.Subject.CommonName = cn
		if got := allow(cert); got != want {
			t.Errorf("AllowCommonNames(a, b)(%q) = %v", cn, got)
		}
	}
}

func TestWaitingErrorIsNoInstance(t *testing.T) {
	var err error = &kubeletapi.WaitingError{Reason: "CrashLoopBackOff"}
	if !errors.Is(err, kubeletapi.ErrNoInstance) {
		t.Error("WaitingError does not match ErrNoInstance")
	}
	var w *kubeletapi.WaitingError
	if !errors.As(errors.Join(errors.New("x"), err), &w) || w.Reason != "CrashLoopBackOff" {
		t.Error("WaitingError not found through wrapping")
	}
}

func TestStartTwiceAndShutdownBeforeStart(t *testing.T) {
	h := newHarness(t)
	if err := h.srv.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "already started") {
		t.Errorf("second Start: %v", err)
	}
	c := newCA(t, "ca")
	cert, key := c.issue(t, "node", nil, true)
	pair, _ := tls.X509KeyPair(cert, key)
	s, err := kubeletapi.New(kubeletapi.Config{
		TLS:       &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: c.pool(), ClientAuth: tls.RequireAndVerifyClientCert},
		Authorize: kubeletapi.AllowCommonNames(apiserverCN), Runtime: newFakeRuntime(), Pods: &fakePods{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if s.Addr() != nil {
		t.Errorf("Addr before Start: %v", s.Addr())
	}
}
