package e2e

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// The seed's pod under crun instead of runc.
func TestNodeCrun(t *testing.T) {
	testutil.RequireTool(t, "crun", "CRUN")
	s := StartNode(t, "--container-runtime", "crun")
	if out := s.MustKubectl("get", "nodes", "-o", "wide"); !strings.Contains(out, "crun://") {
		t.Errorf("node runtime:\n%s", out)
	}
	s.MustKubectlIn(autoPod, "create", "-f", "-")
	waitReady(t, s, "auto-pod")
	Eventually(t, 20*time.Second, func() error {
		if logs := s.KubectlRun("", "logs", "auto-pod", "-c", "client").Stdout; !strings.Contains(logs, "hello from auto-pod") {
			return fmt.Errorf("client logs: %q", logs)
		}
		return nil
	})
}

// hostNetwork, hostPort, hostPID and graceful deletion.
func TestNodeHostNamespacesAndDeletion(t *testing.T) {
	s := StartNode(t)
	hostPort := testutil.FreePort(t)
	s.MustKubectlIn(fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hostnet}
spec:
  hostNetwork: true
  hostPID: true
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: ported}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "mkdir /www && echo via-hostport > /www/index.html && exec httpd -f -p 80 -h /www"]
    ports:
    - {containerPort: 80, hostPort: %d}
---
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 3
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "trap 'echo got TERM' TERM; while true; do sleep 0.2; done"]
`, hostPort), "create", "-f", "-")
	waitReady(t, s, "hostnet", "ported", "stubborn")
	if ip := s.MustKubectl("get", "pod", "hostnet", "-o", "jsonpath={.status.podIP}"); ip != "127.0.0.1" {
		t.Errorf("hostNetwork pod IP %q, want the node's", ip)
	}
	// The host's PID namespace: the pod sees PID 1 of the machine.
	if out := s.MustKubectl("exec", "hostnet", "--", "cat", "/proc/1/cmdline"); strings.Contains(out, "catatonit") || strings.Contains(out, "sleep") {
		t.Errorf("hostPID pod's PID 1 is %q, not the machine's", out)
	}
	Eventually(t, 10*time.Second, func() error {
		out, err := exec.Command("/bin/busybox", "timeout", "5", "/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", hostPort)).CombinedOutput()
		if err != nil || string(out) != "via-hostport\n" {
			return fmt.Errorf("hostPort: %q %v", out, err)
		}
		return nil
	})
	// A process that ignores SIGTERM is killed when the grace period ends;
	// the pod shows Terminating meanwhile.
	start := time.Now()
	s.MustKubectl("delete", "pod", "stubborn", "--wait=false")
	Eventually(t, 5*time.Second, func() error {
		if out := s.MustKubectl("get", "pod", "stubborn"); !strings.Contains(out, "Terminating") {
			return fmt.Errorf("not Terminating:\n%s", out)
		}
		return nil
	})
	Eventually(t, 30*time.Second, func() error {
		if r := s.KubectlRun("", "get", "pod", "stubborn"); r.Err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	if d := time.Since(start); d < 3*time.Second {
		t.Errorf("pod gone after %v, before its 3 s grace period", d)
	}
	// Force deletion removes the object at once; the agent still cleans up.
	s.MustKubectl("delete", "pod", "ported", "--grace-period=0", "--force")
	Eventually(t, 20*time.Second, func() error {
		_, err := exec.Command("/bin/busybox", "timeout", "2", "/bin/busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://127.0.0.1:%d/", hostPort)).CombinedOutput()
		if err == nil {
			return fmt.Errorf("hostPort still answers after the pod was deleted")
		}
		return nil
	})
}
