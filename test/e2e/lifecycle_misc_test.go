package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// sysctls, hostAliases, workingDir, enableServiceLinks, supplementalGroups and
// a missing ConfigMap key.
func TestLifecycleMisc(t *testing.T) {
	s := StartNode(t)
	s.MustKubectl("create", "configmap", "partial", "--from-literal=present=yes")
	s.MustKubectl("create", "service", "clusterip", "backend", "--tcp=8080:8080")
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: misc}
spec:
  securityContext:
    sysctls:
    - {name: net.ipv4.ip_unprivileged_port_start, value: "80"}
    supplementalGroups: [4000, 5000]
  hostAliases:
  - {ip: "10.1.2.3", hostnames: ["foo.local", "bar.local"]}
  containers:
  - name: c
    image: busybox:1.36
    workingDir: /tmp
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata: {name: nolinks}
spec:
  enableServiceLinks: false
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: links}
spec:
  containers:
  - {name: c, image: "busybox:1.36", command: ["sleep", "3600"]}
---
apiVersion: v1
kind: Pod
metadata: {name: missingkey}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
    env:
    - name: X
      valueFrom: {configMapKeyRef: {name: partial, key: absent}}
`, "create", "-f", "-")
	waitReady(t, s, "misc", "nolinks", "links")
	if out := s.MustKubectl("exec", "misc", "--", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); out != "80\n" {
		t.Errorf("sysctl: %q", out)
	}
	if out := s.MustKubectl("exec", "misc", "--", "cat", "/etc/hosts"); !strings.Contains(out, "# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n") || !strings.Contains(out, "\tmisc\n") {
		t.Errorf("/etc/hosts:\n%s", out)
	}
	if out := s.MustKubectl("exec", "misc", "--", "pwd"); out != "/tmp\n" {
		t.Errorf("workingDir: %q", out)
	}
	if out := s.MustKubectl("exec", "misc", "--", "id", "-G"); !strings.Contains(out, "4000") || !strings.Contains(out, "5000") {
		t.Errorf("supplementalGroups: %q", out)
	}
	env := func(pod string) string { return s.MustKubectl("exec", pod, "--", "env") }
	if e := env("links"); !strings.Contains(e, "BACKEND_SERVICE_HOST=10.43.") || !strings.Contains(e, "KUBERNETES_SERVICE_HOST=10.43.0.1") {
		t.Errorf("service links:\n%s", e)
	}
	if e := env("nolinks"); strings.Contains(e, "BACKEND_SERVICE_HOST") || !strings.Contains(e, "KUBERNETES_SERVICE_HOST=10.43.0.1") {
		t.Errorf("enableServiceLinks false:\n%s", e)
	}
	Eventually(t, 20*time.Second, func() error {
		out := s.MustKubectl("get", "pod", "missingkey", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}")
		if out != "CreateContainerConfigError: couldn't find key absent in ConfigMap default/partial" {
			return fmt.Errorf("missing key: %q", out)
		}
		return nil
	})
}
