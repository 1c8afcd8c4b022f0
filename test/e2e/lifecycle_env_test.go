package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Seed 004's environment examples, its non-root example and its CPU example,
// with our busybox image.
func TestLifecycleSeed004(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: printenv
spec:
  containers:
  - name: myapp
    image: busybox:1.36
    resources:
      limits: {memory: "128Mi", cpu: "500m"}
    # Debian's busybox-static has no printenv applet: the same with sh.
    command: ["sh", "-c", "echo $HOSTNAME; echo $KUBERNETES_PORT"]
  restartPolicy: OnFailure
---
apiVersion: v1
kind: Pod
metadata:
  name: dependent
spec:
  containers:
  - name: myapp
    image: busybox:1.36
    resources:
      limits: {memory: "128Mi", cpu: "500m"}
    command: ["sh", "-c"]
    args:
      - printf UNCHANGED_REFERENCE=$UNCHANGED_REFERENCE'\n'; printf SERVICE=$SERVICE'\n'; printf ESCAPED_SERVICE=$ESCAPED_SERVICE; sleep 120
    env:
      - name: SERVICE_IP
        value: "192.168.99.102"
      - name: SERVICE_PORT
        value: "31111"
      - name: UNCHANGED_REFERENCE
        value: $(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)
      - name: PROTOCAL
        value: "https"
      - name: SERVICE
        value: $(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)
      - name: ESCAPED_SERVICE
        value: $$(PROTOCAL)://$(SERVICE_IP):$(SERVICE_PORT)
---
apiVersion: v1
kind: Pod
metadata:
  name: nonroot
spec:
  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    fsGroup: 2000
  volumes:
    - name: security
      emptyDir: {}
  containers:
  - name: myapp
    image: busybox:1.36
    command: ["sh","-c","sleep 1h"]
    volumeMounts:
      - name: security
        mountPath: /data/demo
    securityContext:
        allowPrivilegeEscalation: false
    resources:
      limits: {memory: "128Mi", cpu: "500m"}
---
apiVersion: v1
kind: Pod
metadata:
  name: cpu
spec:
  containers:
  - name: myapp
    image: busybox:1.36
    resources:
      requests: {cpu: "0.5"}
      limits: {memory: "128Mi", cpu: "1"}
    # Two busy loops ask for two CPUs; the limit holds them to one.
    command: ["sh", "-c", "yes >/dev/null & yes >/dev/null & wait"]
`, "create", "-f", "-")
	waitPod(t, s, "printenv", "{.status.phase}", "Succeeded", 30*time.Second)
	if out := s.MustKubectl("logs", "printenv"); out != "printenv\ntcp://10.43.0.1:443\n" {
		t.Errorf("printenv HOSTNAME KUBERNETES_PORT: %q", out)
	}
	waitReady(t, s, "dependent", "nonroot", "cpu")
	Eventually(t, 10*time.Second, func() error {
		want := "UNCHANGED_REFERENCE=$(PROTOCAL)://192.168.99.102:31111\nSERVICE=https://192.168.99.102:31111\nESCAPED_SERVICE=$(PROTOCAL)://192.168.99.102:31111"
		if out := s.MustKubectl("logs", "dependent"); out != want {
			return fmt.Errorf("dependent variables:\n%s", out)
		}
		return nil
	})
	if out := s.MustKubectl("exec", "nonroot", "--", "id"); !strings.HasPrefix(out, "uid=1000 gid=3000 groups=2000") {
		t.Errorf("id: %q", out)
	}
	out := s.MustKubectl("exec", "nonroot", "--", "sh", "-c", "echo hi > /data/demo/f; stat -c '%u %g' /data/demo/f; stat -c '%g %A' /data/demo")
	if out != "1000 2000\n2000 drwxrwsrwx\n" {
		t.Errorf("file in the fsGroup volume: %q", out)
	}
	if out := s.MustKubectl("exec", "nonroot", "--", "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("no_new_privs: %q", out)
	}
	// CPU: usage over a window, from the container's cgroup counters.
	usage := func() (int64, time.Time) {
		out := s.MustKubectl("exec", "cpu", "--", "sh", "-c", "cat /sys/fs/cgroup/cpuacct/cpuacct.usage 2>/dev/null || (grep usage_usec /sys/fs/cgroup/cpu.stat | cut -d' ' -f2 | sed 's/$/000/')")
		n, err := strconv.ParseInt(strings.TrimSpace(out), 10, 64)
		if err != nil {
			t.Fatalf("cpu usage %q", out)
		}
		return n, time.Now()
	}
	u0, t0 := usage()
	Eventually(t, 10*time.Second, func() error {
		if time.Since(t0) < 3*time.Second {
			return fmt.Errorf("measuring")
		}
		return nil
	})
	u1, t1 := usage()
	cpus := float64(u1-u0) / float64(t1.Sub(t0).Nanoseconds())
	t.Logf("two busy loops under a 1-CPU limit used %.2f CPUs", cpus)
	// The upper bound is the limit; the lower one only shows the loops ran
	// (other work on a 2-core machine may take the rest).
	if cpus > 1.15 || cpus < 0.2 {
		t.Errorf("CPU use %.2f, want at most about 1 (limit 1, asking for 2)", cpus)
	}
	if q := s.MustKubectl("exec", "cpu", "--", "sh", "-c", "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max"); q != "100000\n100000\n" && q != "100000 100000\n" {
		t.Errorf("CFS quota/period: %q", q)
	}
}
