package e2e

// What a fresh server offers before anyone creates anything: namespaces, the
// kubernetes Service and its endpoints, version, discovery (api-resources,
// explain), and which endpoints answer without credentials.

import (
	"encoding/json"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestKubectlFreshCluster(t *testing.T) {
	srv := StartServer(t)
	t.Cleanup(srv.Kill)

	// Once the server says it is ready, a user can go: the kubernetes Service
	// and the default ServiceAccount (needed to create pods) are there within
	// moments, not after a controller's retry interval.
	t.Run("usable when ready", func(t *testing.T) {
		s := on(t, srv)
		lag := waitBootstrap(t, s, 30*time.Second, true)
		if lag > 2*time.Second {
			t.Errorf("the kubernetes Service / default ServiceAccount appeared %s after \"peapod server ready\"; server log:\n%s",
				lag.Round(time.Millisecond), grepLines(s.Logs(), "kubernetes service", "peapod server ready", "allocated clusterIPs"))
		}
	})

	t.Run("default namespaces", func(t *testing.T) {
		s := on(t, srv)
		// kube-public and kube-node-lease are made by a controller right after start.
		var tb table
		Eventually(t, 20*time.Second, func() error {
			tb = parseTable(t, s.MustKubectl("get", "ns"))
			if len(tb.Rows) < 4 {
				return errorf("namespaces: %q", tb.Rows)
			}
			return nil
		})
		tb.wantHeader(t, "NAME", "STATUS", "AGE")
		if got := strings.Join(tb.column(t, "NAME"), " "); got != "default kube-node-lease kube-public kube-system" {
			t.Errorf("namespaces %q, want exactly default kube-node-lease kube-public kube-system", got)
		}
		for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
			row := tb.row(t, "NAME", ns)
			wantCells(t, row, "STATUS", "Active")
			wantAge(t, row["AGE"])
		}
		// Same through the short name and jsonpath.
		mustEqual(t, "ns jsonpath", jsonpath(t, s, "{.items[*].metadata.name}", "ns"), "default kube-node-lease kube-public kube-system")
		mustEqual(t, "finalizers", jsonpath(t, s, "{.spec.finalizers}", "namespace", "default"), `["kubernetes"]`)
	})

	t.Run("namespace contents", func(t *testing.T) {
		s := on(t, srv)
		// Every namespace gets a default ServiceAccount and the root CA ConfigMap.
		Eventually(t, 20*time.Second, func() error {
			out := s.MustKubectl("get", "sa", "-A", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name", "--no-headers")
			for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
				if !regexp.MustCompile(`(?m)^` + ns + ` +default$`).MatchString(out) {
					return errorf("no default ServiceAccount in %s: %q", ns, out)
				}
			}
			out = s.MustKubectl("get", "cm", "-A", "--field-selector", "metadata.name=kube-root-ca.crt", "-o", "name")
			if n := strings.Count(out, "configmap/kube-root-ca.crt"); n != 4 {
				return errorf("kube-root-ca.crt in %d namespaces: %q", n, out)
			}
			return nil
		})
		tb := parseTable(t, s.MustKubectl("get", "sa"))
		tb.wantHeader(t, "NAME", "SECRETS", "AGE")
		wantCells(t, tb.row(t, "NAME", "default"), "SECRETS", "0")
		ca := jsonpath(t, s, `{.data.ca\.crt}`, "cm", "kube-root-ca.crt")
		if !strings.HasPrefix(ca, "-----BEGIN CERTIFICATE-----") {
			t.Errorf("kube-root-ca.crt ca.crt = %.60q", ca)
		}
	})

	t.Run("kubernetes service", func(t *testing.T) {
		s := on(t, srv)
		tb := parseTable(t, s.MustKubectl("get", "svc", "kubernetes"))
		tb.wantHeader(t, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
		wantCells(t, tb.row(t, "NAME", "kubernetes"), "TYPE", "ClusterIP", "CLUSTER-IP", "10.43.0.1", "EXTERNAL-IP", "<none>", "PORT(S)", "443/TCP")
		mustEqual(t, "service spec", jsonpath(t, s, `{.spec.clusterIP} {.spec.clusterIPs} {.spec.ports[0].name} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.metadata.labels}`, "svc", "kubernetes"),
			`10.43.0.1 ["10.43.0.1"] https 443 `+strconv.Itoa(s.Port)+` {"component":"apiserver","provider":"kubernetes"}`)

		// Its endpoints are the API server itself: one address, the secure port.
		var ep string
		Eventually(t, 20*time.Second, func() error {
			r := s.KubectlRun("", "get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[0].addresses[0].ip}:{.subsets[0].ports[0].port}")
			if r.Err != nil || strings.HasPrefix(r.Stdout, ":") {
				return errorf("endpoints: %v %s %s", r.Err, r.Stdout, r.Stderr)
			}
			ep = r.Stdout
			return nil
		})
		host, port, err := net.SplitHostPort(ep)
		if err != nil || net.ParseIP(host) == nil || port != strconv.Itoa(s.Port) {
			t.Fatalf("kubernetes endpoints %q: want <ip>:%d", ep, s.Port)
		}
		tb = parseTable(t, s.MustKubectl("get", "ep", "kubernetes"))
		tb.wantHeader(t, "NAME", "ENDPOINTS", "AGE")
		wantCells(t, tb.row(t, "NAME", "kubernetes"), "ENDPOINTS", ep)
		tb = parseTable(t, s.MustKubectl("get", "endpointslices", "kubernetes"))
		tb.wantHeader(t, "NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE")
		wantCells(t, tb.row(t, "NAME", "kubernetes"), "ADDRESSTYPE", "IPv4", "PORTS", port, "ENDPOINTS", host)
		mustHaveLines(t, s.MustKubectl("describe", "svc", "kubernetes"), "Endpoints: "+ep)
	})

	t.Run("version", func(t *testing.T) {
		s := on(t, srv)
		out := s.MustKubectl("version")
		if !regexp.MustCompile(`(?m)^Server Version: v1\.32\.\d+(\+\S*)?$`).MatchString(out) {
			t.Errorf("kubectl version: want Server Version v1.32.x, got:\n%s", out)
		}
		var v struct {
			ServerVersion struct{ Major, Minor, GitVersion, Platform string }
		}
		if err := json.Unmarshal([]byte(s.MustKubectl("version", "-o", "json")), &v); err != nil {
			t.Fatal(err)
		}
		if v.ServerVersion.Major != "1" || v.ServerVersion.Minor != "32" || v.ServerVersion.Platform != "linux/amd64" {
			t.Errorf("server version %+v: want major 1, minor 32, linux/amd64", v.ServerVersion)
		}
	})

	t.Run("api-resources", func(t *testing.T) {
		s := on(t, srv)
		tb := parseTable(t, s.MustKubectl("api-resources", "--api-group="))
		tb.wantHeader(t, "NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND")
		out := s.MustKubectl("api-resources")
		for _, want := range [][5]string{
			{"pods", "po", "v1", "true", "Pod"},
			{"services", "svc", "v1", "true", "Service"},
			{"namespaces", "ns", "v1", "false", "Namespace"},
			{"configmaps", "cm", "v1", "true", "ConfigMap"},
			{"endpoints", "ep", "v1", "true", "Endpoints"},
			{"nodes", "no", "v1", "false", "Node"},
			{"events", "ev", "v1", "true", "Event"},
			{"serviceaccounts", "sa", "v1", "true", "ServiceAccount"},
			{"secrets", "", "v1", "true", "Secret"},
			{"deployments", "deploy", "apps/v1", "true", "Deployment"},
			{"replicasets", "rs", "apps/v1", "true", "ReplicaSet"},
			{"daemonsets", "ds", "apps/v1", "true", "DaemonSet"},
			{"statefulsets", "sts", "apps/v1", "true", "StatefulSet"},
			{"jobs", "", "batch/v1", "true", "Job"},
			{"cronjobs", "cj", "batch/v1", "true", "CronJob"},
			{"horizontalpodautoscalers", "hpa", "autoscaling/v2", "true", "HorizontalPodAutoscaler"},
			{"endpointslices", "", "discovery.k8s.io/v1", "true", "EndpointSlice"},
			{"leases", "", "coordination.k8s.io/v1", "true", "Lease"},
			{"events", "ev", "events.k8s.io/v1", "true", "Event"},
			{"runtimeclasses", "", "node.k8s.io/v1", "false", "RuntimeClass"},
			{"poddisruptionbudgets", "pdb", "policy/v1", "true", "PodDisruptionBudget"},
		} {
			re := `(?m)^` + want[0] + ` +` + regexp.QuoteMeta(want[1])
			if want[1] != "" {
				re += ` +`
			}
			re += regexp.QuoteMeta(want[2]) + ` +` + want[3] + ` +` + want[4] + `$`
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("api-resources lacks %v", want)
			}
		}
		// Short names resolve: one get of all of them lists the kinds that have objects.
		out = s.MustKubectl("get", "po,svc,deploy,rs,ds,sts,ns,cm,ep,no,ev,sa", "-A", "-o", "name")
		for _, want := range []string{"service/kubernetes", "namespace/default", "configmap/kube-root-ca.crt", "endpoints/kubernetes", "serviceaccount/default"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("get by short names lacks %s:\n%s", want, out)
			}
		}
		out = kubectlFail(t, s, "", "get", "nosuchthings")
		mustEqual(t, "unknown resource type", out, `error: the server doesn't have a resource type "nosuchthings"`)
	})

	t.Run("explain", func(t *testing.T) {
		s := on(t, srv)
		out := s.MustKubectl("explain", "pod.spec.containers.livenessProbe")
		mustContain(t, out,
			"KIND:       Pod\nVERSION:    v1\n\nFIELD: livenessProbe <Probe>\n",
			"DESCRIPTION:\n    Periodic probe of container liveness. Container will be restarted if the\n    probe fails. Cannot be updated.",
			"FIELDS:\n  exec\t<ExecAction>\n    Exec specifies a command to execute in the container.\n",
			"  httpGet\t<HTTPGetAction>\n    HTTPGet specifies an HTTP GET request to perform.\n",
			"  initialDelaySeconds\t<integer>\n    Number of seconds after the container has started before liveness probes are\n    initiated.",
			"  periodSeconds\t<integer>\n    How often (in seconds) to perform the probe. Default to 10 seconds. Minimum\n    value is 1.\n",
			"  tcpSocket\t<TCPSocketAction>\n")
		out = s.MustKubectl("explain", "deployment.spec.replicas")
		mustContain(t, out, "GROUP:      apps\nKIND:       Deployment\nVERSION:    v1\n\nFIELD: replicas <integer>\n")
		out = kubectlFail(t, s, "", "explain", "pod.spec.nosuchfield")
		mustContain(t, out, `error: field "nosuchfield" does not exist`)
	})

	t.Run("anonymous access", func(t *testing.T) {
		s := on(t, srv)
		for _, p := range []string{"/healthz", "/livez", "/readyz"} {
			code, body := anonymousGet(t, s, p)
			if code != 200 || body != "ok" {
				t.Errorf("anonymous GET %s: %d %q, want 200 \"ok\"", p, code, body)
			}
		}
		code, body := anonymousGet(t, s, "/version")
		if code != 200 || !regexp.MustCompile(`"gitVersion": "v1\.32\.\d+`).MatchString(body) {
			t.Errorf("anonymous GET /version: %d %s, want 200 with gitVersion v1.32.x", code, body)
		}
		for _, p := range []string{"/api", "/api/v1/namespaces/default/pods", "/apis", "/openapi/v2", "/metrics"} {
			code, body := anonymousGet(t, s, p)
			var st struct {
				Kind, Status, Message, Reason string
				Code                          int
			}
			_ = json.Unmarshal([]byte(body), &st)
			if code != 401 || st.Kind != "Status" || st.Status != "Failure" || st.Message != "Unauthorized" || st.Reason != "Unauthorized" || st.Code != 401 {
				t.Errorf("anonymous GET %s: %d %s, want 401 Status Unauthorized", p, code, body)
			}
		}
		// A client with a token the server doesn't know is not let in as
		// anonymous either; kubectl says so in upstream's words.
		r := s.KubectlRun("", "--kubeconfig=/dev/null", "--server=https://127.0.0.1:"+strconv.Itoa(s.Port), "--insecure-skip-tls-verify", "--token=not-a-valid-token", "get", "pods")
		if r.Err == nil {
			t.Fatalf("kubectl get pods with a bogus token succeeded: %s", r.Stdout)
		}
		mustContain(t, r.Stderr, "error: You must be logged in to the server (Unauthorized)")
	})
}
