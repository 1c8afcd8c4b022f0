package e2e

// How `kubectl get` prints: server-side tables, wide, name, jsonpath,
// custom-columns, labels as columns, sorting, selectors, all namespaces,
// `get all` and watching.

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestKubectlGetOutput(t *testing.T) {
	srv := startKubectlServer(t)
	waitKubernetesService(t, srv)
	s := srv
	// Three pods created out of name order, with labels to select and sort by.
	for _, p := range []struct{ name, app, rank, image string }{
		{"zeta", "web", "1", "busybox:1.36"},
		{"alpha", "db", "3", "busybox:1.35"},
		{"mid", "web", "2", "nginx:1.27"},
	} {
		s.MustKubectl("run", p.name, "--image="+p.image, "--labels=app="+p.app+",rank="+p.rank)
	}
	s.MustKubectl("create", "deployment", "web", "--image=nginx:1.27", "--replicas=2")

	t.Run("table", func(t *testing.T) {
		s := on(t, srv)
		tb := parseTable(t, s.MustKubectl("get", "pods"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		// Default order is by name.
		mustEqual(t, "order", strings.Join(tb.column(t, "NAME"), " "), "alpha mid zeta")
		for _, n := range []string{"alpha", "mid", "zeta"} {
			row := tb.row(t, "NAME", n)
			wantCells(t, row, "READY", "0/1", "STATUS", "Pending", "RESTARTS", "0")
			wantAge(t, row["AGE"])
		}
		// --no-headers drops exactly the header line.
		out := s.MustKubectl("get", "pods", "--no-headers")
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "alpha ") {
			t.Errorf("--no-headers: %q", out)
		}
		// Wide.
		tb = parseTable(t, s.MustKubectl("get", "pods", "-o", "wide"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES")
		wantCells(t, tb.row(t, "NAME", "mid"), "IP", "<none>", "NODE", "<none>", "NOMINATED NODE", "<none>", "READINESS GATES", "<none>")
		// Several types at once, each with its own header, separated by a blank line.
		out = s.MustKubectl("get", "pods,deploy", "-l", "app=web")
		parts := strings.Split(strings.TrimSpace(out), "\n\n")
		if len(parts) != 2 {
			t.Fatalf("get pods,deploy: %q", out)
		}
		tb = parseTable(t, parts[0])
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		mustEqual(t, "pods", strings.Join(tb.column(t, "NAME"), " "), "pod/mid pod/zeta")
		tb = parseTable(t, parts[1])
		tb.wantHeader(t, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
		wantCells(t, tb.row(t, "NAME", "deployment.apps/web"), "READY", "0/2", "UP-TO-DATE", "0", "AVAILABLE", "0")
	})

	t.Run("get all", func(t *testing.T) {
		s := on(t, srv)
		out := s.MustKubectl("get", "all")
		// One table per kind, separated by blank lines; rows named kind/name.
		sections := map[string]table{}
		for _, part := range strings.Split(strings.TrimSpace(out), "\n\n") {
			tb := parseTable(t, part)
			if len(tb.Rows) == 0 {
				t.Fatalf("get all: empty section %q", part)
			}
			kind, _, _ := strings.Cut(tb.Rows[0][0], "/")
			sections[kind] = tb
		}
		for _, want := range []string{"pod", "service", "deployment.apps"} {
			if _, ok := sections[want]; !ok {
				t.Fatalf("get all: no %s section in\n%s", want, out)
			}
		}
		tb := sections["pod"]
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		mustEqual(t, "pods", strings.Join(tb.column(t, "NAME"), " "), "pod/alpha pod/mid pod/zeta")
		tb = sections["service"]
		tb.wantHeader(t, "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
		wantCells(t, tb.row(t, "NAME", "service/kubernetes"), "TYPE", "ClusterIP", "CLUSTER-IP", "10.43.0.1", "EXTERNAL-IP", "<none>", "PORT(S)", "443/TCP")
		tb = sections["deployment.apps"]
		tb.wantHeader(t, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
		wantCells(t, tb.row(t, "NAME", "deployment.apps/web"), "READY", "0/2")
		// In a namespace with nothing in it.
		r := s.KubectlRun("", "get", "all", "-n", "kube-public")
		mustEqual(t, "empty", r.Stdout+r.Stderr, "No resources found in kube-public namespace.")
	})

	t.Run("name", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "-o name", s.MustKubectl("get", "pods", "-o", "name"), "pod/alpha\npod/mid\npod/zeta")
		mustEqual(t, "-o name deploy", s.MustKubectl("get", "deploy", "-o", "name"), "deployment.apps/web")
		mustEqual(t, "-o name svc", s.MustKubectl("get", "svc", "kubernetes", "-o", "name"), "service/kubernetes")
	})

	t.Run("jsonpath", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "names", jsonpath(t, s, "{.items[*].metadata.name}", "pods"), "alpha mid zeta")
		mustEqual(t, "range", jsonpath(t, s, `{range .items[*]}{.metadata.name}{"\t"}{.spec.containers[0].image}{"\n"}{end}`, "pods"),
			"alpha\tbusybox:1.35\nmid\tnginx:1.27\nzeta\tbusybox:1.36")
		mustEqual(t, "filter", jsonpath(t, s, `{.items[?(@.metadata.labels.app=="web")].metadata.name}`, "pods"), "mid zeta")
		mustEqual(t, "single", jsonpath(t, s, "{.status.phase}", "pod", "mid"), "Pending")
		mustEqual(t, "clusterIP", jsonpath(t, s, "{.spec.clusterIP}", "svc", "kubernetes"), "10.43.0.1")
		// go-template too.
		mustEqual(t, "go-template", s.MustKubectl("get", "pod", "mid", "-o", "go-template={{.metadata.name}}:{{index .metadata.labels \"rank\"}}"), "mid:2")
	})

	t.Run("yaml and json", func(t *testing.T) {
		s := on(t, srv)
		out := s.MustKubectl("get", "pod", "mid", "-o", "yaml")
		mustContain(t, out, "apiVersion: v1\nkind: Pod\nmetadata:\n", "  name: mid\n  namespace: default\n", "status:\n", "  phase: Pending\n", "  qosClass: BestEffort\n")
		var list struct {
			APIVersion, Kind string
			Items            []struct{ Kind string }
		}
		if err := json.Unmarshal([]byte(s.MustKubectl("get", "pods", "-o", "json")), &list); err != nil {
			t.Fatal(err)
		}
		if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != 3 || list.Items[0].Kind != "Pod" {
			t.Errorf("get -o json: %+v", list)
		}
	})

	t.Run("custom-columns", func(t *testing.T) {
		s := on(t, srv)
		out := s.MustKubectl("get", "pods", "-o", "custom-columns=NAME:.metadata.name,IMAGE:.spec.containers[*].image,APP:.metadata.labels.app,NODE:.spec.nodeName")
		tb := parseTable(t, out)
		tb.wantHeader(t, "NAME", "IMAGE", "APP", "NODE")
		wantCells(t, tb.row(t, "NAME", "alpha"), "IMAGE", "busybox:1.35", "APP", "db", "NODE", "<none>")
		wantCells(t, tb.row(t, "NAME", "mid"), "IMAGE", "nginx:1.27", "APP", "web", "NODE", "<none>")
		// The seed's two-container pod: all images in one cell.
		s.MustKubectl("create", "-f", testdataPath(t, "seed000-auto-pod.yaml"), "-n", "kube-public")
		out = s.MustKubectl("get", "pod", "auto-pod", "-n", "kube-public", "-o", "custom-columns=NAME:.metadata.name,CONTAINERS:.spec.containers[*].name,PORTS:.spec.containers[*].ports[*].containerPort")
		mustEqual(t, "multi-container", squash(out), "NAME CONTAINERS PORTS\nauto-pod auto-client,auto-serve 8079,8082")
		s.MustKubectl("delete", "pod", "auto-pod", "-n", "kube-public")
		out = kubectlFail(t, s, "", "get", "pods", "-o", "custom-columns=NAME")
		mustContain(t, out, `error: unexpected custom-columns spec: NAME, expected <header>:<json-path-expr>`)
	})

	t.Run("labels", func(t *testing.T) {
		s := on(t, srv)
		tb := parseTable(t, s.MustKubectl("get", "pods", "--show-labels"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS")
		wantCells(t, tb.row(t, "NAME", "alpha"), "LABELS", "app=db,rank=3")
		wantCells(t, tb.row(t, "NAME", "zeta"), "LABELS", "app=web,rank=1")
		tb = parseTable(t, s.MustKubectl("get", "pods", "-L", "app", "-L", "rank"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "RANK")
		wantCells(t, tb.row(t, "NAME", "mid"), "APP", "web", "RANK", "2")
		tb = parseTable(t, s.MustKubectl("get", "pods", "-L", "app,missing"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "APP", "MISSING")
		// Selectors: equality, set-based, negation.
		mustEqual(t, "-l app=web", s.MustKubectl("get", "pods", "-l", "app=web", "-o", "name"), "pod/mid\npod/zeta")
		mustEqual(t, "-l in", s.MustKubectl("get", "pods", "-l", "rank in (1,3)", "-o", "name"), "pod/alpha\npod/zeta")
		mustEqual(t, "-l !=", s.MustKubectl("get", "pods", "-l", "app!=web", "-o", "name"), "pod/alpha")
		r := s.KubectlRun("", "get", "pods", "-l", "app=none")
		mustEqual(t, "no match", r.Stdout+r.Stderr, "No resources found in default namespace.")
		out := kubectlFail(t, s, "", "get", "pods", "-l", "app in web")
		mustEqual(t, "bad selector", out, `Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match label selector "app in web", field selector "": unable to parse requirement: found 'web' expected: '('`)
		// Field selectors the server supports for pods.
		mustEqual(t, "phase", s.MustKubectl("get", "pods", "--field-selector", "status.phase=Pending,metadata.name!=mid", "-o", "name"), "pod/alpha\npod/zeta")
		mustEqual(t, "nodeName", s.MustKubectl("get", "pods", "--field-selector", "spec.nodeName=", "-o", "name"), "pod/alpha\npod/mid\npod/zeta")
		out = kubectlFail(t, s, "", "get", "pods", "--field-selector", "spec.image=x")
		mustContain(t, out, `Error from server (BadRequest): Unable to find "/v1, Resource=pods" that match label selector "", field selector "spec.image=x": field label not supported: spec.image`)
	})

	t.Run("sort-by", func(t *testing.T) {
		s := on(t, srv)
		tb := parseTable(t, s.MustKubectl("get", "pods", "--sort-by=.metadata.labels.rank"))
		mustEqual(t, "by rank", strings.Join(tb.column(t, "NAME"), " "), "zeta mid alpha")
		tb = parseTable(t, s.MustKubectl("get", "pods", "--sort-by={.spec.containers[0].image}"))
		mustEqual(t, "by image", strings.Join(tb.column(t, "NAME"), " "), "alpha zeta mid")
		mustEqual(t, "with -o name", s.MustKubectl("get", "pods", "--sort-by=.metadata.labels.rank", "-o", "name"), "pod/zeta\npod/mid\npod/alpha")
		tb = parseTable(t, s.MustKubectl("get", "pods", "-A", "--sort-by=.metadata.namespace"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE")
	})

	t.Run("all namespaces", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("create", "ns", "second")
		s.MustKubectl("run", "alpha", "--image=busybox", "-n", "second")
		tb := parseTable(t, s.MustKubectl("get", "pods", "-A"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE")
		var rows []string
		for _, r := range tb.Rows {
			rows = append(rows, r[0]+"/"+r[1])
		}
		mustEqual(t, "rows", strings.Join(rows, " "), "default/alpha default/mid default/zeta second/alpha")
		tb = parseTable(t, s.MustKubectl("get", "pods", "--all-namespaces", "-o", "wide", "-l", "run=alpha"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE", "READINESS GATES")
		wantCells(t, tb.row(t, "NAMESPACE", "second"), "NAME", "alpha")
		mustEqual(t, "-A -o name", s.MustKubectl("get", "deploy", "-A", "-o", "name"), "deployment.apps/web")
		tb = parseTable(t, s.MustKubectl("get", "svc", "-A"))
		tb.wantHeader(t, "NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE")
		wantCells(t, tb.row(t, "NAME", "kubernetes"), "NAMESPACE", "default", "CLUSTER-IP", "10.43.0.1")
		s.MustKubectl("delete", "ns", "second", "--wait=false")
	})

	t.Run("watch", func(t *testing.T) {
		s := on(t, srv)
		w := startKubectl(t, s, "get", "pods", "-w")
		// First the current list with its header...
		w.waitLine(t, 20*time.Second, "header", func(c []string) bool { return strings.Join(c, "|") == "NAME|READY|STATUS|RESTARTS|AGE" })
		w.waitLine(t, 20*time.Second, "zeta", func(c []string) bool { return len(c) == 5 && c[0] == "zeta" && c[2] == "Pending" })
		// ...then a line for an object created after the watch started.
		s.MustKubectl("run", "watched", "--image=busybox")
		cells := w.waitLine(t, 20*time.Second, "watched", func(c []string) bool { return len(c) == 5 && c[0] == "watched" })
		wantCells(t, map[string]string{"READY": cells[1], "STATUS": cells[2], "RESTARTS": cells[3]}, "READY", "0/1", "STATUS", "Pending", "RESTARTS", "0")
		// An update shows up too.
		s.MustKubectl("label", "pod", "watched", "seen=yes")
		Eventually(t, 20*time.Second, func() error {
			n := 0
			for _, l := range w.Lines() {
				if strings.HasPrefix(l, "watched ") {
					n++
				}
			}
			if n < 2 {
				return errorf("one line for watched after an update: %q", w.Lines())
			}
			return nil
		})
		w.stop()
		if strings.Count(strings.Join(w.Lines(), "\n"), "NAME ") != 1 {
			t.Errorf("header printed more than once: %q", w.Lines())
		}

		// --watch-only with events, on another kind, in another namespace.
		w = startKubectl(t, s, "get", "cm", "-n", "kube-system", "--watch-only", "--output-watch-events")
		// Give the watch time to be established: the first event it must not
		// miss is made only once a marker event is seen.
		Eventually(t, 20*time.Second, func() error {
			s.MustKubectl("create", "cm", "marker-"+time.Now().Format("150405.000000000"), "-n", "kube-system")
			for _, l := range w.Lines() {
				if strings.HasPrefix(l, "ADDED ") {
					return nil
				}
			}
			return errorf("watch not delivering yet: %q %s", w.Lines(), w.Stderr())
		})
		s.MustKubectl("create", "cm", "w1", "--from-literal=a=b", "-n", "kube-system")
		cells = w.waitLine(t, 20*time.Second, "ADDED w1", func(c []string) bool { return len(c) == 4 && c[0] == "ADDED" && c[1] == "w1" })
		mustEqual(t, "DATA", cells[2], "1")
		s.MustKubectl("delete", "cm", "w1", "-n", "kube-system")
		w.waitLine(t, 20*time.Second, "DELETED w1", func(c []string) bool { return len(c) == 4 && c[0] == "DELETED" && c[1] == "w1" })
		for _, l := range w.Lines() {
			if strings.HasPrefix(l, "NAME") || strings.Contains(l, "kube-root-ca.crt") {
				t.Errorf("--watch-only printed the initial list: %q", l)
			}
		}
	})
}
