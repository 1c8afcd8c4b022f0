package e2e

import (
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
