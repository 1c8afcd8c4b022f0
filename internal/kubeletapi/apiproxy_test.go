package kubeletapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/httpstream/wsstream"
	"k8s.io/apimachinery/pkg/util/proxy"
	genericrest "k8s.io/apiserver/pkg/registry/generic/rest"
	proxyutil "k8s.io/apiserver/pkg/util/proxy"
	"k8s.io/client-go/rest"
)

// apiProxy plays the API server's part for kubectl: discovery, GET of the
// pods it is given, and pods/log, pods/exec, pods/attach and
// pods/portforward with the same upstream handlers the API server uses
// (k8s.io/kubernetes/pkg/registry/core/pod/rest: LocationStreamer with the
// generic response checker; the upgrade-aware proxy wrapped in the WebSocket
// v5 translator and the port-forward tunnel) and the same kubelet URLs
// (pkg/registry/core/pod/strategy.go).
type apiProxy struct {
	srv    *httptest.Server
	config *rest.Config
	// translated and proxied count the streaming requests the API server
	// translated (WebSocket v5, tunneled port-forward) and proxied as they
	// were.
	translated, proxied atomic.Int64

	mu   sync.Mutex
	pods map[string]*corev1.Pod // "namespace/name"
}

type responder struct{}

func (responder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func newAPIProxy(t *testing.T, h *harness) *apiProxy {
	a := &apiProxy{pods: map[string]*corev1.Pod{}}
	transport := &http.Transport{TLSClientConfig: h.tlsConf}
	t.Cleanup(transport.CloseIdleConnections)
	mux := http.NewServeMux()

	writeJSON := func(w http.ResponseWriter, code int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
	writeStatus := func(w http.ResponseWriter, err error) {
		var se apierrors.APIStatus
		if !errors.As(err, &se) {
			se = apierrors.NewInternalError(err)
		}
		st := se.Status()
		st.Kind, st.APIVersion = "Status", "v1"
		writeJSON(w, int(st.Code), st)
	}
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, map[string]string{"major": "1", "minor": "32", "gitVersion": "v1.32.13", "platform": "linux/amd64"})
	})
	mux.HandleFunc("GET /api", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"},
			ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{{ClientCIDR: "0.0.0.0/0", ServerAddress: a.srv.Listener.Addr().String()}}})
	})
	mux.HandleFunc("GET /apis", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{}})
	})
	mux.HandleFunc("GET /api/v1", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, 200, metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList"}, GroupVersion: "v1", APIResources: []metav1.APIResource{
			{Name: "pods", SingularName: "pod", Namespaced: true, Kind: "Pod", ShortNames: []string{"po"}, Verbs: metav1.Verbs{"get", "list"}},
			{Name: "pods/attach", Namespaced: true, Kind: "PodAttachOptions", Verbs: metav1.Verbs{"create", "get"}},
			{Name: "pods/exec", Namespaced: true, Kind: "PodExecOptions", Verbs: metav1.Verbs{"create", "get"}},
			{Name: "pods/log", Namespaced: true, Kind: "Pod", Verbs: metav1.Verbs{"get"}},
			{Name: "pods/portforward", Namespaced: true, Kind: "PodPortForwardOptions", Verbs: metav1.Verbs{"create", "get"}},
		}})
	})
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/pods/{pod}", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		p, ok := a.pods[r.PathValue("ns")+"/"+r.PathValue("pod")]
		a.mu.Unlock()
		if !ok {
			writeStatus(w, apierrors.NewNotFound(corev1.Resource("pods"), r.PathValue("pod")))
			return
		}
		writeJSON(w, 200, p)
	})
	mux.HandleFunc("/api/v1/namespaces/{ns}/pods/{pod}/{sub}", func(w http.ResponseWriter, r *http.Request) {
		ns, pod, sub := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("sub")
		q := r.URL.Query()
		container := q.Get("container")
		a.mu.Lock()
		if p, ok := a.pods[ns+"/"+pod]; ok && container == "" && len(p.Spec.Containers) == 1 {
			container = p.Spec.Containers[0].Name
		}
		a.mu.Unlock()
		params := url.Values{}
		loc := &url.URL{Scheme: "https", Host: h.addr}

		if sub == "log" {
			for _, k := range []string{"follow", "previous", "timestamps"} {
				if q.Get(k) == "true" {
					params.Add(k, "true")
				}
			}
			for _, k := range []string{"sinceSeconds", "sinceTime", "tailLines", "limitBytes"} {
				if v := q.Get(k); v != "" {
					params.Add(k, v)
				}
			}
			loc.Path = fmt.Sprintf("/containerLogs/%s/%s/%s", ns, pod, container)
			loc.RawQuery = params.Encode()
			streamer := &genericrest.LocationStreamer{
				Location: loc, Transport: transport, ContentType: "text/plain", Flush: q.Get("follow") == "true",
				ResponseChecker: genericrest.NewGenericHttpResponseChecker(corev1.Resource("pods/log"), pod),
				RedirectChecker: genericrest.PreventRedirects,
			}
			in, _, contentType, err := streamer.InputStream(r.Context(), "v1", "")
			if err != nil {
				writeStatus(w, err)
				return
			}
			defer in.Close()
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(http.StatusOK)
			buf := make([]byte, 32*1024)
			for {
				n, err := in.Read(buf)
				if n > 0 {
					_, _ = w.Write(buf[:n])
					w.(http.Flusher).Flush()
				}
				if err != nil {
					return
				}
			}
		}

		var opts proxyutil.Options
		for _, p := range []struct {
			name, param string
			set         *bool
		}{{"stdin", "input", &opts.Stdin}, {"stdout", "output", &opts.Stdout}, {"stderr", "error", &opts.Stderr}, {"tty", "tty", &opts.Tty}} {
			if q.Get(p.name) == "true" {
				params.Add(p.param, "1")
				*p.set = true
			}
		}
		var handler http.Handler
		var translate func(*http.Request) bool
		switch sub {
		case "exec", "attach":
			for _, c := range q["command"] {
				params.Add("command", c)
			}
			loc.Path = fmt.Sprintf("/%s/%s/%s/%s", sub, ns, pod, container)
			loc.RawQuery = params.Encode()
			upgrade := proxy.NewUpgradeAwareHandler(loc, transport, false, true, responder{})
			translate = wsstream.IsWebSocketRequestWithStreamCloseProtocol
			handler = proxyutil.NewTranslatingHandler(upgrade, proxyutil.NewStreamTranslatorHandler(loc, transport, 0, opts), translate)
		case "portforward":
			loc.Path = fmt.Sprintf("/portForward/%s/%s", ns, pod)
			upgrade := proxy.NewUpgradeAwareHandler(loc, transport, false, true, responder{})
			translate = wsstream.IsWebSocketRequestWithTunnelingProtocol
			handler = proxyutil.NewTranslatingHandler(upgrade, proxyutil.NewTunnelingHandler(upgrade), translate)
		default:
			http.NotFound(w, r)
			return
		}
		if translate(r) {
			a.translated.Add(1)
		} else {
			a.proxied.Add(1)
		}
		handler.ServeHTTP(w, r)
	})
	a.srv = httptest.NewServer(mux)
	t.Cleanup(a.srv.Close)
	a.config = &rest.Config{Host: a.srv.URL}
	return a
}

// addPod makes the API serve a running pod with the given containers.
func (a *apiProxy) addPod(ns, name string, containers ...corev1.Container) {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{Containers: containers, NodeName: "node-1"},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	for _, c := range containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		})
	}
	a.mu.Lock()
	a.pods[ns+"/"+name] = p
	a.mu.Unlock()
}

// podURL turns a kubelet path (/exec/ns/pod/container?command=..&input=1)
// into the API's (/api/v1/namespaces/ns/pods/pod/exec?container=..&stdin=true).
func (a *apiProxy) podURL(t *testing.T, kubeletPath string) *url.URL {
	u, err := url.Parse(kubeletPath)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	q := url.Values{}
	if len(parts) > 3 {
		q.Set("container", parts[len(parts)-1])
	}
	kq := u.Query()
	for param, name := range map[string]string{"input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty"} {
		if kq.Get(param) == "1" {
			q.Set(name, "true")
		}
	}
	q["command"] = kq["command"]
	api, _ := url.Parse(a.srv.URL)
	api.Path = fmt.Sprintf("/api/v1/namespaces/%s/pods/%s/%s", parts[1], parts[2], strings.ToLower(parts[0]))
	api.RawQuery = q.Encode()
	return api
}
