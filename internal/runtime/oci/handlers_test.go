package oci_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
)

// TestHandlerRuntimeAndRoot runs a pod with the handler "crun" on a runtime
// whose default is runc: its infra and containers are crun's, in crun's own
// --root. Reopened without that handler (and without the create wrappers),
// the runtime still drives the pod with crun, also for a new container.
func TestHandlerRuntimeAndRoot(t *testing.T) {
	requireTools(t, "runc")
	requireTools(t, "crun")
	hs := map[string]string{"crun": "crun"}
	open := func(t testing.TB, state string) runtime.Runtime {
		r, err := oci.New(oci.Config{StateDir: state, Runtime: "runc", Handlers: hs, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f := runtimetest.NewFixture(t, open, runtimetest.BusyboxRootfs(t))
	ctx := f.Ctx()
	if got := f.RT.(*oci.Runtime).Handlers(); !slices.Equal(got, []string{"", "crun"}) {
		t.Errorf("Handlers() = %q", got)
	}
	sb := f.Sandbox(runtime.SandboxConfig{Name: "classy", RuntimeHandler: "crun"})
	app := f.Container(sb, runtime.ContainerConfig{Name: "app", Args: []string{"sleep", "3600"}}, true)
	crunRoot := filepath.Join(f.State, "runtime", "crun")
	runcRoot := filepath.Join(f.State, "runtime")
	crunState := func(id string) string {
		t.Helper()
		out, err := exec.Command("crun", "--root", crunRoot, "state", id).Output()
		if err != nil {
			return "absent"
		}
		var st struct{ Status string }
		if err := json.Unmarshal(out, &st); err != nil {
			t.Fatal(err)
		}
		return st.Status
	}
	for _, id := range []string{sb, app} {
		if got := crunState(id); got != "running" {
			t.Errorf("crun --root %s state %s: %s, want running", crunRoot, id, got)
		}
		if out, err := exec.Command("runc", "--root", runcRoot, "state", id).CombinedOutput(); err == nil {
			t.Errorf("runc knows %s of a crun pod: %s", id, out)
		}
	}

	hs = nil
	if err := os.RemoveAll(filepath.Join(f.State, "bin")); err != nil {
		t.Fatal(err)
	}
	f.Open()
	later := f.Container(sb, runtime.ContainerConfig{Name: "later", Args: []string{"sleep", "3600"}}, true)
	if got := crunState(later); got != "running" {
		t.Errorf("a container created after the handler was unconfigured: crun state %s", got)
	}
	var out bytes.Buffer
	if code, err := f.RT.Exec(ctx, app, runtime.ExecOptions{Cmd: []string{"echo", "still"}, Stdout: &out}); err != nil || code != 0 || out.String() != "still\n" {
		t.Errorf("exec after the handler was unconfigured: %d, %v, %q", code, err, out.String())
	}
	_, err := f.RT.RunPodSandbox(ctx, runtime.SandboxConfig{Name: "gone", CgroupParent: f.Parent, RuntimeHandler: "crun"})
	if !errors.Is(err, runtime.ErrInvalid) || !strings.Contains(err.Error(), `no runtime for "crun" is configured`) {
		t.Errorf("a new pod with an unconfigured handler: %v", err)
	}
	if err := f.RT.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sb, app, later} {
		if got := crunState(id); got != "absent" {
			t.Errorf("crun still has %s (%s) after the pod was removed", id, got)
		}
	}
}

// TestHandlerConfig checks New's refusals of bad handlers.
func TestHandlerConfig(t *testing.T) {
	requireTools(t, "runc")
	for name, hs := range map[string]map[string]string{
		"upper case":         {"Crun": "crun"},
		"underscore":         {"my_crun": "crun"},
		"container ID":       {strings.Repeat("ab", 16): "crun"},
		"missing binary":     {"ghost": "/no/such/runtime"},
		"not an OCI runtime": {"truth": "true"},
	} {
		_, err := oci.New(oci.Config{StateDir: t.TempDir(), Handlers: hs})
		if err == nil {
			t.Errorf("%s: New accepted handlers %v", name, hs)
		}
	}
	_, err := oci.New(oci.Config{StateDir: t.TempDir(), Handlers: map[string]string{"Bad": "runc"}})
	if !errors.Is(err, runtime.ErrInvalid) {
		t.Errorf("bad handler name: %v, want ErrInvalid", err)
	}
}
