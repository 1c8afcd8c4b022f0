package e2e

// Changing objects with kubectl: create helpers, label/annotate, the three patch
// types, client- and server-side apply, edit, scale, replace with a stale
// resourceVersion, and the messages for AlreadyExists and NotFound.

import (
	"regexp"
	"strings"
	"testing"
)

func TestKubectlMutate(t *testing.T) {
	srv := startKubectlServer(t)

	t.Run("create configmap and secret", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "create cm", s.MustKubectl("create", "configmap", "cfg", "--from-literal=a=1", "--from-literal=b=two words"), "configmap/cfg created")
		mustEqual(t, "data", jsonpath(t, s, `{.data.a}|{.data.b}`, "cm", "cfg"), "1|two words")
		tb := parseTable(t, s.MustKubectl("get", "cm", "cfg"))
		tb.wantHeader(t, "NAME", "DATA", "AGE")
		wantCells(t, tb.row(t, "NAME", "cfg"), "DATA", "2")
		out := s.MustKubectl("describe", "cm", "cfg")
		// (kubectl prints the keys in map order.)
		mustHaveLines(t, out, "Data", "====")
		mustHaveLines(t, out, "a:", "----", "1", "")
		mustHaveLines(t, out, "b:", "----", "two words", "")

		mustEqual(t, "create secret", s.MustKubectl("create", "secret", "generic", "creds", "--from-literal=password=s3cr3t", "--from-literal=user=admin"), "secret/creds created")
		tb = parseTable(t, s.MustKubectl("get", "secret", "creds"))
		tb.wantHeader(t, "NAME", "TYPE", "DATA", "AGE")
		wantCells(t, tb.row(t, "NAME", "creds"), "TYPE", "Opaque", "DATA", "2")
		// Stored base64-encoded; describe shows sizes, never values.
		mustEqual(t, "secret data", jsonpath(t, s, `{.type} {.data.password} {.data.user}`, "secret", "creds"), "Opaque czNjcjN0 YWRtaW4=")
		out = s.MustKubectl("describe", "secret", "creds")
		// (kubectl prints the keys in map order.)
		mustHaveLines(t, out, "Type: Opaque", "", "Data", "====")
		mustHaveLines(t, out, "password: 6 bytes")
		mustHaveLines(t, out, "user: 5 bytes")
		mustNotContain(t, out, "s3cr3t")

		// The typed secret generator checks its input on the client.
		out = kubectlFail(t, s, "", "create", "secret", "generic", "bad", "--from-literal=novalue")
		mustContain(t, out, `error: invalid literal source novalue, expected key=value`)
		notFound(t, s, "", "secret", "bad")
	})

	t.Run("run dry-run", func(t *testing.T) {
		s := on(t, srv)
		mustEqual(t, "run --dry-run=client -o yaml", s.MustKubectl("run", "demo", "--image=myapp:v1", "--dry-run=client", "-o", "yaml"), `apiVersion: v1
kind: Pod
metadata:
  creationTimestamp: null
  labels:
    run: demo
  name: demo
spec:
  containers:
  - image: myapp:v1
    name: demo
    resources: {}
  dnsPolicy: ClusterFirst
  restartPolicy: Always
status: {}`)
		notFound(t, s, "", "pod", "demo")
		// A server dry run goes through admission and validation, stores nothing.
		mustEqual(t, "run --dry-run=server", s.MustKubectl("run", "demo", "--image=myapp:v1", "--dry-run=server"), "pod/demo created (server dry run)")
		out := s.MustKubectl("run", "demo", "--image=myapp:v1", "--dry-run=server", "-o", "jsonpath={.spec.serviceAccountName} {.spec.containers[0].terminationMessagePath} {.status.phase}")
		mustEqual(t, "server dry run object", out, "default /dev/termination-log Pending")
		notFound(t, s, "", "pod", "demo")
		out = kubectlFail(t, s, "", "run", "bad", "--image=", "--dry-run=server")
		mustEqual(t, "run without image", out, "error: --image is required")
	})

	t.Run("label and annotate", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("run", "lab", "--image=busybox", "--labels=app=web")
		mustEqual(t, "label", s.MustKubectl("label", "pod", "lab", "env=prod"), "pod/lab labeled")
		out := kubectlFail(t, s, "", "label", "pod", "lab", "env=dev")
		mustEqual(t, "relabel", out, "error: 'env' already has a value (prod), and --overwrite is false")
		mustEqual(t, "label --overwrite", s.MustKubectl("label", "pod", "lab", "env=dev", "--overwrite"), "pod/lab labeled")
		mustEqual(t, "labels", jsonpath(t, s, "{.metadata.labels}", "pod", "lab"), `{"app":"web","env":"dev"}`)
		tb := parseTable(t, s.MustKubectl("get", "pod", "lab", "--show-labels"))
		tb.wantHeader(t, "NAME", "READY", "STATUS", "RESTARTS", "AGE", "LABELS")
		wantCells(t, tb.row(t, "NAME", "lab"), "LABELS", "app=web,env=dev")
		mustEqual(t, "unlabel", s.MustKubectl("label", "pod", "lab", "env-"), "pod/lab unlabeled")
		mustEqual(t, "labels", jsonpath(t, s, "{.metadata.labels}", "pod", "lab"), `{"app":"web"}`)
		// A bad key is refused by the server's validation, a bad value by kubectl.
		out = kubectlFail(t, s, "", "label", "pod", "lab", "bad key=x")
		mustEqual(t, "bad label key", out, `The Pod "lab" is invalid: metadata.labels: Invalid value: "bad key": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')`)
		out = kubectlFail(t, s, "", "label", "pod", "lab", "app=-bad-")
		mustContain(t, out, `error: invalid label value: "app=-bad-": a valid label must be an empty string or consist of alphanumeric characters`)
		mustEqual(t, "labels after bad", jsonpath(t, s, "{.metadata.labels}", "pod", "lab"), `{"app":"web"}`)

		mustEqual(t, "annotate", s.MustKubectl("annotate", "pod", "lab", "owner=team-a", "note=seed 003"), "pod/lab annotated")
		mustEqual(t, "annotations", jsonpath(t, s, "{.metadata.annotations}", "pod", "lab"), `{"note":"seed 003","owner":"team-a"}`)
		out = kubectlFail(t, s, "", "annotate", "pod", "lab", "owner=team-b")
		mustEqual(t, "reannotate", out, "error: --overwrite is false but found the following declared annotation(s): 'owner' already has a value (team-a)")
		mustEqual(t, "annotate -", s.MustKubectl("annotate", "pod", "lab", "owner-"), "pod/lab annotated")
		mustHaveLines(t, s.MustKubectl("describe", "pod", "lab"), "Labels: app=web", "Annotations: note: seed 003")
		s.MustKubectl("delete", "pod", "lab")
	})

	t.Run("patch", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectlIn(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: app, image: "busybox:1", ports: [{containerPort: 80}]}
      - {name: sidecar, image: "busybox:1"}
`, "create", "-f", "-")
		// Strategic merge (the default): containers merge by name.
		mustEqual(t, "strategic", s.MustKubectl("patch", "deploy", "web", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"busybox:2"}]}}}}`), "deployment.apps/web patched")
		mustEqual(t, "images", jsonpath(t, s, `{range .spec.template.spec.containers[*]}{.name}={.image} {end}`, "deploy", "web"), "app=busybox:2 sidecar=busybox:1")
		mustEqual(t, "strategic again", s.MustKubectl("patch", "deploy", "web", "--type", "strategic", "-p", `{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"busybox:2"}]}}}}`), "deployment.apps/web patched (no change)")
		// A merge patch replaces lists wholesale.
		mustEqual(t, "merge", s.MustKubectl("patch", "deploy", "web", "--type", "merge", "-p", `{"metadata":{"labels":{"tier":"fe"}},"spec":{"template":{"spec":{"containers":[{"name":"only","image":"busybox:3"}]}}}}`), "deployment.apps/web patched")
		mustEqual(t, "after merge", jsonpath(t, s, `{.metadata.labels} {range .spec.template.spec.containers[*]}{.name}={.image} {end}`, "deploy", "web"), `{"app":"web","tier":"fe"} only=busybox:3`)
		// JSON patch.
		mustEqual(t, "json", s.MustKubectl("patch", "deploy", "web", "--type", "json", "-p", `[{"op":"replace","path":"/spec/replicas","value":4},{"op":"add","path":"/metadata/annotations","value":{"by":"json"}}]`), "deployment.apps/web patched")
		mustEqual(t, "after json", jsonpath(t, s, `{.spec.replicas} {.metadata.annotations.by}`, "deploy", "web"), "4 json")
		// A JSON patch test op that fails changes nothing.
		rv := jsonpath(t, s, "{.metadata.resourceVersion}", "deploy", "web")
		out := kubectlFail(t, s, "", "patch", "deploy", "web", "--type", "json", "-p", `[{"op":"test","path":"/spec/replicas","value":9},{"op":"replace","path":"/spec/replicas","value":9}]`)
		mustContain(t, out, `The request is invalid: the server rejected our request due to an error in our request`)
		mustEqual(t, "rv after failed test", jsonpath(t, s, "{.metadata.resourceVersion} {.spec.replicas}", "deploy", "web"), rv+" 4")
		// A patch that makes the object invalid is rejected with validation's words.
		out = kubectlFail(t, s, "", "patch", "deploy", "web", "--type", "merge", "-p", `{"spec":{"replicas":-1}}`)
		mustContain(t, out, `The Deployment "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0`)
		out = kubectlFail(t, s, "", "patch", "deploy", "nope", "-p", `{}`)
		mustContain(t, out, `Error from server (NotFound): deployments.apps "nope" not found`)
		out = kubectlFail(t, s, "", "patch", "deploy", "web", "--type", "json", "-p", `{not json`)
		mustEqual(t, "malformed json patch", out, `Error from server (BadRequest): error decoding patch: invalid character 'n' looking for beginning of object key string`)
	})

	t.Run("apply", func(t *testing.T) {
		s := on(t, srv)
		cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: applied
  labels: {app: demo}
data:
  key: one
`
		mustEqual(t, "apply 1", s.MustKubectlIn(cm, "apply", "-f", "-"), "configmap/applied created")
		rv := jsonpath(t, s, "{.metadata.resourceVersion}", "cm", "applied")
		mustEqual(t, "apply 2", s.MustKubectlIn(cm, "apply", "-f", "-"), "configmap/applied unchanged")
		mustEqual(t, "rv after unchanged apply", jsonpath(t, s, "{.metadata.resourceVersion}", "cm", "applied"), rv)
		last := jsonpath(t, s, `{.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}`, "cm", "applied")
		mustEqual(t, "last-applied", last, `{"apiVersion":"v1","data":{"key":"one"},"kind":"ConfigMap","metadata":{"annotations":{},"labels":{"app":"demo"},"name":"applied","namespace":"default"}}`)

		changed := strings.Replace(cm, "key: one", "key: two", 1)
		mustEqual(t, "apply 3", s.MustKubectlIn(changed, "apply", "-f", "-"), "configmap/applied configured")
		rv2 := jsonpath(t, s, "{.metadata.resourceVersion}", "cm", "applied")
		if rv2 == rv {
			t.Errorf("resourceVersion %s did not change on a configuring apply", rv)
		}
		mustEqual(t, "data", jsonpath(t, s, "{.data.key}", "cm", "applied"), "two")
		// A field removed from the file is removed from the object (three-way merge),
		// one added out of band is kept.
		s.MustKubectl("label", "cm", "applied", "extra=kept")
		mustEqual(t, "apply 4", s.MustKubectlIn(strings.Replace(changed, "labels: {app: demo}", "labels: {app: demo, tier: fe}", 1), "apply", "-f", "-"), "configmap/applied configured")
		mustEqual(t, "labels", jsonpath(t, s, "{.metadata.labels}", "cm", "applied"), `{"app":"demo","extra":"kept","tier":"fe"}`)
		removed := changed
		mustEqual(t, "apply 5", s.MustKubectlIn(removed, "apply", "-f", "-"), "configmap/applied configured")
		mustEqual(t, "labels", jsonpath(t, s, "{.metadata.labels}", "cm", "applied"), `{"app":"demo","extra":"kept"}`)
		// diff shows nothing for the applied file, and exits 1 for a change.
		if r := s.KubectlRun(removed, "diff", "-f", "-"); r.Err != nil || r.Stdout != "" {
			t.Errorf("kubectl diff of the applied file: %v %q %q", r.Err, r.Stdout, r.Stderr)
		}
		r := s.KubectlRun(strings.Replace(removed, "key: two", "key: three", 1), "diff", "-f", "-")
		mustContain(t, r.Stdout, "-  key: two\n+  key: three\n")
		if code := exitCode(r.Err); code != 1 {
			t.Errorf("kubectl diff with a change: exit %d, want 1 (%s)", code, r.Stderr)
		}
	})

	t.Run("apply --server-side", func(t *testing.T) {
		s := on(t, srv)
		cm := `apiVersion: v1
kind: ConfigMap
metadata:
  name: ssa
data:
  key: one
`
		mustEqual(t, "ssa 1", s.MustKubectlIn(cm, "apply", "--server-side", "-f", "-"), "configmap/ssa serverside-applied")
		rv := jsonpath(t, s, "{.metadata.resourceVersion}", "cm", "ssa")
		mustEqual(t, "ssa 2", s.MustKubectlIn(cm, "apply", "--server-side", "-f", "-"), "configmap/ssa serverside-applied")
		mustEqual(t, "rv after no-op server-side apply", jsonpath(t, s, "{.metadata.resourceVersion}", "cm", "ssa"), rv)
		out := s.MustKubectl("get", "cm", "ssa", "-o", "yaml", "--show-managed-fields")
		mustContain(t, out, `  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1:
      f:data:
        f:key: {}
    manager: kubectl
    operation: Apply
`)
		// Hidden by default, as upstream kubectl does.
		mustNotContain(t, s.MustKubectl("get", "cm", "ssa", "-o", "yaml"), "managedFields")
		// Another manager changing an owned field conflicts...
		other := strings.Replace(cm, "key: one", "key: two", 1)
		out = kubectlFail(t, s, other, "apply", "--server-side", "--field-manager=other", "-f", "-")
		mustContain(t, out, `error: Apply failed with 1 conflict: conflict with "kubectl": .data.key`)
		mustEqual(t, "data after conflict", jsonpath(t, s, "{.data.key}", "cm", "ssa"), "one")
		// ...unless it forces, and then owns it.
		mustEqual(t, "force", s.MustKubectlIn(other, "apply", "--server-side", "--field-manager=other", "--force-conflicts", "-f", "-"), "configmap/ssa serverside-applied")
		mustEqual(t, "managers", jsonpath(t, s, `{range .metadata.managedFields[*]}{.manager}:{.operation} {end}`, "cm", "ssa", "--show-managed-fields"), "other:Apply")
		mustEqual(t, "data after force", jsonpath(t, s, "{.data.key}", "cm", "ssa"), "two")
		// Objects made by create carry an Update entry for their manager.
		s.MustKubectl("create", "cm", "made", "--from-literal=a=b")
		mustEqual(t, "create manager", jsonpath(t, s, `{range .metadata.managedFields[*]}{.manager}:{.operation} {end}`, "cm", "made", "--show-managed-fields"), "kubectl-create:Update")
	})

	t.Run("edit", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("create", "deployment", "ed", "--image=busybox:1")
		rv := jsonpath(t, s, "{.metadata.resourceVersion}", "deploy", "ed")
		editor := editorScript(t, `sed -i -e 's/^  replicas: 1$/  replicas: 3/' -e 's/image: busybox:1$/image: busybox:9/' "$1"`)
		r := s.KubectlEnv([]string{"KUBE_EDITOR=" + editor}, "", "edit", "deployment/ed")
		if r.Err != nil {
			t.Fatalf("edit: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		mustEqual(t, "edit", r.Stdout, "deployment.apps/ed edited")
		mustEqual(t, "edited", jsonpath(t, s, "{.spec.replicas} {.spec.template.spec.containers[0].image}", "deploy", "ed"), "3 busybox:9")
		if jsonpath(t, s, "{.metadata.resourceVersion}", "deploy", "ed") == rv {
			t.Error("resourceVersion unchanged by edit")
		}
		// An edit that makes the object invalid is refused, the file kept, the object unchanged.
		bad := editorScript(t, `sed -i 's/^  replicas: 3$/  replicas: -5/' "$1"`)
		r = s.KubectlEnv([]string{"KUBE_EDITOR=" + bad}, "", "edit", "deployment/ed")
		if exitCode(r.Err) != 1 {
			t.Fatalf("invalid edit: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
		}
		mustContain(t, r.Stdout+r.Stderr, `error: deployments.apps "ed" is invalid`, "A copy of your changes has been stored to")
		mustEqual(t, "after invalid edit", jsonpath(t, s, "{.spec.replicas}", "deploy", "ed"), "3")
	})

	t.Run("scale", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("create", "deployment", "sc", "--image=busybox:1", "--replicas=1")
		mustEqual(t, "scale", s.MustKubectl("scale", "deploy/sc", "--replicas=5"), "deployment.apps/sc scaled")
		mustEqual(t, "replicas", jsonpath(t, s, "{.spec.replicas}", "deploy", "sc"), "5")
		tb := parseTable(t, s.MustKubectl("get", "deploy", "sc"))
		tb.wantHeader(t, "NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE")
		row := tb.row(t, "NAME", "sc")
		wantCells(t, row, "READY", "0/5", "UP-TO-DATE", "0", "AVAILABLE", "0")
		wantAge(t, row["AGE"])
		mustEqual(t, "scale to 0", s.MustKubectl("scale", "deployment", "sc", "--replicas=0"), "deployment.apps/sc scaled")
		wantCells(t, parseTable(t, s.MustKubectl("get", "deploy", "sc")).row(t, "NAME", "sc"), "READY", "0/0")
		out := kubectlFail(t, s, "", "scale", "deployment", "sc", "--replicas=-1")
		mustContain(t, out, "error: The --replicas=COUNT flag is required, and COUNT must be greater than or equal to 0")
		out = kubectlFail(t, s, "", "scale", "deployment", "nope", "--replicas=2")
		mustEqual(t, "scale missing", out, `error: no objects passed to scale deployments.apps "nope" not found`)
		// Other scalable kinds.
		s.MustKubectlIn(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: busybox}]}
`, "create", "-f", "-")
		mustEqual(t, "scale sts", s.MustKubectl("scale", "sts", "db", "--replicas=2"), "statefulset.apps/db scaled")
		tb = parseTable(t, s.MustKubectl("get", "sts"))
		tb.wantHeader(t, "NAME", "READY", "AGE")
		wantCells(t, tb.row(t, "NAME", "db"), "READY", "0/2")
	})

	t.Run("replace conflict", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("create", "cm", "cm1", "--from-literal=a=1")
		old := s.MustKubectl("get", "cm", "cm1", "-o", "yaml")
		if !regexp.MustCompile(`(?m)^  resourceVersion: "\d+"$`).MatchString(old) {
			t.Fatalf("no resourceVersion in\n%s", old)
		}
		mustEqual(t, "patch", s.MustKubectl("patch", "cm", "cm1", "--type", "merge", "-p", `{"data":{"a":"2"}}`), "configmap/cm1 patched")
		stale := strings.Replace(old, "a: \"1\"", "a: \"3\"", 1)
		out := kubectlFail(t, s, stale, "replace", "-f", "-")
		mustEqual(t, "stale replace", out, `Error from server (Conflict): error when replacing "STDIN": Operation cannot be fulfilled on configmaps "cm1": the object has been modified; please apply your changes to the latest version and try again`)
		mustEqual(t, "data after conflict", jsonpath(t, s, "{.data.a}", "cm", "cm1"), "2")
		// With the current version it goes through.
		cur := s.MustKubectl("get", "cm", "cm1", "-o", "yaml")
		mustEqual(t, "replace", s.MustKubectlIn(strings.Replace(cur, "a: \"2\"", "a: \"3\"", 1), "replace", "-f", "-"), "configmap/cm1 replaced")
		mustEqual(t, "data after replace", jsonpath(t, s, "{.data.a}", "cm", "cm1"), "3")
		// And without a resourceVersion it is unconditional.
		mustEqual(t, "replace without rv", s.MustKubectlIn("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm1}\ndata: {a: \"4\"}\n", "replace", "-f", "-"), "configmap/cm1 replaced")
		mustEqual(t, "data", jsonpath(t, s, "{.data.a}", "cm", "cm1"), "4")
		// Replacing what isn't there is NotFound.
		gone := regexp.MustCompile(`(?m)^  (uid|resourceVersion): .*\n`).ReplaceAllString(strings.Replace(cur, "name: cm1", "name: cm-gone", 1), "")
		out = kubectlFail(t, s, gone, "replace", "-f", "-")
		mustEqual(t, "replace missing", out, `Error from server (NotFound): error when replacing "STDIN": configmaps "cm-gone" not found`)
	})

	t.Run("already exists and not found", func(t *testing.T) {
		s := on(t, srv)
		doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: dup}\ndata: {a: \"1\"}\n"
		s.MustKubectlIn(doc, "create", "-f", "-")
		uid := jsonpath(t, s, "{.metadata.uid}", "cm", "dup")
		out := kubectlFail(t, s, strings.Replace(doc, `"1"`, `"2"`, 1), "create", "-f", "-")
		mustEqual(t, "create twice", out, `Error from server (AlreadyExists): error when creating "STDIN": configmaps "dup" already exists`)
		out = kubectlFail(t, s, "", "create", "configmap", "dup", "--from-literal=a=2")
		mustEqual(t, "create cm twice", out, `error: failed to create configmap: configmaps "dup" already exists`)
		mustEqual(t, "unchanged", jsonpath(t, s, "{.metadata.uid} {.data.a}", "cm", "dup"), uid+" 1")

		out = kubectlFail(t, s, "", "get", "pod", "nope")
		mustEqual(t, "get missing", out, `Error from server (NotFound): pods "nope" not found`)
		out = kubectlFail(t, s, "", "delete", "pod", "nope")
		mustEqual(t, "delete missing", out, `Error from server (NotFound): pods "nope" not found`)
		out = kubectlFail(t, s, "", "describe", "pod", "nope")
		mustEqual(t, "describe missing", out, `Error from server (NotFound): pods "nope" not found`)
		out = kubectlFail(t, s, "", "get", "pod", "nope", "-n", "kube-system")
		mustEqual(t, "get missing in ns", out, `Error from server (NotFound): pods "nope" not found`)
		out = kubectlFail(t, s, "", "get", "ns", "nope")
		mustEqual(t, "get missing ns", out, `Error from server (NotFound): namespaces "nope" not found`)
		r := s.KubectlRun("", "delete", "pod", "nope", "--ignore-not-found")
		if r.Err != nil || r.Stdout+r.Stderr != "" {
			t.Errorf("delete --ignore-not-found: %v %q %q", r.Err, r.Stdout, r.Stderr)
		}
		out = kubectlFail(t, s, doc, "create", "-n", "nope", "-f", "-")
		mustEqual(t, "create in missing ns", out, `Error from server (NotFound): error when creating "STDIN": namespaces "nope" not found`)
	})
}

// exitCode is the exit status of a finished kubectl (0 for success, -1 when it
// did not run to an exit).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(interface{ ExitCode() int }); ok {
		return ee.ExitCode()
	}
	return -1
}
