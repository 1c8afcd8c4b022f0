package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Liveness failures restart the container, readiness flips Ready without
// restarts, a startup probe holds the others back.
func TestLifecycleProbes(t *testing.T) {
	s := StartNode(t, "--restart-backoff=2s", "--max-restart-backoff=16s")
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: live}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: ready}
spec:
  containers:
  - name: web
    image: busybox:1.36
    command: ["sh", "-c", "mkdir -p /www && exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /ok.html, port: http}
      periodSeconds: 1
  - name: tcp
    image: busybox:1.36
    command: ["sh", "-c", "sleep 2; exec nc -ll -p 9000 -e true"]
    readinessProbe:
      tcpSocket: {port: 9000}
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata: {name: slowstart}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "sleep 3; touch /tmp/started; sleep 3600"]
    startupProbe:
      exec: {command: ["cat", "/tmp/started"]}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      exec: {command: ["cat", "/tmp/started"]}
      periodSeconds: 1
`, "create", "-f", "-")

	// Liveness: restarts that keep coming, with growing back-off.
	c := s.Client()
	var restarts []time.Time
	Eventually(t, 120*time.Second, func() error {
		p, err := c.CoreV1().Pods("default").Get(context.Background(), "live", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return fmt.Errorf("no status yet")
		}
		cs := p.Status.ContainerStatuses[0]
		if cs.State.Running != nil && int(cs.RestartCount) > len(restarts) {
			restarts = append(restarts, cs.State.Running.StartedAt.Time)
		}
		if len(restarts) < 4 {
			return fmt.Errorf("restartCount %d", cs.RestartCount)
		}
		return nil
	})
	// Each instance lives about as long (2 s healthy, then killed), so the
	// growing distance between starts is the back-off doubling: 2 s, 4 s,
	// 8 s. Noise (probe period, relist) is about a second either way.
	g1, g3 := restarts[1].Sub(restarts[0]), restarts[3].Sub(restarts[2])
	t.Logf("restarts %v", restarts)
	if g3-g1 < 3*time.Second {
		t.Errorf("back-off does not grow: restarts %v apart, later %v", g1, g3)
	}
	ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=live")
	for _, want := range []string{"Unhealthy", "Liveness probe failed", "Container c failed liveness probe, will be restarted"} {
		if !strings.Contains(ev, want) {
			t.Errorf("events lack %q:\n%s", want, ev)
		}
	}

	// Readiness: not Ready until the file is served and the port listens;
	// Ready; not Ready again when the file goes; never restarted.
	waitPod(t, s, "ready", `{.status.conditions[?(@.type=="Ready")].status}`, "False", 20*time.Second)
	if out := s.MustKubectl("get", "pod", "ready", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].message}`); !strings.Contains(out, "web") {
		t.Errorf("Ready condition message: %q", out)
	}
	s.MustKubectl("exec", "ready", "-c", "web", "--", "sh", "-c", "echo ok > /www/ok.html")
	waitPod(t, s, "ready", `{.status.conditions[?(@.type=="Ready")].status}`, "True", 30*time.Second)
	s.MustKubectl("exec", "ready", "-c", "web", "--", "rm", "/www/ok.html")
	waitPod(t, s, "ready", `{.status.conditions[?(@.type=="Ready")].status} {.status.containerStatuses[?(@.name=="web")].ready} {.status.containerStatuses[?(@.name=="web")].restartCount}`, "False false 0", 30*time.Second)

	// Startup: not started (and liveness held back) for about 3 s, then
	// started, ready and never restarted.
	waitPod(t, s, "slowstart", "{.status.containerStatuses[0].started} {.status.containerStatuses[0].ready} {.status.containerStatuses[0].restartCount}", "true true 0", 30*time.Second)
	p, err := c.CoreV1().Pods("default").Get(context.Background(), "slowstart", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var readyAt time.Time
	for _, cond := range p.Status.Conditions {
		if cond.Type == v1.PodReady {
			readyAt = cond.LastTransitionTime.Time
		}
	}
	if started := p.Status.ContainerStatuses[0].State.Running.StartedAt.Time; readyAt.Sub(started) < 2*time.Second {
		t.Errorf("Ready %v after start: the startup probe did not hold it back", readyAt.Sub(started))
	}
}
