package runtimetest

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
)

func testSandboxLifecycle(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	id := f.Sandbox(runtime.SandboxConfig{Name: "lifecycle", Labels: map[string]string{"app": "x"}})
	st, err := f.RT.SandboxStatus(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != runtime.SandboxReady || st.Pid <= 0 || st.Name != "lifecycle" || st.Namespace != "default" ||
		st.Hostname != "lifecycle" || st.Labels["app"] != "x" || st.CreatedAt.IsZero() || st.CgroupParent != f.Parent {
		t.Fatalf("status of a new sandbox = %+v", st)
	}
	// The runtime's start returns once it told the process to run; the
	// exec of catatonit may come a moment later.
	var comm []byte
	err = WaitFor(ctx, waitTimeout, func() (bool, error) {
		comm, err = os.ReadFile(filepath.Join("/proc", strconv.Itoa(st.Pid), "comm"))
		return err == nil && strings.TrimSpace(string(comm)) == "catatonit", nil
	})
	if err != nil {
		t.Errorf("infra process %d is %q (%v), want catatonit", st.Pid, comm, err)
	}
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	podNet, err := os.Readlink(st.NetNSPath)
	if err != nil || podNet == hostNet {
		t.Errorf("pod network namespace %s = %q (%v); must be its own (host %q)", st.NetNSPath, podNet, err, hostNet)
	}
	list, err := f.RT.ListPodSandboxes(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Fatalf("ListPodSandboxes = %v, %v", list, err)
	}
	if err := f.RT.StopPodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	if st, err = f.RT.SandboxStatus(ctx, id); err != nil || st.State != runtime.SandboxNotReady || st.Pid != 0 {
		t.Fatalf("status of a stopped sandbox = %+v, %v", st, err)
	}
	if err := f.RT.StopPodSandbox(ctx, id); err != nil {
		t.Errorf("stopping a stopped sandbox: %v", err)
	}
	if err := f.RT.RemovePodSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.RT.SandboxStatus(ctx, id)
	isErr(t, "status of a removed sandbox", err, runtime.ErrNotFound)
	if err := f.RT.RemovePodSandbox(ctx, id); err != nil {
		t.Errorf("removing a removed sandbox: %v", err)
	}
}

func testContainerLifecycle(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "lifecycle"})
	before := time.Now()
	id := f.Container(sb, runtime.ContainerConfig{
		Name: "exit3", Args: Sh("exit 3"), Labels: map[string]string{"k": "v"},
	}, false)
	st := f.Status(id)
	if st.State != runtime.ContainerCreated || st.SandboxID != sb || st.Name != "exit3" || st.Pid != 0 ||
		st.CreatedAt.Before(before.Add(-time.Second)) || !st.StartedAt.IsZero() || st.LogPath == "" || st.CgroupPath == "" {
		t.Fatalf("status of a created container = %+v", st)
	}
	_, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "exit3", Args: Sh("true"), Rootfs: runtime.Rootfs{LowerDirs: []string{f.Rootfs}}})
	isErr(t, "a second container with the same name and attempt", err, runtime.ErrAlreadyExists)
	if err := f.RT.StartContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	st = f.WaitExited(id)
	if st.ExitCode != 3 || st.Reason != runtime.ReasonError || st.StartedAt.IsZero() ||
		st.FinishedAt.Before(st.StartedAt) || st.Pid != 0 {
		t.Errorf("status after `exit 3` = %+v", st)
	}
	isErr(t, "starting an exited container", f.RT.StartContainer(ctx, id), runtime.ErrFailedPrecondition)
	if err := f.RT.StopContainer(ctx, id, time.Second, 0); err != nil {
		t.Errorf("stopping an exited container: %v", err)
	}

	ok, _ := f.Run(sb, runtime.ContainerConfig{Name: "ok", Args: []string{"true"}})
	if ok.ExitCode != 0 || ok.Reason != runtime.ReasonCompleted {
		t.Errorf("status after `true` = %+v", ok)
	}
	// A created container that is stopped is killed without running.
	never := f.Container(sb, runtime.ContainerConfig{Name: "never", Args: Sh("echo ran")}, false)
	if err := f.RT.StopContainer(ctx, never, 10*time.Second, 0); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(never); st.State != runtime.ContainerExited || st.ExitCode != 137 || !st.StartedAt.IsZero() {
		t.Errorf("status of a stopped created container = %+v", st)
	}
	if lines := f.LogLines(f.Status(never).LogPath); len(lines) != 0 {
		t.Errorf("a container that never started logged %q", lines)
	}

	all, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{SandboxID: sb})
	if err != nil || len(all) != 3 || all[0].ID != id || all[1].ID != ok.ID || all[2].ID != never {
		t.Fatalf("ListContainers(sandbox) = %v, %v; want exit3, ok, never in creation order", names(all), err)
	}
	labelled, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{Labels: map[string]string{"k": "v"}, State: runtime.ContainerExited})
	if err != nil || len(labelled) != 1 || labelled[0].ID != id {
		t.Errorf("ListContainers(label, exited) = %v, %v", names(labelled), err)
	}
	running, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{State: runtime.ContainerRunning})
	if err != nil || len(running) != 0 {
		t.Errorf("ListContainers(running) = %v, %v", names(running), err)
	}

	logPath := st.LogPath
	if err := f.RT.RemoveContainer(ctx, id); err != nil {
		t.Fatal(err)
	}
	_, err = f.RT.ContainerStatus(ctx, id)
	isErr(t, "status of a removed container", err, runtime.ErrNotFound)
	if err := f.RT.RemoveContainer(ctx, id); err != nil {
		t.Errorf("removing a removed container: %v", err)
	}
	if left := f.Cgroups.Existing(st.CgroupPath); len(left) > 0 {
		t.Errorf("cgroups of a removed container left: %v", left)
	}
	if _, err := os.Stat(logPath); err == nil && strings.HasPrefix(logPath, f.State) {
		t.Errorf("the runtime-chosen log %s outlived its container", logPath)
	}
}

func names(cs []*runtime.ContainerStatus) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return out
}

func testErrors(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	unknown := strings.Repeat("ab", 16)
	_, err := f.RT.SandboxStatus(ctx, unknown)
	isErr(t, "SandboxStatus(unknown)", err, runtime.ErrNotFound)
	isErr(t, "StopPodSandbox(unknown)", f.RT.StopPodSandbox(ctx, unknown), runtime.ErrNotFound)
	_, err = f.RT.ContainerStatus(ctx, "../../etc")
	isErr(t, "ContainerStatus(bad id)", err, runtime.ErrNotFound)
	isErr(t, "StartContainer(unknown)", f.RT.StartContainer(ctx, unknown), runtime.ErrNotFound)
	_, err = f.RT.CreateContainer(ctx, unknown, runtime.ContainerConfig{Name: "c", Args: Sh("true"), Rootfs: runtime.Rootfs{Dir: f.Rootfs}})
	isErr(t, "CreateContainer(unknown sandbox)", err, runtime.ErrNotFound)
	_, err = f.RT.RunPodSandbox(ctx, runtime.SandboxConfig{Name: "outside", CgroupParent: "/peapod-not-under-us-" + randHex(4)})
	isErr(t, "RunPodSandbox(cgroup parent outside the runtime's cgroup)", err, runtime.ErrInvalid)

	sb := f.Sandbox(runtime.SandboxConfig{Name: "errors"})
	_, err = f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "noargs", Rootfs: runtime.Rootfs{Dir: f.Rootfs}})
	isErr(t, "CreateContainer(no command)", err, runtime.ErrInvalid)
	_, err = f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "noroot", Args: Sh("true")})
	isErr(t, "CreateContainer(no root)", err, runtime.ErrInvalid)
	_, err = f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "relmount", Args: Sh("true"),
		Rootfs: runtime.Rootfs{Dir: f.Rootfs}, Mounts: []runtime.Mount{{Source: f.Rootfs, Destination: "relative"}}})
	isErr(t, "CreateContainer(relative mount)", err, runtime.ErrInvalid)
	_, err = f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "priv", Args: Sh("true"),
		Rootfs: runtime.Rootfs{Dir: f.Rootfs}, Security: runtime.SecurityContext{Privileged: true}})
	isErr(t, "CreateContainer(privileged in an unprivileged sandbox)", err, runtime.ErrInvalid)
	// A command that does not exist fails at creation (runc) leaving
	// nothing, or at start (crun checks later) and then exits non-zero.
	missing, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "missing", Args: []string{"/no/such/binary"},
		Rootfs: runtime.Rootfs{LowerDirs: []string{f.Rootfs}}})
	if err == nil {
		if err := f.RT.StartContainer(ctx, missing); err == nil {
			if st := f.WaitExited(missing); st.ExitCode == 0 {
				t.Errorf("a container whose command does not exist exited 0")
			}
		}
		if err := f.RT.RemoveContainer(ctx, missing); err != nil {
			t.Fatal(err)
		}
	}
	if cs, _ := f.RT.ListContainers(ctx, runtime.ContainerFilter{}); len(cs) != 0 {
		t.Errorf("failed creations left containers: %v", names(cs))
	}
	if err := f.RT.StopPodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	_, err = f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "late", Args: Sh("true"), Rootfs: runtime.Rootfs{Dir: f.Rootfs}})
	isErr(t, "CreateContainer(stopped sandbox)", err, runtime.ErrFailedPrecondition)
}

func testStopTimeout(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "stop"})
	// busybox httpd ignores SIGTERM as PID 1: only the SIGKILL after the
	// timeout stops it.
	stubborn := f.Container(sb, runtime.ContainerConfig{Name: "httpd", Args: []string{"httpd", "-f", "-p", "8083"}}, true)
	// Running means the runtime's start returned; the container's process
	// may still be the runtime's init (runc's is a Go program, which exits 2
	// on SIGTERM) for a moment before it executes httpd. Wait for httpd.
	f.WaitContainer(stubborn, "running httpd", func(s *runtime.ContainerStatus) bool {
		if s.State != runtime.ContainerRunning || s.Pid == 0 {
			return false
		}
		comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(s.Pid), "comm"))
		return err == nil && strings.TrimSpace(string(comm)) == "httpd"
	})
	const grace = 1500 * time.Millisecond
	start := time.Now()
	if err := f.RT.StopContainer(ctx, stubborn, grace, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	st := f.Status(stubborn)
	if st.State != runtime.ContainerExited || st.ExitCode != 137 || st.Reason != runtime.ReasonError {
		t.Errorf("status after the kill = %+v; want exited, 137, Error", st)
	}
	if took < grace || took > grace+15*time.Second {
		t.Errorf("stop took %s; want the %s grace period, then a prompt kill", took, grace)
	}

	// A process that handles SIGTERM exits within the grace period.
	polite := f.Container(sb, runtime.ContainerConfig{Name: "polite",
		Args: Sh(`trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done`)}, true)
	f.waitLog(polite, "ready")
	start = time.Now()
	if err := f.RT.StopContainer(ctx, polite, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("a container that exits on SIGTERM took %s to stop", took)
	}
	if st := f.Status(polite); st.ExitCode != 0 || st.Reason != runtime.ReasonCompleted {
		t.Errorf("status after SIGTERM = %+v; want exit 0", st)
	}
	if lines := f.LogLines(f.Status(polite).LogPath); !slices.Contains(lines, "got TERM") {
		t.Errorf("log %q lacks the trap's output", lines)
	}

	// Another signal is delivered as asked.
	usr := f.Container(sb, runtime.ContainerConfig{Name: "usr1",
		Args: Sh(`trap "exit 42" USR1; echo ready; while :; do sleep 0.05; done`)}, true)
	f.waitLog(usr, "ready")
	if err := f.RT.StopContainer(ctx, usr, time.Minute, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(usr); st.ExitCode != 42 {
		t.Errorf("exit code after SIGUSR1 = %d, want 42", st.ExitCode)
	}
}

// waitLog waits for a line in a container's log.
func (f *Fixture) waitLog(id, line string) {
	f.T.Helper()
	path := f.Status(id).LogPath
	err := WaitFor(f.ctx, waitTimeout, func() (bool, error) {
		es, _ := ParseCRILog(path)
		for _, e := range es {
			if e.Content == line {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		es, _ := ParseCRILog(path)
		var last []string
		for _, e := range es[max(0, len(es)-5):] {
			last = append(last, e.Stream+" "+strconv.Quote(e.Content))
		}
		f.T.Fatalf("waiting for %q in the log of %s: %v (last lines: %v)", line, id, err, last)
	}
}

func testLogs(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "logs"})
	logPath := filepath.Join(f.TempDir(), "pods", "logs_default", "talker", "0.log")
	start := time.Now().Add(-time.Second)
	st, _ := f.Run(sb, runtime.ContainerConfig{Name: "talker", LogPath: logPath,
		Args: Sh(`echo out1; echo err1 >&2; echo "  spaced  out  "; printf partial`)})
	if st.LogPath != logPath {
		t.Errorf("LogPath = %q, want the caller's %q", st.LogPath, logPath)
	}
	es, err := ParseCRILog(logPath)
	if err != nil {
		t.Fatal(err)
	}
	type line struct {
		stream, content string
		partial         bool
	}
	var got []line
	for _, e := range es {
		if e.Time.Before(start) || e.Time.After(time.Now().Add(time.Second)) {
			t.Errorf("log timestamp %s is not the time of writing", e.Time)
		}
		got = append(got, line{e.Stream, e.Content, e.Partial})
	}
	want := []line{{"stdout", "out1", false}, {"stderr", "err1", false}, {"stdout", "  spaced  out  ", false}, {"stdout", "partial", true}}
	// stdout and stderr are separate pipes: only the order within a stream
	// is certain.
	for _, stream := range []string{"stdout", "stderr"} {
		var g, w []line
		for _, l := range got {
			if l.stream == stream {
				g = append(g, l)
			}
		}
		for _, l := range want {
			if l.stream == stream {
				w = append(w, l)
			}
		}
		if !slices.Equal(g, w) {
			t.Errorf("%s lines = %+v, want %+v", stream, g, w)
		}
	}
}

func testRemoveSandboxWithContainers(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "teardown", SharePID: true})
	a := f.Container(sb, runtime.ContainerConfig{Name: "a", Args: []string{"sleep", "3600"}}, true)
	b := f.Container(sb, runtime.ContainerConfig{Name: "b", Args: Sh("sleep 3600 & sleep 3600")}, true)
	c := f.Container(sb, runtime.ContainerConfig{Name: "c", Args: []string{"sleep", "3600"}}, false)
	var cgs []string
	for _, id := range []string{a, b, c} {
		cgs = append(cgs, f.Status(id).CgroupPath)
	}
	if err := f.RT.RemovePodSandbox(ctx, sb); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a, b, c} {
		_, err := f.RT.ContainerStatus(ctx, id)
		isErr(t, "status of a container of a removed sandbox", err, runtime.ErrNotFound)
	}
	for _, cg := range cgs {
		if left := f.Cgroups.Existing(cg); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	}
}

func testRestartSurvival(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	vol := f.TempDir()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "survivor"})
	done := f.Container(sb, runtime.ContainerConfig{Name: "done", Args: Sh("exit 5")}, true)
	f.WaitExited(done)
	waiter := f.Container(sb, runtime.ContainerConfig{Name: "waiter",
		Mounts: []runtime.Mount{{Source: vol, Destination: "/vol"}},
		Args:   Sh(`echo waiting; while [ ! -e /vol/go ]; do sleep 0.05; done; echo going; exit 7`)}, true)
	f.waitLog(waiter, "waiting")
	before := f.Status(waiter)
	sbBefore, err := f.RT.SandboxStatus(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}

	// Drop the first instance and open a second on the same state.
	rt := f.Open()
	sbs, err := rt.ListPodSandboxes(ctx)
	if err != nil || len(sbs) != 1 || sbs[0].ID != sb || sbs[0].State != runtime.SandboxReady || sbs[0].Pid != sbBefore.Pid {
		t.Fatalf("after reopening, sandboxes = %+v, %v; want %s ready with pid %d", sbs, err, sb, sbBefore.Pid)
	}
	st, err := rt.ContainerStatus(ctx, waiter)
	if err != nil || st.State != runtime.ContainerRunning || st.Pid != before.Pid || !st.StartedAt.Equal(before.StartedAt) {
		t.Fatalf("after reopening, the running container = %+v, %v; want running with pid %d", st, err, before.Pid)
	}
	if st, err := rt.ContainerStatus(ctx, done); err != nil || st.State != runtime.ContainerExited || st.ExitCode != 5 {
		t.Fatalf("after reopening, the exited container = %+v, %v; want exit code 5", st, err)
	}
	if err := os.WriteFile(filepath.Join(vol, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	st = f.WaitExited(waiter)
	if st.ExitCode != 7 || st.Reason != runtime.ReasonError || st.FinishedAt.Before(st.StartedAt) {
		t.Errorf("exit seen by the new instance = %+v; want code 7", st)
	}
	if lines := f.LogLines(st.LogPath); !slices.Equal(lines, []string{"waiting", "going"}) {
		t.Errorf("log across the restart = %q", lines)
	}
	// And a third instance still agrees.
	f.Open()
	if st := f.Status(waiter); st.ExitCode != 7 {
		t.Errorf("third instance: exit code %d, want 7", st.ExitCode)
	}
}
