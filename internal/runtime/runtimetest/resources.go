package runtimetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

func testOOMKilled(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "oom"})
	// dd fills a 64 MiB buffer: twice the limit.
	st, _ := f.Run(sb, runtime.ContainerConfig{Name: "hog",
		Args:      []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"},
		Resources: runtime.Resources{MemoryLimit: 32 << 20}})
	if st.ExitCode != 137 || st.Reason != runtime.ReasonOOMKilled {
		t.Errorf("container over its memory limit: exit %d, reason %q; want 137, OOMKilled", st.ExitCode, st.Reason)
	}
	// The verdict is kept (the cgroup's counters are gone after removal of
	// other containers, a new instance, ...).
	f.Open()
	if st := f.Status(st.ID); st.Reason != runtime.ReasonOOMKilled {
		t.Errorf("reason after reopening = %q", st.Reason)
	}
	// A SIGKILL that is not the OOM killer's is not an OOM kill.
	killed := f.Container(sb, runtime.ContainerConfig{Name: "killed", Args: []string{"sleep", "3600"},
		Resources: runtime.Resources{MemoryLimit: 32 << 20}}, true)
	if err := f.RT.StopContainer(f.Ctx(), killed, 0, 0); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(killed); st.ExitCode != 137 || st.Reason != runtime.ReasonError {
		t.Errorf("killed container: exit %d, reason %q; want 137, Error", st.ExitCode, st.Reason)
	}
}

func testCgroupLimits(t *testing.T, f *Fixture) {
	res := runtime.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, PidsLimit: 100}
	sb := f.Sandbox(runtime.SandboxConfig{Name: "limits"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "limited", Args: []string{"sleep", "3600"}, Resources: res}, true)
	st := f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	if !strings.HasPrefix(st.CgroupPath, f.Parent+"/") {
		t.Errorf("cgroup %s is not under the sandbox's parent %s", st.CgroupPath, f.Parent)
	}
	files := f.Cgroups.Files(cgroups.Resources{CPUShares: res.CPUShares, CPUQuota: res.CPUQuota,
		CPUPeriod: res.CPUPeriod, MemoryLimit: res.MemoryLimit, PidsLimit: res.PidsLimit})
	if len(files) != 5 {
		t.Fatalf("expected files %v", files)
	}
	for _, file := range files {
		p, ok := f.Cgroups.FilePath(file, st.CgroupPath)
		if !ok {
			t.Errorf("no hierarchy for %s", file.Name)
			continue
		}
		b, err := os.ReadFile(p)
		if got := strings.TrimSpace(string(b)); err != nil || got != file.Value {
			t.Errorf("%s = %q (%v), want %q", p, got, err, file.Value)
		}
	}
	// The process is in that cgroup in every hierarchy (so nested under
	// this process's own cgroups).
	procCg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	own, err := cgroups.ParseProcCgroup(bytes.NewReader(procCg))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range f.Cgroups.Layout.Hierarchies {
		key := ""
		if !h.V2 {
			key = h.Controllers[0]
		}
		if p, ok := own[key]; ok && p != st.CgroupPath && (key != "" || f.Cgroups.Layout.Mode == cgroups.ModeUnified) {
			t.Errorf("container process is in %s:%s, want %s", key, p, st.CgroupPath)
		}
	}
}

// capMask is the bit set of the named capabilities.
func capMask(names ...string) uint64 {
	all := []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
		"SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK",
		"IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT",
		"SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
		"SETFCAP"}
	var m uint64
	for _, n := range names {
		if i := slices.Index(all, n); i >= 0 {
			m |= 1 << i
		}
	}
	return m
}

// statusField reads "Key:\tvalue" from /proc/self/status output lines.
func statusField(lines []string, key string) string {
	for _, l := range lines {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func testSecurityDefaults(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "secure"})
	// containerd's masked paths that this kernel has must read as empty.
	var masked []string
	for _, p := range []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"} {
		if _, err := os.Stat(p); err == nil {
			masked = append(masked, p)
		}
	}
	script := `cat /proc/self/status; for p in ` + strings.Join(masked, " ") + `; do ` +
		`if [ -d $p ]; then echo "masked $p $(ls -A $p | wc -l)"; else echo "masked $p $(wc -c < $p)"; fi; done; ` +
		`grep -E ' /proc/(sys|bus) | /sys ' /proc/self/mounts | awk '{print "mount " $2 " " substr($4,1,2)}'`
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "defaults", Args: Sh(script)})
	want := capMask("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
		"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE")
	if st.ExitCode != 0 {
		t.Fatalf("probe exited %d: %q", st.ExitCode, lines)
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if got := statusField(lines, set); got != fmt.Sprintf("%016x", want) {
			t.Errorf("%s = %s, want %016x (containerd's default set)", set, got, want)
		}
	}
	if got := statusField(lines, "NoNewPrivs"); got != "0" {
		t.Errorf("NoNewPrivs = %q by default, want 0", got)
	}
	for _, p := range masked {
		if !slices.Contains(lines, "masked "+p+" 0") {
			t.Errorf("%s is not masked: %q", p, lines)
		}
	}
	for _, m := range []string{"mount /proc/sys ro", "mount /proc/bus ro", "mount /sys ro"} {
		if !slices.Contains(lines, m) {
			t.Errorf("want %q among %q", m, lines)
		}
	}
	// allowPrivilegeEscalation: false, and capabilities changed.
	st, lines = f.Run(sb, runtime.ContainerConfig{Name: "nnp", Args: Sh("cat /proc/self/status"),
		Security: runtime.SecurityContext{NoNewPrivileges: true, CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"CAP_MKNOD", "kill"}}})
	if got := statusField(lines, "NoNewPrivs"); st.ExitCode != 0 || got != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", got)
	}
	want = want&^capMask("MKNOD", "KILL") | capMask("NET_ADMIN")
	if got := statusField(lines, "CapEff"); got != fmt.Sprintf("%016x", want) {
		t.Errorf("CapEff with add/drop = %s, want %016x", got, want)
	}
	_, lines = f.Run(sb, runtime.ContainerConfig{Name: "dropall", Args: Sh("cat /proc/self/status"),
		Security: runtime.SecurityContext{CapDrop: []string{"ALL"}, CapAdd: []string{"CHOWN"}}})
	if got := statusField(lines, "CapEff"); got != fmt.Sprintf("%016x", capMask("CHOWN")) {
		t.Errorf("CapEff with drop ALL, add CHOWN = %s", got)
	}
}

func testUserEnvRlimits(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "user"})
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	ownAdj, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	adj, _ := strconv.Atoi(strings.TrimSpace(string(ownAdj)))
	higher := min(adj+100, 1000)
	script := `id -u; id -g; id -G; pwd; echo "$FOO"; ulimit -Sn; ulimit -Hn; cat /proc/self/oom_score_adj; ` +
		`touch /rootfs-write 2>/dev/null && echo writable || echo read-only; echo "$PATH"`
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "user", Args: Sh(script),
		Rootfs:     runtime.Rootfs{Dir: f.Rootfs, ReadOnly: true},
		Env:        []string{"FOO=bar baz"},
		WorkingDir: "/tmp",
		Security:   runtime.SecurityContext{UID: 1000, GID: 1001, AdditionalGIDs: []uint32{2000, 3000}},
		Rlimits:    []runtime.Rlimit{{Type: "RLIMIT_NOFILE", Soft: 1000, Hard: nofile.Max + 100000}},
		Resources:  runtime.Resources{OOMScoreAdj: &higher},
	})
	want := []string{"1000", "1001", "1001 2000 3000", "/tmp", "bar baz", "1000", strconv.FormatUint(nofile.Max, 10),
		strconv.Itoa(higher), "read-only", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	if st.ExitCode != 0 || !slices.Equal(lines, want) {
		t.Errorf("user, env, cwd, rlimits, oom_score_adj, read-only root:\n got %q\nwant %q", lines, want)
	}
	// An oom_score_adj below the runtime's own must not make the container
	// fail (it is raised when the runtime cannot lower it).
	low := -999
	st, lines = f.Run(sb, runtime.ContainerConfig{Name: "lowadj", Args: Sh("cat /proc/self/oom_score_adj"),
		Resources: runtime.Resources{OOMScoreAdj: &low}})
	if st.ExitCode != 0 || len(lines) != 1 {
		t.Fatalf("container asking for oom_score_adj -999: exit %d, %q", st.ExitCode, lines)
	}
	if got, _ := strconv.Atoi(lines[0]); got != low && got != adj {
		t.Errorf("oom_score_adj = %d, want -999 or the runtime's own %d", got, adj)
	}
}

func testPrivileged(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "priv", Privileged: true})
	// A privileged container gets every capability the runtime holds.
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	all := statusField(strings.Split(string(self), "\n"), "CapPrm")
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "priv", Security: runtime.SecurityContext{Privileged: true},
		Args: Sh(`grep CapEff /proc/self/status; grep -q ' /proc/kcore ' /proc/self/mounts && echo kcore-masked; ` +
			`grep -E ' /sys ' /proc/self/mounts | awk '{print "mount " $2 " " substr($4,1,2)}'; test -c /dev/kmsg && echo kmsg`)})
	if st.ExitCode != 0 {
		t.Fatalf("privileged probe exited %d: %q", st.ExitCode, lines)
	}
	if got := statusField(lines, "CapEff"); got != all {
		t.Errorf("privileged CapEff = %s, want the runtime's own %s", got, all)
	}
	if slices.Contains(lines, "kcore-masked") || !slices.Contains(lines, "mount /sys rw") || !slices.Contains(lines, "kmsg") {
		t.Errorf("privileged container: masked paths, read-only /sys or no host devices: %q", lines)
	}
}

func testExec(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "exec"})
	id := f.Container(sb, runtime.ContainerConfig{Name: "target", Args: []string{"sleep", "3600"},
		Env: []string{"IN_CONTAINER=yes"}, WorkingDir: "/tmp"}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })

	var out, errOut bytes.Buffer
	code, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(`echo "$IN_CONTAINER $EXTRA $(pwd)"; echo oops >&2; exit 4`),
		Env: []string{"EXTRA=added"}, Stdout: &out, Stderr: &errOut})
	if err != nil || code != 4 || out.String() != "yes added /tmp\n" || errOut.String() != "oops\n" {
		t.Errorf("exec = %d, %v, stdout %q, stderr %q", code, err, out.String(), errOut.String())
	}
	out.Reset()
	code, err = f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"tr", "a-z", "A-Z"},
		Stdin: strings.NewReader("from stdin\n"), Stdout: &out})
	if err != nil || code != 0 || out.String() != "FROM STDIN\n" {
		t.Errorf("exec with stdin = %d, %v, %q", code, err, out.String())
	}
	out.Reset()
	code, err = f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(`test -t 0 && test -t 1 && tty; stty size`), TTY: true, Stdout: &out})
	if err != nil || code != 0 || !strings.Contains(out.String(), "/dev/pts/") {
		t.Errorf("exec with a tty = %d, %v, %q", code, err, out.String())
	}
	out.Reset()
	code, err = f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"sh"}, TTY: true,
		Stdin: strings.NewReader("echo typed-$((6*7))\nexit 3\n"), Stdout: &out})
	if err != nil || code != 3 || !strings.Contains(out.String(), "typed-42") {
		t.Errorf("interactive exec with a tty = %d, %v, %q", code, err, out.String())
	}
	// Cancelling the context kills the command.
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	code, _ = f.RT.Exec(cctx, id, runtime.ExecOptions{Cmd: []string{"sleep", "600"}})
	if took := time.Since(start); took > 15*time.Second || code == 0 {
		t.Errorf("cancelled exec returned %d after %s", code, took)
	}
	// No exec process is left in the container.
	out.Reset()
	if _, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(`cat /proc/[0-9]*/comm | sort | tr '\n' ' '`), Stdout: &out}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "sleep"); n != 1 {
		t.Errorf("processes after the cancelled exec: %q", out.String())
	}
	_, err = f.RT.Exec(ctx, id, runtime.ExecOptions{})
	isErr(t, "exec without a command", err, runtime.ErrInvalid)
	if err := f.RT.StopContainer(ctx, id, 0, 0); err != nil {
		t.Fatal(err)
	}
	_, err = f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: []string{"true"}})
	isErr(t, "exec in an exited container", err, runtime.ErrFailedPrecondition)
}
