// Package runtimetest is the conformance suite for runtime.Runtime
// implementations, in the manner of containerd's content testsuite: an
// implementation's test calls Run with a way to open its runtime on a state
// directory, and the suite drives real sandboxes and containers (built from
// the host's static busybox) through the interface.
//
// Every test checks at teardown that the runtime left nothing behind: no
// mount below the state directory, no process that names the state
// directory on its command line (monitors), none of the container and infra
// processes it saw, and no cgroup below the test's cgroup parent (which the
// suite creates under this process's own cgroup and removes). Teardown
// removes every sandbox first, also after a failure.
//
// The suite needs root and /bin/busybox (Debian's busybox-static). When
// they are missing it skips, except under CI=true, where it fails.
package runtimetest

import (
	"github.com/peapod-dev/peapod/internal/testutil"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// waitTimeout bounds every wait for a condition in the suite.
const waitTimeout = 30 * time.Second

// Opener opens an implementation on stateDir. The suite calls it again with
// the same directory to check that a new instance takes over (the previous
// one is dropped, not closed); the implementation registers any cleanup it
// needs with t.Cleanup.
type Opener func(t testing.TB, stateDir string) runtime.Runtime

// Options tell the suite what the implementation under test was opened
// with.
type Options struct {
	// Handlers are runtime handler names (RuntimeClass handlers) the Opener
	// configures besides the default; the suite runs a pod with each and
	// reopens the runtime under it.
	Handlers []string
}

// Run runs the suite with the default runtime handler only.
func Run(t *testing.T, open Opener) { RunWith(t, open, Options{}) }

// RunWith runs the suite.
func RunWith(t *testing.T, open Opener, opts Options) {
	Require(t, os.Geteuid() == 0, "the runtime suite needs root")
	rootfs := BusyboxRootfs(t)
	tests := []struct {
		name string
		fn   func(t *testing.T, f *Fixture)
	}{
		{"SandboxLifecycle", testSandboxLifecycle},
		{"ContainerLifecycle", testContainerLifecycle},
		{"Errors", testErrors},
		{"SharedNetwork", testSharedNetwork},
		{"SharedUTSAndIPC", testSharedUTSAndIPC},
		{"SharedPIDAndZombieReaping", testSharedPID},
		{"HostNamespaces", testHostNamespaces},
		{"StopTimeoutThenKill", testStopTimeout},
		{"Logs", testLogs},
		{"OOMKilled", testOOMKilled},
		{"CgroupLimits", testCgroupLimits},
		{"SecurityDefaults", testSecurityDefaults},
		{"UserEnvRlimitsReadOnlyRoot", testUserEnvRlimits},
		{"Privileged", testPrivileged},
		{"Seccomp", testSeccomp},
		{"SeccompErrors", testSeccompErrors},
		{"UnmaskedProc", testUnmaskedProc},
		{"TargetPIDNamespace", testTargetPIDNamespace},
		{"RuntimeHandlers", func(t *testing.T, f *Fixture) { testRuntimeHandlers(t, f, opts.Handlers) }},
		{"Exec", testExec},
		{"ExecTTYResize", testExecTTYResize},
		{"AttachOutput", testAttachOutput},
		{"AttachStdin", testAttachStdin},
		{"AttachStdinOnce", testAttachStdinOnce},
		{"AttachTTY", testAttachTTY},
		{"ReopenContainerLog", testReopenLog},
		{"RestartSurvival", testRestartSurvival},
		{"RemoveSandboxWithRunningContainers", testRemoveSandboxWithContainers},
		{"ConcurrentPods", testConcurrentPods},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, NewFixture(t, open, rootfs))
		})
	}
}

// Require skips the test unless ok, or fails it under CI=true, where a
// missing prerequisite must not go unnoticed.
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	testutil.Require(t, ok, what)
}

// Fixture is one test's runtime, state directory and cgroup parent.
type Fixture struct {
	T  testing.TB
	RT runtime.Runtime
	// Open reopens the runtime on the same state (and replaces RT).
	Open     func() runtime.Runtime
	State    string
	Rootfs   string
	Cgroups  *cgroups.Host
	Parent   string
	pids     []int
	ctx      context.Context
	tempDirs []string
}

// NewFixture opens a runtime on a fresh state directory with a fresh cgroup
// parent and registers the teardown checks.
func NewFixture(t testing.TB, open Opener, rootfs string) *Fixture {
	t.Helper()
	state, err := os.MkdirTemp("", "pp-rt-")
	if err != nil {
		t.Fatal(err)
	}
	cg, err := cgroups.LoadHost()
	if err != nil {
		t.Fatal(err)
	}
	base, err := cg.Base()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	f := &Fixture{T: t, State: state, Rootfs: rootfs, Cgroups: cg, Parent: base + "/peapod-rt-" + randHex(6), ctx: ctx}
	f.Open = func() runtime.Runtime { f.RT = open(t, state); return f.RT }
	t.Cleanup(func() {
		defer cancel()
		f.teardown()
	})
	if err := cg.Create(f.Parent); err != nil {
		t.Fatal(err)
	}
	f.Open()
	return f
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Ctx is the test's context.
func (f *Fixture) Ctx() context.Context { return f.ctx }

// teardown removes every sandbox and checks that nothing is left.
func (f *Fixture) teardown() {
	t := f.T
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if sbs, err := f.RT.ListPodSandboxes(ctx); err != nil {
		t.Errorf("teardown: ListPodSandboxes: %v", err)
	} else {
		for _, sb := range sbs {
			if err := f.RT.RemovePodSandbox(ctx, sb.ID); err != nil {
				t.Errorf("teardown: RemovePodSandbox(%s): %v", sb.ID, err)
			}
		}
	}
	if cs, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{}); err != nil || len(cs) != 0 {
		t.Errorf("teardown: containers left after removing every sandbox: %d, %v", len(cs), err)
		for _, c := range cs {
			_ = f.RT.RemoveContainer(ctx, c.ID)
		}
	}
	if m := mountsUnder(f.State); len(m) > 0 {
		t.Errorf("teardown: mounts left under the state directory: %v", m)
	}
	if p := processesNaming(f.State); len(p) > 0 {
		t.Errorf("teardown: processes left that name the state directory: %v", p)
	}
	for _, pid := range f.pids {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); !isZombie(st) {
				t.Errorf("teardown: container process %d still exists: %s", pid, st)
			}
		}
	}
	if err := f.Cgroups.Remove(f.Parent); err != nil {
		t.Errorf("teardown: removing the test's cgroup parent (something left in it?): %v", err)
	}
	if left := f.Cgroups.Existing(f.Parent); len(left) > 0 {
		t.Errorf("teardown: cgroups left: %v", left)
	}
	if len(mountsUnder(f.State)) == 0 {
		_ = os.RemoveAll(f.State)
	}
	for _, d := range f.tempDirs {
		_ = os.RemoveAll(d)
	}
}

// isZombie reports whether a /proc/PID/stat shows a zombie (about to be
// reaped by the host's init, which is not the runtime's to wait for).
func isZombie(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')')
	return i > 0 && strings.HasPrefix(strings.TrimSpace(string(stat[i+1:])), "Z")
}

// Track records a PID that must be gone at teardown.
func (f *Fixture) Track(pid int) {
	if pid > 0 && !slices.Contains(f.pids, pid) {
		f.pids = append(f.pids, pid)
	}
}

// TempDir is a host directory removed at teardown, after the runtime.
func (f *Fixture) TempDir() string {
	d, err := os.MkdirTemp("", "pp-rt-data-")
	if err != nil {
		f.T.Fatal(err)
	}
	f.tempDirs = append(f.tempDirs, d)
	return d
}

// Sandbox runs a sandbox under the test's cgroup parent.
func (f *Fixture) Sandbox(cfg runtime.SandboxConfig) string {
	f.T.Helper()
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = f.Parent
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.UID == "" {
		cfg.UID = randHex(8)
	}
	id, err := f.RT.RunPodSandbox(f.ctx, cfg)
	if err != nil {
		f.T.Fatalf("RunPodSandbox(%s): %v", cfg.Name, err)
	}
	st, err := f.RT.SandboxStatus(f.ctx, id)
	if err != nil {
		f.T.Fatalf("SandboxStatus(%s): %v", id, err)
	}
	f.Track(st.Pid)
	return id
}

// Container creates (and, with start, starts) a container with the busybox
// root as an overlay lower dir unless cfg has a root.
func (f *Fixture) Container(sandboxID string, cfg runtime.ContainerConfig, start bool) string {
	f.T.Helper()
	if cfg.Rootfs.Dir == "" && len(cfg.Rootfs.LowerDirs) == 0 {
		cfg.Rootfs.LowerDirs = []string{f.Rootfs}
	}
	id, err := f.RT.CreateContainer(f.ctx, sandboxID, cfg)
	if err != nil {
		f.T.Fatalf("CreateContainer(%s): %v", cfg.Name, err)
	}
	if start {
		if err := f.RT.StartContainer(f.ctx, id); err != nil {
			f.T.Fatalf("StartContainer(%s): %v", cfg.Name, err)
		}
		if st, err := f.RT.ContainerStatus(f.ctx, id); err == nil {
			f.Track(st.Pid)
		}
	}
	return id
}

// Status fetches a container's status.
func (f *Fixture) Status(id string) *runtime.ContainerStatus {
	f.T.Helper()
	st, err := f.RT.ContainerStatus(f.ctx, id)
	if err != nil {
		f.T.Fatalf("ContainerStatus(%s): %v", id, err)
	}
	return st
}

// WaitContainer polls a container's status until cond holds.
func (f *Fixture) WaitContainer(id, what string, cond func(*runtime.ContainerStatus) bool) *runtime.ContainerStatus {
	f.T.Helper()
	var last *runtime.ContainerStatus
	err := WaitFor(f.ctx, waitTimeout, func() (bool, error) {
		st, err := f.RT.ContainerStatus(f.ctx, id)
		if err != nil {
			return false, err
		}
		last = st
		return cond(st), nil
	})
	if err != nil {
		f.T.Fatalf("waiting for container %s to be %s: %v (last status %+v)", id, what, err, last)
	}
	return last
}

// WaitExited waits for a container to exit.
func (f *Fixture) WaitExited(id string) *runtime.ContainerStatus {
	f.T.Helper()
	return f.WaitContainer(id, "exited", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerExited })
}

// Run creates, starts and waits for a container, and returns its status and
// its log's lines (without the CRI prefix).
func (f *Fixture) Run(sandboxID string, cfg runtime.ContainerConfig) (*runtime.ContainerStatus, []string) {
	f.T.Helper()
	id := f.Container(sandboxID, cfg, true)
	st := f.WaitExited(id)
	return st, f.LogLines(st.LogPath)
}

// WaitFor polls cond with growing pauses until it holds, fails, or timeout
// passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	pause := 5 * time.Millisecond
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %s", timeout)
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// Sh is a busybox shell command line.
func Sh(script string) []string { return []string{"/bin/sh", "-c", script} }

// mountsUnder lists the mount points at or below dir.
func mountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	return out
}

// processesNaming lists the processes whose command line contains s.
func processesNaming(s string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(cmd), s) {
			continue
		}
		out = append(out, fmt.Sprintf("%d: %s", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return out
}

// isErr checks an error's class.
func isErr(t testing.TB, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}
