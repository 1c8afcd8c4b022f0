package internal_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/peapod-dev/peapod/"

// allowed lists, for each package of ours, the packages of ours it may import.
// The direction is one way: cli -> server (the composition root) -> components;
// components never import each other except through the store seam.
var allowed = map[string][]string{
	"cmd/peapod":                   {"internal/cli"},
	"internal/cli":                 {"internal/server", "internal/agent", "internal/bench", "internal/image"},
	"internal/server":              {"internal/agent", "internal/apiserver", "internal/certs", "internal/controllers", "internal/join", "internal/scheduler", "internal/storage", "internal/storage/bolt", "internal/storage/etcdclient", "internal/storage/etcdserver"},
	"internal/agent":               {"internal/certs", "internal/containerlogs", "internal/image", "internal/join", "internal/kubelet", "internal/kubeletapi", "internal/network", "internal/runtime", "internal/runtime/cgroups", "internal/runtime/oci", "internal/volume"},
	"internal/join":                {"internal/certs"},
	"internal/kubelet":             {"internal/image", "internal/kubeletapi", "internal/network", "internal/prober", "internal/runtime"},
	"internal/prober":              {},
	"internal/kubeletapi":          {"internal/runtime"},
	"internal/network":             {},
	"internal/volume":              {"internal/runtime"},
	"internal/containerlogs":       {"internal/runtime"},
	"internal/apiserver":           {"internal/apiserver/listcache", "internal/apiserver/openapi", "internal/certs"},
	"internal/apiserver/listcache": {},
	"internal/apiserver/openapi":   {},
	"internal/certs":               {},
	"internal/controllers":         {},
	"internal/scheduler":           {},
	"internal/bench":               {},
	"internal/storage":             {},
	"internal/storage/bolt":        {"internal/storage"},
	"internal/storage/etcdserver":  {"internal/storage"},
	"internal/storage/etcdclient":  {"internal/storage"},
	"internal/storage/etcdtest":    {"internal/storage"},
	"internal/storage/storagetest": {"internal/storage"},
	"internal/image":               {},
	"internal/image/busybox":       {"internal/image"},
	"internal/image/mkbusybox":     {"internal/image/busybox"},
	"internal/runtime":             {},
	"internal/runtime/cgroups":     {},
	"internal/runtime/oci":         {"internal/runtime", "internal/runtime/cgroups"},
	"internal/runtime/runtimetest": {"internal/runtime", "internal/runtime/cgroups", "internal/testutil"},
	"internal/testutil":            {},
	"test/e2e":                     {"internal/image", "internal/image/busybox", "internal/testutil"},
}

// allowedInTests are extra imports a package's tests may make (a backend's tests
// run the contract suite; the etcd API's tests serve a real backend).
var allowedInTests = map[string][]string{
	"internal/storage/bolt":       {"internal/storage/storagetest"},
	"internal/storage/etcdserver": {"internal/storage/bolt", "internal/storage/etcdtest", "internal/storage/storagetest"},
	"internal/storage/etcdclient": {"internal/storage/bolt", "internal/storage/etcdserver", "internal/storage/etcdtest", "internal/storage/storagetest"},
	"internal/image":              {"internal/image/busybox"},
	"internal/runtime/oci":        {"internal/runtime/runtimetest"},
	"internal/containerlogs":      {"internal/runtime/oci", "internal/runtime/runtimetest", "internal/runtime/cgroups"},
}

// TestDependencyDirection checks mechanically that imports between our packages
// follow docs/ARCHITECTURE.md.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}|{{join .Imports ","}}|{{join .TestImports ","}},{{join .XTestImports ","}}`, "../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.SplitN(line, "|", 3)
		pkg := strings.TrimPrefix(parts[0], module)
		if pkg == "internal" {
			continue
		}
		rules, known := allowed[pkg]
		if !known {
			t.Errorf("package %s is not in the dependency rules: add it here and to docs/ARCHITECTURE.md", pkg)
			continue
		}
		check := func(imports string, rules []string) {
			for _, imp := range strings.Split(imports, ",") {
				if !strings.HasPrefix(imp, module) {
					continue
				}
				dep := strings.TrimPrefix(imp, module)
				ok := dep == pkg
				for _, a := range rules {
					ok = ok || a == dep
				}
				if !ok {
					t.Errorf("%s imports %s, which docs/ARCHITECTURE.md does not allow", pkg, dep)
				}
			}
		}
		check(parts[1], rules)
		// Every package's tests may use the shared test helpers.
		check(parts[2], append(append([]string{"internal/testutil"}, rules...), allowedInTests[pkg]...))
	}
}
