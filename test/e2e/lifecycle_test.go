package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// statusColumn is kubectl get pod's STATUS for pod.
func statusColumn(t *testing.T, s *Server, pod string) string {
	t.Helper()
	out := s.MustKubectl("get", "pod", pod, "--no-headers")
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("get pod %s: %q", pod, out)
	}
	return f[2]
}

func waitStatusColumn(t *testing.T, s *Server, pod, want string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() error {
		if got := statusColumn(t, s, pod); got != want {
			return fmt.Errorf("STATUS of %s is %s, want %s", pod, got, want)
		}
		return nil
	})
}

// Init containers run one at a time, in order, before the app containers;
// sidecars keep running beside them; failures follow restartPolicy.
func TestLifecycleInitContainers(t *testing.T) {
	s := StartNode(t)
	gate := t.TempDir()
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: ordered}
spec:
  initContainers:
  - name: first
    image: busybox:1.36
    command: ["sh", "-c", "echo first >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}]
  - name: second
    image: busybox:1.36
    command: ["sh", "-c", "while [ ! -e /gate/open ]; do sleep 0.1; done; echo second >> /work/order"]
    volumeMounts: [{name: work, mountPath: /work}, {name: gate, mountPath: /gate}]
  - name: sidecar
    image: busybox:1.36
    restartPolicy: Always
    command: ["sh", "-c", "echo sidecar >> /work/order; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: busybox:1.36
    command: ["sh", "-c", "echo app >> /work/order; exec sleep 3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - {name: work, emptyDir: {}}
  - {name: gate, hostPath: {path: `+gate+`, type: Directory}}
---
apiVersion: v1
kind: Pod
metadata: {name: job-with-sidecar}
spec:
  restartPolicy: Never
  initContainers:
  - {name: proxy, image: "busybox:1.36", restartPolicy: Always, command: ["sleep", "3600"]}
  containers:
  - {name: work, image: "busybox:1.36", command: ["sh", "-c", "sleep 1; exit 0"]}
---
apiVersion: v1
kind: Pod
metadata: {name: init-fails-never}
spec:
  restartPolicy: Never
  initContainers:
  - {name: broken, image: "busybox:1.36", command: ["sh", "-c", "exit 2"]}
  containers:
  - {name: app, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: init-crashloop}
spec:
  initContainers:
  - {name: broken, image: "busybox:1.36", command: ["sh", "-c", "exit 2"]}
  containers:
  - {name: app, image: "busybox:1.36", command: ["sleep", "3600"]}
`, "create", "-f", "-")
	waitStatusColumn(t, s, "ordered", "Init:1/3", 30*time.Second)
	if err := writeFile(gate + "/open"); err != nil {
		t.Fatal(err)
	}
	waitReady(t, s, "ordered")
	if out := s.MustKubectl("exec", "ordered", "-c", "app", "--", "cat", "/work/order"); out != "first\nsecond\nsidecar\napp\n" {
		t.Errorf("order of starts: %q", out)
	}
	if out := s.MustKubectl("get", "pod", "ordered", "-o", "jsonpath={.status.initContainerStatuses[*].name}={.status.initContainerStatuses[2].state.running.startedAt}"); !strings.HasPrefix(out, "first second sidecar=") || strings.HasSuffix(out, "=") {
		t.Errorf("init statuses: %q", out)
	}
	// A sidecar does not keep a finished pod from completing.
	waitPod(t, s, "job-with-sidecar", "{.status.phase}", "Succeeded", 30*time.Second)
	waitPod(t, s, "init-fails-never", "{.status.phase}", "Failed", 30*time.Second)
	if st := statusColumn(t, s, "init-fails-never"); st != "Init:Error" {
		t.Errorf("STATUS %s, want Init:Error", st)
	}
	if out := s.MustKubectl("get", "pod", "init-fails-never", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}"); out != "PodInitializing" {
		t.Errorf("app container of a failed init: %q", out)
	}
	waitStatusColumn(t, s, "init-crashloop", "Init:CrashLoopBackOff", 60*time.Second)
}

// postStart holds Running back; preStop runs on deletion before SIGTERM.
func TestLifecycleHooks(t *testing.T) {
	s := StartNode(t)
	out := t.TempDir()
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: hooked}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'echo term >> /out/log; exit 0' TERM; while true; do sleep 0.1; done"]
    volumeMounts: [{name: out, mountPath: /out}]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "echo poststart >> /out/log"]}
      preStop:
        exec: {command: ["sh", "-c", "echo prestop >> /out/log"]}
  volumes:
  - {name: out, hostPath: {path: `+out+`, type: Directory}}
---
apiVersion: v1
kind: Pod
metadata: {name: badhook}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        exec: {command: ["sh", "-c", "exit 1"]}
`, "create", "-f", "-")
	waitReady(t, s, "hooked")
	s.MustKubectl("delete", "pod", "hooked")
	Eventually(t, 10*time.Second, func() error {
		b, _ := readFile(out + "/log")
		if b != "poststart\nprestop\nterm\n" {
			return fmt.Errorf("hook order: %q", b)
		}
		return nil
	})
	Eventually(t, 30*time.Second, func() error {
		ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=badhook")
		if !strings.Contains(ev, "FailedPostStartHook") {
			return fmt.Errorf("events: %s", ev)
		}
		return nil
	})
	waitPod(t, s, "badhook", "{.status.phase}", "Failed", 30*time.Second)
}

// activeDeadlineSeconds fails the pod with DeadlineExceeded; a termination
// message is reported from the file.
func TestLifecycleDeadlineAndMessage(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: deadline}
spec:
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: message}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo 'all done' > /dev/termination-log; exit 4"]
---
apiVersion: v1
kind: Pod
metadata: {name: fallback}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo from the log; exit 5"]
`, "create", "-f", "-")
	waitPod(t, s, "deadline", "{.status.phase} {.status.reason}", "Failed DeadlineExceeded", 30*time.Second)
	if ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=deadline"); !strings.Contains(ev, "Pod was active on the node longer than the specified deadline") {
		t.Errorf("events:\n%s", ev)
	}
	waitPod(t, s, "message", "{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.message}", "Failed 4 all done\n", 30*time.Second)
	waitPod(t, s, "fallback", "{.status.containerStatuses[0].state.terminated.message}", "from the log", 30*time.Second)
}

func writeFile(path string) error { return os.WriteFile(path, nil, 0o644) }

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

// A pod whose sandbox dies restarts: a new sandbox, its init containers run
// again, its app containers restart.
func TestLifecycleSandboxRestart(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: phoenix}
spec:
  initContainers:
  - name: init
    image: busybox:1.36
    command: ["sh", "-c", "echo init-ran >> /work/log"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3600"]
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - {name: work, emptyDir: {}}
`, "create", "-f", "-")
	waitReady(t, s, "phoenix")
	uid := s.MustKubectl("get", "pod", "phoenix", "-o", "jsonpath={.metadata.uid}")
	// The pod's infra process: catatonit in the pod's cgroup.
	infra := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
		cg, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "cgroup"))
		if strings.TrimSpace(string(comm)) == "catatonit" && strings.Contains(string(cg), "pod"+uid) {
			infra = pid
		}
	}
	if infra == 0 {
		t.Fatalf("no infra process for pod %s", uid)
	}
	if err := syscall.Kill(infra, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitPod(t, s, "phoenix", "{.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}", "1 true", 60*time.Second)
	if out := s.MustKubectl("exec", "phoenix", "--", "cat", "/work/log"); out != "init-ran\ninit-ran\n" {
		t.Errorf("init container runs: %q", out)
	}
}
