package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestSmoke is the shortest path through the product: a fresh server answers the
// real kubectl with upstream's namespaces and version.
func TestSmoke(t *testing.T) {
	s := StartServer(t)
	out := s.MustKubectl("get", "namespaces", "-o", "name")
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		if !strings.Contains(out, "namespace/"+ns+"\n") {
			t.Errorf("namespace %s missing from:\n%s", ns, out)
		}
	}
	if v := s.MustKubectl("version"); !strings.Contains(v, "Server Version: v1.32.") {
		t.Errorf("server version is not 1.32:\n%s", v)
	}
}

// TestEmbeddedKubectl runs `peapod kubectl` (the real kubectl built in), which
// finds the admin kubeconfig from --data-dir when KUBECONFIG is unset.
func TestEmbeddedKubectl(t *testing.T) {
	s := StartServer(t)
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KUBECONFIG=") {
			env = append(env, kv)
		}
	}
	run := func(args ...string) (string, error) {
		cmd := exec.Command(s.Bin, append([]string{"kubectl", "--data-dir", s.DataDir}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("get", "ns", "kube-system", "-o", "jsonpath={.metadata.name}")
	if err != nil || out != "kube-system" {
		t.Fatalf("peapod kubectl get ns: %v\n%s", err, out)
	}
	out, err = run("get", "configmap", "does-not-exist")
	if err == nil || !strings.Contains(out, `configmaps "does-not-exist" not found`) {
		t.Fatalf("want kubectl's NotFound error and a non-zero exit, got %v\n%s", err, out)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit status = %v, want 1", err)
	}
}
