package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// Volumes, environment and resources of a real pod.
func TestNodeVolumesAndEnv(t *testing.T) {
	s := StartNode(t)
	s.MustKubectl("create", "configmap", "cfg", "--from-literal=greeting=hello", "--from-literal=color=blue")
	s.MustKubectl("create", "secret", "generic", "sec", "--from-literal=password=s3cret")
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {app: vols}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo \"$0\" > /scratch/env; exec sleep 3600", "$(GREETING) $(POD_IP) $(MISSING)"]
    env:
    - name: GREETING
      valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    - name: NODE
      valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
    - name: MEM_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}
    - name: COMPOSED
      value: "$(GREETING)-world $$(ESCAPED)"
    envFrom:
    - secretRef: {name: sec}
      prefix: SEC_
    resources:
      limits: {memory: 64Mi, cpu: 250m}
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: sec, mountPath: /sec, readOnly: true}
    - {name: info, mountPath: /info}
    - {name: mem, mountPath: /scratch}
    - {name: cfg, mountPath: /etc/color, subPath: color}
  volumes:
  - name: cfg
    configMap: {name: cfg}
  - name: sec
    secret: {secretName: sec, defaultMode: 0400}
  - name: info
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 1Mi}
`, "create", "-f", "-")
	waitReady(t, s, "vols")
	ip := s.MustKubectl("get", "pod", "vols", "-o", "jsonpath={.status.podIP}")
	exec := func(cmd string) string {
		return s.MustKubectl("exec", "vols", "--", "sh", "-c", cmd)
	}
	Eventually(t, 10*time.Second, func() error {
		if got, want := exec("cat /scratch/env"), "hello "+ip+" $(MISSING)\n"; got != want {
			return fmt.Errorf("command expansion: %q, want %q", got, want)
		}
		return nil
	})
	if got := exec(`echo "$NODE|$MEM_LIMIT|$COMPOSED|$SEC_password"`); got != s.NodeName+"|64|hello-world $(ESCAPED)|s3cret\n" {
		t.Errorf("env: %q", got)
	}
	if got := exec("cat /cfg/greeting /cfg/color /etc/color /sec/password /info/name; echo; cat /info/labels"); got != "helloblueblues3cretvols\napp=\"vols\"" {
		t.Errorf("volume contents: %q", got)
	}
	if got := exec("stat -L -c %a /sec/password; mount | grep -c ' /sec type tmpfs'; mount | grep ' /scratch ' | grep -c tmpfs"); got != "400\n1\n1\n" {
		t.Errorf("secret mode/tmpfs, memory emptyDir: %q", got)
	}
	// sizeLimit bounds the memory-backed emptyDir.
	if r := s.KubectlRun("", "exec", "vols", "--", "dd", "if=/dev/zero", "of=/scratch/big", "bs=1024", "count=2048"); r.Err == nil {
		t.Errorf("wrote 2 MiB into a 1Mi memory emptyDir")
	}
	// The cgroup limits are in place.
	if got := exec("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"); strings.TrimSpace(got) != "67108864" {
		t.Errorf("memory limit %q", got)
	}
	// A configMap change reaches the volume in place (not the subPath mount).
	s.MustKubectlIn(`{"data":{"greeting":"bonjour","color":"red"}}`, "patch", "configmap", "cfg", "--type=merge", "-p", `{"data":{"greeting":"bonjour","color":"red"}}`)
	Eventually(t, 90*time.Second, func() error {
		if got := exec("cat /cfg/greeting"); got != "bonjour" {
			return fmt.Errorf("configMap volume still says %q", got)
		}
		return nil
	})
	if got := exec("cat /etc/color"); got != "blue" {
		t.Errorf("subPath mount changed to %q", got)
	}
}

// A container that exceeds its memory limit is OOM-killed and restarted.
func TestNodeOOMKilled(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: hog}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "sleep 1; x=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa; while true; do x=$x$x; done"]
    resources:
      limits: {memory: 16Mi}
`, "create", "-f", "-")
	waitPod(t, s, "hog", "{.status.phase} {.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}", "Failed OOMKilled 137", 60*time.Second)
	if out := s.MustKubectl("get", "pod", "hog"); !strings.Contains(out, "OOMKilled") {
		t.Errorf("get pod STATUS:\n%s", out)
	}
}
