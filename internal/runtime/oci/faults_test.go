package oci_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
)

// creatorEnv makes the test binary act as an agent that creates a pod and
// then waits to be killed (see TestCreatorKilled).
const creatorEnv = "PEAPOD_OCI_TEST_CREATOR"

func TestMain(m *testing.M) {
	if spec := os.Getenv(creatorEnv); spec != "" {
		if err := runCreator(spec); err != nil {
			fmt.Fprintln(os.Stderr, "creator:", err)
			os.Exit(1)
		}
		// Wait to be killed. (Not select{}: with no goroutine left, Go
		// would end the process as deadlocked.)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		<-sigs
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// creatorSpec is what the creator process is told to do.
type creatorSpec struct {
	Runtime, State, Parent, Rootfs, Vol, Out string
}

// creatorOut is what it reports back.
type creatorOut struct {
	Sandbox, Sleeper, Waiter string
}

func runCreator(spec string) error {
	var s creatorSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		return err
	}
	r, err := oci.New(oci.Config{StateDir: s.State, Runtime: s.Runtime})
	if err != nil {
		return err
	}
	ctx := context.Background()
	var out creatorOut
	if out.Sandbox, err = r.RunPodSandbox(ctx, runtime.SandboxConfig{Name: "crashy", CgroupParent: s.Parent}); err != nil {
		return err
	}
	rootfs := runtime.Rootfs{LowerDirs: []string{s.Rootfs}}
	if out.Sleeper, err = r.CreateContainer(ctx, out.Sandbox, runtime.ContainerConfig{Name: "sleeper", Rootfs: rootfs,
		Args: []string{"sh", "-c", "echo before; sleep 3600"}}); err != nil {
		return err
	}
	if out.Waiter, err = r.CreateContainer(ctx, out.Sandbox, runtime.ContainerConfig{Name: "waiter", Rootfs: rootfs,
		Mounts: []runtime.Mount{{Source: s.Vol, Destination: "/vol"}},
		Args:   []string{"sh", "-c", "while [ ! -e /vol/go ]; do sleep 0.05; done; exit 9"}}); err != nil {
		return err
	}
	for _, id := range []string{out.Sleeper, out.Waiter} {
		if err := r.StartContainer(ctx, id); err != nil {
			return err
		}
	}
	b, _ := json.Marshal(out)
	return os.WriteFile(s.Out, b, 0o644)
}

// TestCreatorKilled SIGKILLs the process that created a pod and checks
// that a new runtime in another process finds the pod running, sees a
// container's later exit with its real code, and tears it all down.
func TestCreatorKilled(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			requireTools(t, rt)
			f := runtimetest.NewFixture(t, opener(rt), runtimetest.BusyboxRootfs(t))
			vol := f.TempDir()
			outFile := filepath.Join(f.TempDir(), "out.json")
			spec, _ := json.Marshal(creatorSpec{Runtime: rt, State: f.State, Parent: f.Parent, Rootfs: f.Rootfs, Vol: vol, Out: outFile})
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), creatorEnv+"="+string(spec))
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(exited) }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			var out creatorOut
			err := runtimetest.WaitFor(f.Ctx(), time.Minute, func() (bool, error) {
				select {
				case <-exited:
					return false, fmt.Errorf("creator exited early: %v", waitErr)
				default:
				}
				b, err := os.ReadFile(outFile)
				return err == nil && json.Unmarshal(b, &out) == nil, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-exited

			rt2 := f.Open()
			ctx := f.Ctx()
			sb, err := rt2.SandboxStatus(ctx, out.Sandbox)
			if err != nil || sb.State != runtime.SandboxReady {
				t.Fatalf("sandbox after the creator was killed: %+v, %v", sb, err)
			}
			f.Track(sb.Pid)
			for _, id := range []string{out.Sleeper, out.Waiter} {
				st := f.Status(id)
				if st.State != runtime.ContainerRunning {
					t.Fatalf("container %s after the creator was killed: %+v", st.Name, st)
				}
				f.Track(st.Pid)
			}
			if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if st := f.WaitExited(out.Waiter); st.ExitCode != 9 {
				t.Errorf("exit code seen after the creator died = %d, want 9", st.ExitCode)
			}
			if lines := f.LogLines(f.Status(out.Sleeper).LogPath); len(lines) != 1 || lines[0] != "before" {
				t.Errorf("log of the surviving container = %q", lines)
			}
			if err := rt2.RemovePodSandbox(ctx, out.Sandbox); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestMonitorKilled kills a container's conmon, then the container: its
// exit code is lost and reported as such, and removal still cleans up.
func TestMonitorKilled(t *testing.T) {
	requireTools(t, "runc")
	f := runtimetest.NewFixture(t, opener("runc"), runtimetest.BusyboxRootfs(t))
	sb := f.Sandbox(runtime.SandboxConfig{Name: "orphaned"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "c", Args: []string{"sleep", "3600"}}, true)
	st := f.Status(id)
	conmon := readPid(t, filepath.Join(f.State, "containers", id, "conmon.pid"))
	if err := syscall.Kill(conmon, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, f, conmon)
	if now := f.Status(id); now.State != runtime.ContainerRunning || now.Pid != st.Pid {
		t.Fatalf("container without its monitor = %+v; want still running as %d", now, st.Pid)
	}
	if err := syscall.Kill(st.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = f.WaitExited(id)
	if st.ExitCode != 255 || st.Reason != runtime.ReasonUnknown {
		t.Errorf("container that exited without its monitor = %+v; want 255, %s", st, runtime.ReasonUnknown)
	}
	if err := f.RT.RemovePodSandbox(f.Ctx(), sb); err != nil {
		t.Fatal(err)
	}
	// Nothing of the pod is left in the state directory (the named
	// handlers' --root directories stay, empty).
	dirs := []string{"sandboxes", "containers", "exits", "attach"}
	for h := range handlers {
		dirs = append(dirs, filepath.Join("runtime", h))
	}
	for _, d := range dirs {
		ents, err := os.ReadDir(filepath.Join(f.State, d))
		if err != nil || len(ents) != 0 {
			t.Errorf("STATE/%s after removing everything: %v, %v", d, ents, err)
		}
	}
	ents, err := os.ReadDir(filepath.Join(f.State, "runtime"))
	if err != nil || len(ents) != len(handlers) {
		t.Errorf("STATE/runtime after removing everything: %v, %v; want only the handlers' roots", ents, err)
	}
}

// TestFailingRuntime injects failures of the OCI runtime's create and start
// and checks that the error reaches the caller and nothing is left behind.
func TestFailingRuntime(t *testing.T) {
	requireTools(t, "runc")
	runc, _ := exec.LookPath("runc")
	for _, step := range []string{"create", "start"} {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			script := filepath.Join(dir, "runc-failing-"+step)
			// Pass everything to runc except the one step.
			body := fmt.Sprintf("#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = %s ] && { echo injected %s failure >&2; exit 1; }; done\nexec %s \"$@\"\n", step, step, runc)
			if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
			f := runtimetest.NewFixture(t, opener(script), runtimetest.BusyboxRootfs(t))
			_, err := f.RT.RunPodSandbox(f.Ctx(), runtime.SandboxConfig{Name: "doomed", CgroupParent: f.Parent})
			if err == nil || !strings.Contains(err.Error(), "injected "+step+" failure") {
				t.Fatalf("RunPodSandbox with a runtime failing %s: %v", step, err)
			}
			if sbs, err := f.RT.ListPodSandboxes(f.Ctx()); err != nil || len(sbs) != 0 {
				t.Errorf("failed sandbox left a record: %v, %v", sbs, err)
			}
		})
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitGone waits until pid is gone or a zombie.
func waitGone(t *testing.T, f *runtimetest.Fixture, pid int) {
	t.Helper()
	err := runtimetest.WaitFor(f.Ctx(), 30*time.Second, func() (bool, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true, nil
		}
		i := strings.LastIndexByte(string(b), ')')
		return i > 0 && strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z"), nil
	})
	if err != nil {
		t.Fatalf("process %d did not exit: %v", pid, err)
	}
}
