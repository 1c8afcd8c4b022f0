package apiserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/peapod-dev/peapod/internal/certs"
)

func TestArgs(t *testing.T) {
	cfg := Config{BindAddress: "127.0.0.1", Port: 6443, EtcdServers: []string{"unix:///d/etcd.sock"},
		ServiceCIDR: "10.43.0.0/16", NodePortRange: "30000-32767", Certs: certs.Paths{Dir: "/d/tls"}}
	args := strings.Join(cfg.args("/d/authn.yaml"), " ")
	for _, want := range []string{
		"--secure-port=6443", "--bind-address=127.0.0.1", "--etcd-servers=unix:///d/etcd.sock",
		"--service-cluster-ip-range=10.43.0.0/16", "--service-node-port-range=30000-32767",
		"--client-ca-file=/d/tls/ca.crt", "--authentication-config=/d/authn.yaml",
		"api/all=false", "api/v1=true", "apps/v1=true", "batch/v1=true", "discovery.k8s.io/v1=true",
		"coordination.k8s.io/v1=true", "events.k8s.io/v1=true", "node.k8s.io/v1=true", "policy/v1=true",
		"scheduling.k8s.io/v1=true",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "--advertise-address") {
		t.Errorf("advertise address set without being asked: %s", args)
	}
}

func TestNoCustomResources(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := noCustomResources(next)
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, crdListPath, http.StatusOK},
		{http.MethodPost, crdListPath, http.StatusTeapot},
		{http.MethodGet, "/apis/apps/v1", http.StatusTeapot},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.want {
			t.Errorf("%s %s = %d, want %d", tc.method, tc.path, rec.Code, tc.want)
		}
		if rec.Code == http.StatusOK && !strings.Contains(rec.Body.String(), `"kind":"CustomResourceDefinitionList"`) {
			t.Errorf("CRD list body = %s", rec.Body.String())
		}
	}
}
