package testutil

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RequireNodeTools fails (under CI=true) or skips the test unless everything
// a node agent runs is installed: root, an OCI runtime, conmon, catatonit,
// the CNI plugins, iptables and busybox-static.
func RequireNodeTools(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	for _, tool := range []string{"runc", "conmon", "catatonit", "iptables", "nsenter"} {
		_, err := exec.LookPath(tool)
		Require(t, err == nil, tool+" (make deps)")
	}
	for _, f := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback", "/usr/lib/cni/portmap", "/bin/busybox"} {
		_, err := os.Stat(f)
		Require(t, err == nil, f+" (make deps)")
	}
}

// StartNode starts `peapod server` with its node agent (a node of its own name,
// bridge and kubelet port; node IP 127.0.0.1) in a fresh data dir that holds the
// images of archive (an OCI archive or docker save tarball), and waits until the
// node is Ready. When the test ends the server is stopped and `peapod reset`
// removes everything it made.
func StartNode(t testing.TB, archive string, extraArgs ...string) *Server {
	t.Helper()
	RequireNodeTools(t)
	var b [4]byte
	_, _ = rand.Read(b[:])
	s := &Server{
		t:           t,
		Bin:         PeapodBin(t),
		DataDir:     t.TempDir(),
		Port:        FreePort(t),
		KubeletPort: FreePort(t),
		NodeName:    "node-" + hex.EncodeToString(b[:]),
		extraArgs:   extraArgs,
	}
	s.Kubeconfig = filepath.Join(s.DataDir, "admin.kubeconfig")
	WriteRegistries(t, filepath.Join(s.DataDir, "registries.yaml"), "http://127.0.0.1:1")
	if out, err := exec.Command(s.Bin, "image", "load", "--data-dir", s.DataDir, archive).CombinedOutput(); err != nil {
		t.Fatalf("load busybox: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", Tail(s.Logs(), 80))
		}
		if out, err := exec.Command(s.Bin, "reset", "--data-dir", s.DataDir).CombinedOutput(); err != nil {
			t.Errorf("peapod reset: %v\n%s", err, out)
		}
	})
	s.Start()
	s.WaitNodeReady(60 * time.Second)
	return s
}

// WaitNodeReady waits until the server's node reports Ready and has its pod
// CIDR.
func (s *Server) WaitNodeReady(timeout time.Duration) {
	s.t.Helper()
	c := s.Client()
	Eventually(s.t, timeout, func() error {
		n, err := c.CoreV1().Nodes().Get(context.Background(), s.NodeName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Spec.PodCIDR == "" {
			return fmt.Errorf("node %s has no pod CIDR yet", s.NodeName)
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == v1.NodeReady && cond.Status == v1.ConditionTrue {
				for _, taint := range n.Spec.Taints {
					if taint.Key == v1.TaintNodeNotReady {
						return fmt.Errorf("node %s still has the not-ready taint", s.NodeName)
					}
				}
				return nil
			}
		}
		return fmt.Errorf("node %s is not Ready", s.NodeName)
	})
}

// WriteRegistries writes a registries.yaml that sends every pull, whatever the
// registry, to endpoint (a registry on loopback; port 1 refuses) and never to
// the registry itself, so that no test ever reaches an outside host.
func WriteRegistries(t testing.TB, path, endpoint string) {
	t.Helper()
	cfg := fmt.Sprintf("mirrors:\n  \"*\":\n    endpoint: [%q]\ndisable-default-registry-endpoint: true\n", endpoint)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}
