package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// SIGKILL the agent (here: the server it runs in) while pods run, start it
// again: nothing restarts, logs stay, an exit that happened meanwhile is
// reported with its real code, nothing is duplicated.
func TestNodeAgentRestart(t *testing.T) {
	s := StartNode(t)
	signalDir := t.TempDir()
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: steady
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo started; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: ender
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "while [ ! -e /signal/go ]; do sleep 0.1; done; exit 3"]
    volumeMounts: [{name: signal, mountPath: /signal}]
  volumes:
  - name: signal
    hostPath: {path: `+signalDir+`, type: Directory}
`, "create", "-f", "-")
	waitReady(t, s, "steady", "ender")
	before := s.MustKubectl("get", "pod", "steady", "-o", "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}")
	enderID := strings.TrimPrefix(s.MustKubectl("get", "pod", "ender", "-o", "jsonpath={.status.containerStatuses[0].containerID}"), "peapod://")

	s.Kill()
	// While the agent is down the container ends on its own.
	if err := os.WriteFile(filepath.Join(signalDir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 20*time.Second, func() error {
		if _, err := os.Stat(filepath.Join(s.DataDir, "agent", "runtime", "exits", enderID)); err != nil {
			return fmt.Errorf("container %s has not exited yet", enderID)
		}
		return nil
	})

	s.Start()
	s.WaitNodeReady(60 * time.Second)
	waitPod(t, s, "ender", "{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode} {.status.containerStatuses[0].state.terminated.reason}", "Failed 3 Error", 30*time.Second)
	after := s.MustKubectl("get", "pod", "steady", "-o", "jsonpath={.status.containerStatuses[0].containerID} {.status.containerStatuses[0].state.running.startedAt} {.status.containerStatuses[0].restartCount}")
	if after != before {
		t.Errorf("steady's container changed across the agent restart: %q -> %q", before, after)
	}
	if logs := s.MustKubectl("logs", "steady"); logs != "started\n" {
		t.Errorf("steady's logs after the restart: %q", logs)
	}
	sbs, _ := os.ReadDir(filepath.Join(s.DataDir, "agent", "runtime", "sandboxes"))
	cs, _ := os.ReadDir(filepath.Join(s.DataDir, "agent", "runtime", "containers"))
	if len(sbs) != 2 || len(cs) != 2 {
		t.Errorf("after the restart: %d sandboxes and %d containers, want 2 and 2", len(sbs), len(cs))
	}
}

// A second node joins with the token as a separate `peapod agent` on the same
// machine (its own name, data dir, port and bridge), gets its own credentials,
// heartbeats through its Lease and runs the pods bound to it; pods on the two
// nodes reach each other.
func TestNodeAgentJoins(t *testing.T) {
	s := StartNode(t)
	dir, agentArgs := prepareAgent(t, s, "joiner")

	// A wrong token gets nothing.
	out, err := exec.Command(s.Bin, agentArgs("wrong-token")...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "401 Unauthorized") {
		t.Errorf("agent with a wrong token: %v\n%s", err, out)
	}

	startAgent(t, s, dir, agentArgs(serverToken(t, s)))
	Eventually(t, 60*time.Second, func() error {
		r := s.KubectlRun("", "get", "node", "joiner", "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR} {.spec.taints}")
		if r.Err != nil || !strings.HasPrefix(r.Stdout, "True 10.42.") || strings.Contains(r.Stdout, "not-ready") {
			return fmt.Errorf("node joiner: %q %s", r.Stdout, r.Stderr)
		}
		return nil
	})
	// Its own identity, not the token or the admin's.
	crtPEM, err := os.ReadFile(filepath.Join(dir, "agent", "tls", "client.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(crtPEM)
	if blk == nil {
		t.Fatalf("node client certificate is not PEM")
	}
	crt, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || crt.Subject.CommonName != "system:node:joiner" || len(crt.Subject.Organization) != 1 || crt.Subject.Organization[0] != "system:nodes" {
		t.Errorf("node client certificate: %v %v", crt.Subject, err)
	}
	lease, err := s.Client().CoordinationV1().Leases("kube-node-lease").Get(context.Background(), "joiner", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "joiner" || lease.Spec.RenewTime == nil {
		t.Errorf("node lease: %+v %v", lease, err)
	}
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: on-joiner}
spec:
  nodeSelector: {kubernetes.io/hostname: joiner}
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "mkdir /www && echo from-joiner > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Pod
metadata: {name: on-server}
spec:
  nodeSelector: {kubernetes.io/hostname: `+s.NodeName+`}
  containers:
  - {name: c, image: "busybox:1.36", command: [sleep, "3600"]}
`, "create", "-f", "-")
	waitReady(t, s, "on-joiner", "on-server")
	ip := s.MustKubectl("get", "pod", "on-joiner", "-o", "jsonpath={.status.podIP}")
	serverCIDR := s.MustKubectl("get", "node", s.NodeName, "-o", "jsonpath={.spec.podCIDR}")
	joinerCIDR := s.MustKubectl("get", "node", "joiner", "-o", "jsonpath={.spec.podCIDR}")
	if serverCIDR == joinerCIDR {
		t.Errorf("both nodes got pod CIDR %s", serverCIDR)
	}
	Eventually(t, 10*time.Second, func() error {
		r := s.KubectlRun("", "exec", "on-server", "--", "timeout", "5", "wget", "-q", "-O", "-", "http://"+ip+":8080/")
		if r.Stdout != "from-joiner\n" {
			return fmt.Errorf("cross-node pod to pod: %q %v %s", r.Stdout, r.Err, r.Stderr)
		}
		return nil
	})
	// The image store can be changed while the agent runs.
	if out, err := exec.Command(s.Bin, "image", "load", "--data-dir", dir, BusyboxArchive(t)).CombinedOutput(); err != nil {
		t.Errorf("image load while the agent runs: %v %s", err, out)
	}
	if node := s.MustKubectl("get", "pod", "on-joiner", "-o", "jsonpath={.spec.nodeName}"); node != "joiner" {
		t.Errorf("pod landed on %q", node)
	}
	// Logs and exec go through the API server to the joined agent's API.
	if out := s.MustKubectl("exec", "on-joiner", "--", "echo", "hi from joiner"); out != "hi from joiner\n" {
		t.Errorf("exec: %q", out)
	}
}

// prepareAgent makes a data dir for `peapod agent` node name joining s (the
// busybox image loaded, every pull sent to loopback) and returns it with the
// agent's arguments for a token.
func prepareAgent(t *testing.T, s *Server, name string) (string, func(token string) []string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command(s.Bin, "image", "load", "--data-dir", dir, BusyboxArchive(t)).CombinedOutput(); err != nil {
		t.Fatalf("image load: %v %s", err, out)
	}
	registries := filepath.Join(dir, "registries.yaml")
	testutil.WriteRegistries(t, registries, "http://127.0.0.1:1")
	port := strconv.Itoa(testutil.FreePort(t))
	return dir, func(token string) []string {
		return []string{"agent", "--server", "https://127.0.0.1:" + strconv.Itoa(s.Port), "--token", token, "--data-dir", dir,
			"--node-name", name, "--node-ip", "127.0.0.1", "--kubelet-port", port, "--registries", registries}
	}
}

// serverToken is s's node join token.
func serverToken(t *testing.T, s *Server) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.DataDir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(token))
}

// seed 004's node affinity: Pending with upstream's reason until a node has
// the label, then scheduled and running.
func TestNodeAffinityWaitsForLabel(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata:
  name: with-node-affinity
spec:
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - key: disktype
            operator: In
            values: [ssd]
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
`, "create", "-f", "-")
	Eventually(t, 20*time.Second, func() error {
		ev := s.MustKubectl("get", "events", "--field-selector", "involvedObject.name=with-node-affinity")
		if !strings.Contains(ev, "FailedScheduling") || !strings.Contains(ev, "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.") {
			return fmt.Errorf("events: %s", ev)
		}
		return nil
	})
	if ph := s.MustKubectl("get", "pod", "with-node-affinity", "-o", "jsonpath={.status.phase}"); ph != "Pending" {
		t.Fatalf("phase %q before the label", ph)
	}
	s.MustKubectl("label", "nodes", s.NodeName, "disktype=ssd")
	waitReady(t, s, "with-node-affinity")
}

// startAgent runs `peapod agent` with args until the test ends, then stops it
// by PID and resets its data dir.
func startAgent(t *testing.T, s *Server, dir string, args []string) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	cmd := exec.Command(s.Bin, args...)
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", testutil.Tail(logs.String(), 60))
		}
		if out, err := exec.Command(s.Bin, "reset", "--data-dir", dir).CombinedOutput(); err != nil {
			t.Errorf("reset: %v %s", err, out)
		}
	})
}

// With the server down, the node's pods keep running; when it is back the
// status catches up with what happened meanwhile.
func TestNodeSurvivesServerOutage(t *testing.T) {
	testutil.RequireNodeTools(t)
	s := StartServer(t)
	signal := t.TempDir()
	dir, agentArgs := prepareAgent(t, s, "outage")
	startAgent(t, s, dir, agentArgs(serverToken(t, s)))
	Eventually(t, 60*time.Second, func() error {
		if r := s.KubectlRun("", "get", "node", "outage", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`); r.Stdout != "True" {
			return fmt.Errorf("node outage not Ready: %q %s", r.Stdout, r.Stderr)
		}
		return nil
	})
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: keeps-running}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "while [ ! -e /signal/go ]; do sleep 0.1; done; echo finished; exit 7"]
    volumeMounts: [{name: signal, mountPath: /signal}]
  volumes:
  - name: signal
    hostPath: {path: `+signal+`, type: Directory}
`, "create", "-f", "-")
	waitReady(t, s, "keeps-running")
	s.Stop()
	// The container still runs with the server gone: it is the one that
	// ends when told to.
	if err := os.WriteFile(filepath.Join(signal, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s.Start()
	waitPod(t, s, "keeps-running", "{.status.phase} {.status.containerStatuses[0].state.terminated.exitCode}", "Failed 7", 60*time.Second)
	if logs := s.MustKubectl("logs", "keeps-running"); logs != "finished\n" {
		t.Errorf("logs %q", logs)
	}
}
