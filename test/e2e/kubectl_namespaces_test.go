package e2e

// Namespaces: -n / -A scoping, and deleting a namespace deletes its contents,
// the namespace showing Terminating until it is gone.

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestKubectlNamespaces(t *testing.T) {
	srv := startKubectlServer(t)

	t.Run("scoping", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "create ns", s.MustKubectl("create", "namespace", "other"), "namespace/other created")
		mustEqual(t, "run in other", s.MustKubectl("run", "elsewhere", "--image=busybox", "-n", "other"), "pod/elsewhere created")
		mustEqual(t, "run in default", s.MustKubectl("run", "here", "--image=busybox"), "pod/here created")

		tb := parseTable(t, s.MustKubectl("get", "pods"))
		if got := tb.column(t, "NAME"); len(got) != 1 || got[0] != "here" {
			t.Errorf("default namespace pods %q, want only here", got)
		}
		tb = parseTable(t, s.MustKubectl("get", "pods", "-n", "other"))
		if got := tb.column(t, "NAME"); len(got) != 1 || got[0] != "elsewhere" {
			t.Errorf("other namespace pods %q, want only elsewhere", got)
		}
		mustEqual(t, "namespace field", jsonpath(t, s, "{.metadata.namespace}", "pod", "elsewhere", "--namespace=other"), "other")
		notFound(t, s, "", "pod", "elsewhere")

		tb = parseTable(t, s.MustKubectl("get", "pods", "-A"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		wantCells(t, tb.row(t, "NAME", "elsewhere"), "NAMESPACE", "other", "READY", "0/1", "STATUS", "Pending")
		wantCells(t, tb.row(t, "NAME", "here"), "NAMESPACE", "default", "READY", "0/1", "STATUS", "Pending")
		if len(tb.Rows) != 2 {
			t.Errorf("get pods -A: %d rows, want 2", len(tb.Rows))
		}
		// -A with ConfigMaps lists every namespace's root CA.
		tb = parseTable(t, s.MustKubectl("get", "cm", "-A", "--field-selector", "metadata.name=kube-root-ca.crt"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "DATA", "AGE")
		if got := strings.Join(tb.column(t, "NAMESPACE"), " "); got != "default kube-node-lease kube-public kube-system other" {
			t.Errorf("kube-root-ca.crt namespaces: %q", got)
		}

		r := s.KubectlRun("", "get", "pods", "-n", "kube-public")
		if r.Err != nil || r.Stdout != "" {
			t.Fatalf("get pods -n kube-public: %v %q", r.Err, r.Stdout)
		}
		mustEqual(t, "empty namespace", r.Stderr, "No resources found in kube-public namespace.")
		// A kubeconfig context namespace is honoured like -n.
		s.MustKubectl("config", "set-context", "--current", "--namespace=other", "--kubeconfig="+s.Kubeconfig)
		t.Cleanup(func() {
			s.MustKubectl("config", "set-context", "--current", "--namespace=", "--kubeconfig="+s.Kubeconfig)
		})
		mustEqual(t, "context namespace", s.MustKubectl("get", "pods", "-o", "name"), "pod/elsewhere")
		// A namespace in the manifest that disagrees with -n is refused.
		out := kubectlFail(t, s, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: default}\n", "create", "-n", "kube-public", "-f", "-")
		mustContain(t, out, `error: the namespace from the provided object "default" does not match the namespace "kube-public". You must pass '--namespace=default' to perform this operation.`)
	})

	t.Run("deletion", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "create ns", s.MustKubectl("create", "ns", "team-a"), "namespace/team-a created")
		s.MustKubectl("create", "configmap", "settings", "--from-literal=a=1", "-n", "team-a")
		s.MustKubectl("create", "secret", "generic", "creds", "--from-literal=p=x", "-n", "team-a")
		s.MustKubectl("run", "worker", "--image=busybox", "-n", "team-a")
		s.MustKubectl("create", "deployment", "web", "--image=busybox", "--replicas=2", "-n", "team-a")
		s.MustKubectl("create", "service", "clusterip", "web", "--tcp=80", "-n", "team-a")
		// A ConfigMap with a finalizer holds the namespace in Terminating until it is released.
		s.MustKubectlIn("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: team-a\n  finalizers: [e2e.peapod.dev/hold]\n", "create", "-f", "-")
		Eventually(t, 20*time.Second, func() error {
			if r := s.KubectlRun("", "get", "sa", "default", "-n", "team-a"); r.Err != nil {
				return errorf("no default ServiceAccount yet: %s", r.Stderr)
			}
			return nil
		})

		w := startKubectl(t, s, "get", "ns", "team-a", "-w")
		w.waitLine(t, 20*time.Second, "team-a Active", func(c []string) bool { return len(c) == 3 && c[0] == "team-a" && c[1] == "Active" })

		mustEqual(t, "delete ns", s.MustKubectl("delete", "namespace", "team-a", "--wait=false"), `namespace "team-a" deleted`)
		w.waitLine(t, 20*time.Second, "team-a Terminating", func(c []string) bool { return len(c) == 3 && c[0] == "team-a" && c[1] == "Terminating" })
		tb := parseTable(t, s.MustKubectl("get", "ns", "team-a"))
		wantCells(t, tb.row(t, "NAME", "team-a"), "STATUS", "Terminating")
		mustEqual(t, "phase", jsonpath(t, s, "{.status.phase} {.spec.finalizers}", "ns", "team-a"), `Terminating ["kubernetes"]`)
		if jsonpath(t, s, "{.metadata.deletionTimestamp}", "ns", "team-a") == "" {
			t.Error("no deletionTimestamp on the Terminating namespace")
		}
		// Nothing new may be created in it.
		out := kubectlFail(t, s, "", "create", "configmap", "late", "--from-literal=a=1", "-n", "team-a")
		mustEqual(t, "create in terminating ns", out, `error: failed to create configmap: configmaps "late" is forbidden: unable to create new content in namespace team-a because it is being terminated`)

		// The controller deletes everything else; the held ConfigMap waits with a
		// deletionTimestamp and the namespace says why in its conditions.
		Eventually(t, 30*time.Second, func() error {
			out := s.MustKubectl("get", "all,cm,secret,sa", "-n", "team-a", "-o", "name")
			if strings.TrimSpace(out) != "configmap/held" {
				return errorf("left in team-a: %q", out)
			}
			if c := jsonpath(t, s, `{.status.conditions[?(@.type=="NamespaceFinalizersRemaining")].message}`, "ns", "team-a"); c != "Some content in the namespace has finalizers remaining: e2e.peapod.dev/hold in 1 resource instances" {
				return errorf("NamespaceFinalizersRemaining: %q", c)
			}
			return nil
		})
		if jsonpath(t, s, "{.metadata.deletionTimestamp}", "cm", "held", "-n", "team-a") == "" {
			t.Error("held ConfigMap has no deletionTimestamp")
		}
		mustEqual(t, "release", s.MustKubectl("patch", "cm", "held", "-n", "team-a", "--type", "json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`), "configmap/held patched")

		// Then the namespace disappears; the watch sees it go.
		Eventually(t, 30*time.Second, func() error {
			r := s.KubectlRun("", "get", "ns", "team-a")
			if r.Err == nil {
				return errorf("namespace still there: %s", r.Stdout)
			}
			if strings.TrimSpace(r.Stderr) != `Error from server (NotFound): namespaces "team-a" not found` {
				return errorf("unexpected: %s", r.Stderr)
			}
			return nil
		})
		// Its contents are gone from the store, not merely hidden.
		cs := s.Client()
		ctx := context.Background()
		lists := map[string]func() (runtime.Object, error){
			"pods": func() (runtime.Object, error) { return cs.CoreV1().Pods("team-a").List(ctx, metav1.ListOptions{}) },
			"configmaps": func() (runtime.Object, error) {
				return cs.CoreV1().ConfigMaps("team-a").List(ctx, metav1.ListOptions{})
			},
			"secrets": func() (runtime.Object, error) { return cs.CoreV1().Secrets("team-a").List(ctx, metav1.ListOptions{}) },
			"deployments": func() (runtime.Object, error) {
				return cs.AppsV1().Deployments("team-a").List(ctx, metav1.ListOptions{})
			},
			"services": func() (runtime.Object, error) { return cs.CoreV1().Services("team-a").List(ctx, metav1.ListOptions{}) },
			"serviceaccounts": func() (runtime.Object, error) {
				return cs.CoreV1().ServiceAccounts("team-a").List(ctx, metav1.ListOptions{})
			},
		}
		for what, list := range lists {
			l, err := list()
			if err != nil {
				t.Errorf("list %s in deleted namespace: %v", what, err)
			} else if n := meta.LenList(l); n != 0 {
				t.Errorf("%d %s left in deleted namespace team-a", n, what)
			}
		}
		// A namespace of the same name starts empty (but for its defaults).
		s.MustKubectl("create", "ns", "team-a")
		r := s.KubectlRun("", "get", "pods,deploy,svc,secret", "-n", "team-a")
		mustEqual(t, "recreated namespace", r.Stdout+r.Stderr, "No resources found in team-a namespace.")
	})

	t.Run("deletion without finalizers", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("create", "ns", "quick")
		s.MustKubectl("create", "configmap", "c", "--from-literal=a=1", "-n", "quick")
		s.MustKubectl("run", "p", "--image=busybox", "-n", "quick")
		s.MustKubectl("create", "deployment", "d", "--image=busybox", "-n", "quick")
		// kubectl waits for the namespace to be gone (the seeds' plain `kubectl delete`).
		start := time.Now()
		mustEqual(t, "delete ns", s.MustKubectl("delete", "ns", "quick"), `namespace "quick" deleted`)
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("deleting a namespace with nothing holding it took %s", d.Round(time.Millisecond))
		}
		notFound(t, s, "", "ns", "quick")
		r := s.KubectlRun("", "get", "all,cm", "-n", "quick")
		mustEqual(t, "contents", r.Stdout+r.Stderr, "No resources found in quick namespace.")
	})

	t.Run("system namespaces", func(t *testing.T) {
		s := on(t, srv)
		for _, ns := range []string{"default", "kube-system", "kube-public"} {
			out := kubectlFail(t, s, "", "delete", "ns", ns)
			mustEqual(t, "delete "+ns, out, `Error from server (Forbidden): namespaces "`+ns+`" is forbidden: this namespace may not be deleted`)
		}
		tb := parseTable(t, s.MustKubectl("get", "ns", "default"))
		wantCells(t, tb.row(t, "NAME", "default"), "STATUS", "Active")
	})
}
