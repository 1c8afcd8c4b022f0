package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// waitPod waits until kubectl's jsonpath expr of pod equals want.
func waitPod(t *testing.T, s *Server, pod, expr, want string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		r := s.KubectlRun("", "get", "pod", pod, "-o", "jsonpath="+expr)
		if r.Err != nil {
			return fmt.Errorf("%v: %s", r.Err, r.Stderr)
		}
		if r.Stdout != want {
			return fmt.Errorf("%s of %s is %q, want %q", expr, pod, r.Stdout, want)
		}
		return nil
	})
}

func waitReady(t *testing.T, s *Server, pods ...string) {
	t.Helper()
	args := append([]string{"wait", "--for=condition=Ready", "--timeout=60s"}, prefixed("pod/", pods)...)
	if r := s.KubectlRun("", args...); r.Err != nil {
		t.Fatalf("pods not ready: %v\n%s\n%s\n%s", r.Err, r.Stderr, s.KubectlRun("", "get", "pods", "-o", "wide").Stdout,
			s.KubectlRun("", append([]string{"describe", "pod"}, pods...)...).Stdout)
	}
}

func prefixed(p string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = p + n
	}
	return out
}

// The seed's first example as written, with our busybox image: two containers
// in one pod, one serving on 8082, the other fetching http://localhost:8082/.
const autoPod = `apiVersion: v1
kind: Pod
metadata:
  name: auto-pod
  labels:
    app: auto
spec:
  containers:
  - name: web
    image: busybox:1.36
    command: ["sh", "-c", "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec httpd -f -p 8082 -h /www"]
    ports:
    - containerPort: 8082
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 200m, memory: 64Mi}
  - name: client
    image: busybox:1.36
    command: ["sh", "-c", "while true; do wget -q -O - http://localhost:8082/; sleep 1; done"]
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {cpu: 200m, memory: 64Mi}
`

func TestNodeSeedAutoPod(t *testing.T) {
	s := StartNode(t)
	out := s.MustKubectl("get", "nodes", "-o", "wide")
	for _, want := range []string{s.NodeName, "Ready", "control-plane", "v1.32.13-peapod", "127.0.0.1", "runc://"} {
		if !strings.Contains(out, want) {
			t.Errorf("get nodes -o wide lacks %q:\n%s", want, out)
		}
	}
	s.MustKubectlIn(autoPod, "create", "-f", "-")
	waitReady(t, s, "auto-pod")
	Eventually(t, 20*time.Second, func() error {
		logs := s.KubectlRun("", "logs", "auto-pod", "-c", "client").Stdout
		if !strings.Contains(logs, "hello from auto-pod") {
			return fmt.Errorf("client logs: %q", logs)
		}
		return nil
	})
	out = s.MustKubectl("get", "pod", "auto-pod", "-o", "wide")
	if !strings.Contains(out, "2/2") || !strings.Contains(out, "Running") || !strings.Contains(out, "10.42.") || !strings.Contains(out, s.NodeName) {
		t.Errorf("get pod -o wide:\n%s", out)
	}
	st := s.MustKubectl("get", "pod", "auto-pod", "-o", "jsonpath={.status.qosClass} {.status.hostIP} {.status.podIPs[0].ip} {.status.conditions[*].type}")
	for _, want := range []string{"Burstable", "127.0.0.1", "10.42.", "PodReadyToStartContainers", "Initialized", "ContainersReady", "Ready", "PodScheduled"} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q: %s", want, st)
		}
	}
	desc := s.MustKubectl("describe", "pod", "auto-pod")
	for _, want := range []string{"Scheduled", "Successfully assigned default/auto-pod to " + s.NodeName, "Pulled", "Created", "Started", "Started container web"} {
		if !strings.Contains(desc, want) {
			t.Errorf("describe lacks %q:\n%s", want, desc)
		}
	}
	// Graceful deletion removes the pod object once its containers stopped.
	s.MustKubectl("delete", "pod", "auto-pod", "--grace-period=2")
	if r := s.KubectlRun("", "get", "pod", "auto-pod"); r.Err == nil {
		t.Errorf("pod still there after delete: %s", r.Stdout)
	}
}

// Containers of one pod share the network, UTS and IPC namespaces and their
// volumes; with shareProcessNamespace they share PIDs, with the infra process
// as PID 1 reaping orphans.
func TestNodePodSharing(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: share
spec:
  shareProcessNamespace: true
  containers:
  - name: writer
    image: busybox:1.36
    command: ["sh", "-c", "echo data-from-writer > /data/msg; echo shm-from-writer > /dev/shm/msg; exec sleep 3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  - name: reader
    image: busybox:1.36
    command: ["sleep", "3600"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    emptyDir: {}
`, "create", "-f", "-")
	waitReady(t, s, "share")
	Eventually(t, 10*time.Second, func() error {
		if out := s.KubectlRun("", "exec", "share", "-c", "reader", "--", "cat", "/data/msg", "/dev/shm/msg").Stdout; out != "data-from-writer\nshm-from-writer\n" {
			return fmt.Errorf("reader sees %q", out)
		}
		return nil
	})
	for _, c := range []string{"writer", "reader"} {
		if out := s.MustKubectl("exec", "share", "-c", c, "--", "hostname"); strings.TrimSpace(out) != "share" {
			t.Errorf("hostname in %s = %q", c, out)
		}
	}
	// One PID namespace: the reader sees the writer's sleep, PID 1 is the pause process.
	ps := s.MustKubectl("exec", "share", "-c", "reader", "--", "ps", "-o", "pid,comm")
	if !strings.Contains(ps, "catatonit") || strings.Count(ps, "sleep") < 2 {
		t.Errorf("ps in the shared PID namespace:\n%s", ps)
	}
	if out := s.MustKubectl("exec", "share", "-c", "reader", "--", "cat", "/proc/1/comm"); strings.TrimSpace(out) != "catatonit" {
		t.Errorf("PID 1 is %q", out)
	}
	// An orphan is reaped by PID 1: no zombie is left.
	s.MustKubectl("exec", "share", "-c", "reader", "--", "sh", "-c", "(sleep 0.2 &); true")
	Eventually(t, 10*time.Second, func() error {
		ps := s.MustKubectl("exec", "share", "-c", "reader", "--", "ps", "-o", "stat,comm")
		if strings.Contains(ps, "Z ") {
			return fmt.Errorf("zombie left:\n%s", ps)
		}
		return nil
	})
}

// Pods reach each other by pod IP; the node reaches pods.
func TestNodePodToPod(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: server
spec:
  containers:
  - name: httpd
    image: busybox:1.36
    command: ["sh", "-c", "mkdir /www && echo served-by-server > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  containers:
  - name: sh
    image: busybox:1.36
    command: ["sleep", "3600"]
`, "create", "-f", "-")
	waitReady(t, s, "server", "client")
	ip := s.MustKubectl("get", "pod", "server", "-o", "jsonpath={.status.podIP}")
	if !strings.HasPrefix(ip, "10.42.") {
		t.Fatalf("server pod IP %q", ip)
	}
	Eventually(t, 10*time.Second, func() error {
		r := s.KubectlRun("", "exec", "client", "--", "timeout", "5", "wget", "-q", "-O", "-", "http://"+ip+":8080/")
		if r.Stdout != "served-by-server\n" {
			return fmt.Errorf("pod to pod: %q %v %s", r.Stdout, r.Err, r.Stderr)
		}
		return nil
	})
	// The node (the host's network namespace) reaches the pod too.
	out, err := exec.Command("/bin/busybox", "timeout", "5", "/bin/busybox", "wget", "-q", "-O", "-", "http://"+ip+":8080/").CombinedOutput()
	if err != nil || string(out) != "served-by-server\n" {
		t.Errorf("node to pod: %q %v", out, err)
	}
	// Nothing for the cluster or service ranges leaves by the default route.
	for _, addr := range []string{"10.42.250.1", "10.43.250.1"} {
		out, _ := exec.Command("ip", "route", "get", addr).CombinedOutput()
		if !strings.Contains(string(out), "unreachable") && !strings.Contains(string(out), "No route to host") {
			t.Errorf("ip route get %s: %s", addr, out)
		}
	}
}
