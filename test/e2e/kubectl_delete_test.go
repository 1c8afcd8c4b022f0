package e2e

// Deletion: an unscheduled pod goes at once (there is no kubelet to wait for),
// finalizers hold an object with a deletionTimestamp until they are removed.

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestKubectlDelete(t *testing.T) {
	srv := startKubectlServer(t)

	t.Run("unscheduled pod is removed at once", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectl("run", "gone", "--image=busybox")
		mustEqual(t, "grace", jsonpath(t, s, "{.spec.terminationGracePeriodSeconds} {.spec.nodeName}|", "pod", "gone"), "30 |")
		// --wait=false: kubectl doesn't wait, so the object must already be gone.
		mustEqual(t, "delete", s.MustKubectl("delete", "pod", "gone", "--wait=false"), `pod "gone" deleted`)
		_, err := s.Client().CoreV1().Pods("default").Get(context.Background(), "gone", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			t.Fatalf("pod bound to no node still there right after delete: %v", err)
		}
		notFound(t, s, "", "pod", "gone")

		// Same with an explicit grace period and through delete -f.
		s.MustKubectl("run", "gone2", "--image=busybox")
		mustEqual(t, "delete --grace-period", s.MustKubectl("delete", "pod", "gone2", "--grace-period=60", "--wait=false"), `pod "gone2" deleted`)
		notFound(t, s, "", "pod", "gone2")
		// --now and --force say what they do in upstream's words.
		s.MustKubectl("run", "gone3", "--image=busybox")
		r := s.KubectlRun("", "delete", "pod", "gone3", "--force")
		if r.Err != nil {
			t.Fatalf("delete --force: %v %s", r.Err, r.Stderr)
		}
		mustEqual(t, "delete --force stdout", r.Stdout, `pod "gone3" force deleted`)
		mustEqual(t, "delete --force stderr", r.Stderr, "Warning: Immediate deletion does not wait for confirmation that the running resource has been terminated. The resource may continue to run on the cluster indefinitely.")
		notFound(t, s, "", "pod", "gone3")

		// Deleting by label selector and --all.
		for _, n := range []string{"a", "b", "c"} {
			s.MustKubectl("run", "sel-"+n, "--image=busybox", "--labels=group=sel,name="+n)
		}
		mustEqual(t, "delete -l", s.MustKubectl("delete", "pods", "-l", "group=sel,name!=c"), "pod \"sel-a\" deleted\npod \"sel-b\" deleted")
		mustEqual(t, "remaining", s.MustKubectl("get", "pods", "-o", "name"), "pod/sel-c")
		mustEqual(t, "delete --all", s.MustKubectl("delete", "pods", "--all"), `pod "sel-c" deleted`)
		r = s.KubectlRun("", "get", "pods")
		mustEqual(t, "none left", r.Stdout+r.Stderr, "No resources found in default namespace.")
	})

	t.Run("finalizers", func(t *testing.T) {
		s := on(t, srv)
		s.MustKubectlIn(`apiVersion: v1
kind: ConfigMap
metadata:
  name: guarded
  finalizers: [example.com/guard]
data: {a: "1"}
`, "create", "-f", "-")
		uid := jsonpath(t, s, "{.metadata.uid}", "cm", "guarded")
		mustEqual(t, "delete", s.MustKubectl("delete", "cm", "guarded", "--wait=false"), `configmap "guarded" deleted`)
		// Still there, marked for deletion, otherwise unchanged.
		got := jsonpath(t, s, "{.metadata.uid} {.metadata.finalizers} {.data.a}", "cm", "guarded")
		mustEqual(t, "after delete", got, uid+` ["example.com/guard"] 1`)
		ts := jsonpath(t, s, "{.metadata.deletionTimestamp}", "cm", "guarded")
		if when, err := time.Parse(time.RFC3339, ts); err != nil || time.Since(when) > time.Minute || time.Until(when) > time.Minute {
			t.Errorf("deletionTimestamp %q (%v) is not about now", ts, err)
		}
		mustEqual(t, "grace", jsonpath(t, s, "{.metadata.deletionGracePeriodSeconds}", "cm", "guarded"), "0")
		// Deleting again is accepted and changes nothing.
		mustEqual(t, "delete again", s.MustKubectl("delete", "cm", "guarded", "--wait=false"), `configmap "guarded" deleted`)
		mustEqual(t, "timestamp kept", jsonpath(t, s, "{.metadata.deletionTimestamp}", "cm", "guarded"), ts)
		// A new finalizer can't be added once deletion started...
		out := kubectlFail(t, s, "", "patch", "cm", "guarded", "--type", "json", "-p", `[{"op":"add","path":"/metadata/finalizers/-","value":"example.com/late"}]`)
		mustContain(t, out, `The ConfigMap "guarded" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"example.com/late"}`)
		// ...nor the deletion undone: the server keeps the timestamp.
		mustEqual(t, "undo", s.MustKubectl("patch", "cm", "guarded", "--type", "json", "-p", `[{"op":"remove","path":"/metadata/deletionTimestamp"}]`), "configmap/guarded patched (no change)")
		mustEqual(t, "timestamp after undo", jsonpath(t, s, "{.metadata.deletionTimestamp}", "cm", "guarded"), ts)
		// Other fields can still change.
		mustEqual(t, "label", s.MustKubectl("label", "cm", "guarded", "still=editable"), "configmap/guarded labeled")

		// kubectl wait --for=delete times out while the finalizer is there.
		r := s.KubectlRun("", "wait", "--for=delete", "cm/guarded", "--timeout=1s")
		if r.Err == nil {
			t.Fatalf("wait --for=delete succeeded while the finalizer is set")
		}
		mustContain(t, r.Stderr, "error: timed out waiting for the condition on configmaps/guarded")

		// A watch sees the removal once the finalizer is patched away.
		w := startKubectl(t, s, "get", "cm", "guarded", "-w", "--output-watch-events")
		w.waitLine(t, 20*time.Second, "ADDED guarded", func(c []string) bool { return len(c) >= 2 && c[0] == "ADDED" && c[1] == "guarded" })
		mustEqual(t, "release", s.MustKubectl("patch", "cm", "guarded", "--type", "merge", "-p", `{"metadata":{"finalizers":null}}`), "configmap/guarded patched")
		w.waitLine(t, 20*time.Second, "DELETED guarded", func(c []string) bool { return len(c) >= 2 && c[0] == "DELETED" && c[1] == "guarded" })
		notFound(t, s, "", "cm", "guarded")

		// The same for a pod: with a finalizer it is not removed at once even
		// though it is on no node; it shows Terminating.
		s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: held
  finalizers: [example.com/guard]
spec:
  containers: [{name: app, image: busybox}]
`, "create", "-f", "-")
		mustEqual(t, "delete pod", s.MustKubectl("delete", "pod", "held", "--wait=false"), `pod "held" deleted`)
		tb := parseTable(t, s.MustKubectl("get", "pod", "held"))
		wantCells(t, tb.row(t, "NAME", "held"), "READY", "0/1", "STATUS", "Terminating")
		mustEqual(t, "pod grace", jsonpath(t, s, "{.metadata.deletionGracePeriodSeconds}", "pod", "held"), "0")
		s.MustKubectl("patch", "pod", "held", "--type", "json", "-p", `[{"op":"remove","path":"/metadata/finalizers"}]`)
		notFound(t, s, "", "pod", "held")
		if strings.Contains(s.MustKubectl("get", "pods", "-o", "name"), "held") {
			t.Error("pod held still listed")
		}
	})
}
