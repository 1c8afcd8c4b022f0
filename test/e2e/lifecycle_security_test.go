package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// runtimeClassName picks the OCI runtime; an unknown handler keeps the pod
// from starting with upstream's words.
func TestLifecycleRuntimeClass(t *testing.T) {
	testutil.RequireTool(t, "crun", "CRUN")
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: crun}
handler: crun
---
apiVersion: node.k8s.io/v1
kind: RuntimeClass
metadata: {name: nowhere}
handler: nowhere
---
apiVersion: v1
kind: Pod
metadata: {name: on-crun}
spec:
  runtimeClassName: crun
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: on-nowhere}
spec:
  runtimeClassName: nowhere
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
`, "create", "-f", "-")
	waitReady(t, s, "on-crun")
	// The pod's container runs under crun: crun's own state (the handler's
	// --root) lists it, running.
	id := strings.TrimPrefix(s.MustKubectl("get", "pod", "on-crun", "-o", "jsonpath={.status.containerStatuses[0].containerID}"), "peapod://")
	out, err := exec.Command("crun", "--root", filepath.Join(s.DataDir, "agent", "runtime", "runtime", "crun"), "list").CombinedOutput()
	if err != nil || !strings.Contains(string(out), id) || !strings.Contains(string(out), "running") {
		t.Errorf("crun list: %v\n%s (want %s running)", err, out, id)
	}
	Eventually(t, 20*time.Second, func() error {
		ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=on-nowhere")
		if !strings.Contains(ev, "FailedCreatePodSandBox") || !strings.Contains(ev, `no runtime for "nowhere" is configured`) {
			return fmt.Errorf("events:\n%s", ev)
		}
		return nil
	})
	if st := statusColumn(t, s, "on-nowhere"); st != "ContainerCreating" {
		t.Errorf("STATUS %s", st)
	}
	// A RuntimeClass that does not exist is refused by admission.
	r := s.KubectlRun(`apiVersion: v1
kind: Pod
metadata: {name: on-missing}
spec:
  runtimeClassName: missing
  containers:
  - {name: c, image: "busybox:1.36"}
`, "create", "-f", "-")
	if r.Err == nil || !strings.Contains(r.Stderr, `RuntimeClass "missing" not found`) {
		t.Errorf("pod with a missing RuntimeClass: %v %s", r.Err, r.Stderr)
	}
}

// kubectl debug adds an ephemeral container that shares the target's PIDs.
func TestLifecycleDebug(t *testing.T) {
	s := StartNode(t)
	s.MustKubectl("run", "target", "--image=busybox:1.36", "--restart=Never", "--command", "--", "sleep", "3600")
	waitReady(t, s, "target")
	s.MustKubectl("debug", "target", "--image=busybox:1.36", "--target=target", "--container=debugger", "--", "sleep", "3600")
	Eventually(t, 30*time.Second, func() error {
		out := s.MustKubectl("get", "pod", "target", "-o", `jsonpath={.status.ephemeralContainerStatuses[0].name} {.status.ephemeralContainerStatuses[0].state.running.startedAt}`)
		if !strings.HasPrefix(out, "debugger 20") {
			return fmt.Errorf("ephemeral container status %q", out)
		}
		return nil
	})
	Eventually(t, 30*time.Second, func() error {
		r := s.KubectlRun("", "exec", "target", "-c", "debugger", "--", "ps", "-o", "pid,args")
		if r.Err != nil || !strings.Contains(r.Stdout, "sleep 3600") || strings.Count(r.Stdout, "sleep 3600") < 2 {
			return fmt.Errorf("ps in the debugger: %q %v %s", r.Stdout, r.Err, r.Stderr)
		}
		return nil
	})
}

// seccompProfile, privileged, capabilities and a memory hog's crash loop.
func TestLifecycleSecurity(t *testing.T) {
	s := StartNode(t, "--restart-backoff=1s", "--max-restart-backoff=4s")
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: sec}
spec:
  containers:
  - name: confined
    image: busybox:1.36
    command: ["sleep", "3600"]
    securityContext:
      seccompProfile: {type: RuntimeDefault}
  - name: unconfined
    image: busybox:1.36
    command: ["sleep", "3600"]
  - name: privileged
    image: busybox:1.36
    command: ["sleep", "3600"]
    securityContext: {privileged: true}
  - name: nonet
    image: busybox:1.36
    command: ["sleep", "3600"]
    securityContext:
      capabilities: {drop: ["NET_RAW", "CHOWN"], add: ["SYS_TIME"]}
  - name: ro
    image: busybox:1.36
    command: ["sleep", "3600"]
    securityContext: {readOnlyRootFilesystem: true}
---
apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    resources:
      limits: {memory: 16Mi}
`, "create", "-f", "-")
	waitReady(t, s, "sec")
	field := func(c, key string) string {
		out := s.MustKubectl("exec", "sec", "-c", c, "--", "grep", key, "/proc/self/status")
		return strings.TrimSpace(strings.TrimPrefix(out, key))
	}
	if got := field("confined", "Seccomp:"); got != "2" {
		t.Errorf("RuntimeDefault seccomp mode %q", got)
	}
	if got := field("unconfined", "Seccomp:"); got != "0" {
		t.Errorf("default (Unconfined) seccomp mode %q", got)
	}
	if r := s.KubectlRun("", "exec", "sec", "-c", "confined", "--", "unshare", "-U", "true"); r.Err == nil {
		t.Errorf("unshare -U allowed under RuntimeDefault")
	}
	// Privileged: every capability (CAP_SYS_ADMIN among them, which the
	// default set lacks) and the host's devices.
	caps := func(c string) uint64 {
		n, err := strconv.ParseUint(field(c, "CapEff:"), 16, 64)
		if err != nil {
			t.Fatalf("CapEff of %s: %v", c, err)
		}
		return n
	}
	const capSysAdmin = 1 << 21
	if priv, def := caps("privileged"), caps("unconfined"); priv&capSysAdmin == 0 || def&capSysAdmin != 0 || priv&def != def {
		t.Errorf("CapEff privileged %x, default %x", priv, def)
	}
	devices := func(c string) int {
		out := s.MustKubectl("exec", "sec", "-c", c, "--", "ls", "/dev")
		return len(strings.Fields(out))
	}
	if priv, def := devices("privileged"), devices("unconfined"); priv <= def {
		t.Errorf("privileged container sees %d entries in /dev, the default one %d", priv, def)
	}
	if r := s.KubectlRun("", "exec", "sec", "-c", "nonet", "--", "chown", "1:1", "/tmp"); r.Err == nil {
		t.Errorf("chown allowed with CHOWN dropped")
	}
	if r := s.KubectlRun("", "exec", "sec", "-c", "ro", "--", "touch", "/x"); r.Err == nil || !strings.Contains(r.Stderr+r.Stdout, "Read-only file system") {
		t.Errorf("write to a read-only root: %v %s %s", r.Err, r.Stdout, r.Stderr)
	}
	// OOMKilled under restartPolicy Always: a crash loop.
	waitStatusColumn(t, s, "hog", "CrashLoopBackOff", 60*time.Second)
	if out := s.MustKubectl("get", "pod", "hog", "-o", "jsonpath={.status.containerStatuses[0].lastState.terminated.reason} {.status.containerStatuses[0].lastState.terminated.exitCode}"); out != "OOMKilled 137" {
		t.Errorf("hog's last state: %q", out)
	}
}
