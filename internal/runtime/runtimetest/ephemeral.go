package runtimetest

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// testTargetPIDNamespace: a container created with TargetContainerID (an
// ephemeral debug container) joins the PID namespace of that container's
// main process, in a pod that does not share one.
func testTargetPIDNamespace(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "debug-me"})
	target := f.Container(sb, runtime.ContainerConfig{Name: "app", Args: []string{"sleep", "3600"}}, true)
	tst := f.WaitContainer(target, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	targetNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", tst.Pid))
	if err != nil {
		t.Fatal(err)
	}
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "debugger", TargetContainerID: target,
		Args: Sh(`readlink /proc/self/ns/pid; cat /proc/1/comm; ps -o pid,comm | awk '$2 == "sleep" {print "ps " $1 " " $2}'`)})
	if want := []string{targetNS, "sleep", "ps 1 sleep"}; st.ExitCode != 0 || !slices.Equal(lines, want) {
		t.Errorf("a container targeting %s saw %q (exit %d), want %q", target, lines, st.ExitCode, want)
	}
	// Without a target, a container of this pod has a PID namespace of its own.
	_, lines = f.Run(sb, runtime.ContainerConfig{Name: "plain", Args: Sh(`readlink /proc/self/ns/pid`)})
	if len(lines) != 1 || lines[0] == targetNS {
		t.Errorf("a container without a target is in %q, want its own PID namespace (not %s)", lines, targetNS)
	}

	// A running debugger is stopped (every process of it) and the target
	// keeps running.
	dbg := f.Container(sb, runtime.ContainerConfig{Name: "shell", TargetContainerID: target,
		Args: Sh(`sleep 3600 & echo ready; wait`)}, true)
	f.waitLog(dbg, "ready")
	var out bytes.Buffer
	if code, err := f.RT.Exec(ctx, dbg, runtime.ExecOptions{Cmd: Sh(`kill -0 1 && cat /proc/1/comm`), Stdout: &out}); err != nil || code != 0 ||
		strings.TrimSpace(out.String()) != "sleep" {
		t.Errorf("exec in the debugger: code %d, %v, %q; want the target's sleep as PID 1", code, err, out.String())
	}
	if err := f.RT.StopContainer(ctx, dbg, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(dbg); st.State != runtime.ContainerExited {
		t.Errorf("the stopped debugger is %s", st.State)
	}
	if st := f.Status(target); st.State != runtime.ContainerRunning || st.Pid != tst.Pid {
		t.Errorf("the target after the debugger stopped: %+v", st)
	}

	// Targets that do not run, or not in this pod.
	rootfs := runtime.Rootfs{LowerDirs: []string{f.Rootfs}}
	create := func(what, targetID string, want error) {
		t.Helper()
		_, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "dbg-" + what, Args: Sh("true"),
			Rootfs: rootfs, TargetContainerID: targetID})
		isErr(t, "a debugger targeting a container that is "+what, err, want)
	}
	created := f.Container(sb, runtime.ContainerConfig{Name: "created", Args: []string{"sleep", "3600"}}, false)
	create("created", created, runtime.ErrFailedPrecondition)
	exited, _ := f.Run(sb, runtime.ContainerConfig{Name: "exited", Args: []string{"true"}})
	create("exited", exited.ID, runtime.ErrFailedPrecondition)
	create("unknown", strings.Repeat("cd", 16), runtime.ErrFailedPrecondition)
	other := f.Sandbox(runtime.SandboxConfig{Name: "other-pod"})
	elsewhere := f.Container(other, runtime.ContainerConfig{Name: "app", Args: []string{"sleep", "3600"}}, true)
	create("elsewhere", elsewhere, runtime.ErrInvalid)
	if err := f.RT.StopContainer(ctx, target, time.Second, 0); err != nil {
		t.Fatal(err)
	}
	create("stopped", target, runtime.ErrFailedPrecondition)
}
