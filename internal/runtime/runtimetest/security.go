package runtimetest

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// seccompProbe prints the process's seccomp mode and whether
// unshare(CLONE_NEWUSER) works: it needs no capability (a root container
// may always make a user namespace), but moby's and containerd's default
// profiles allow unshare only with CAP_SYS_ADMIN and refuse it with EPERM.
const seccompProbe = `grep '^Seccomp:' /proc/self/status; ` +
	`if out=$(unshare -U true 2>&1); then echo unshare-ok; else echo "unshare-refused $out"; fi`

func testSeccomp(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "seccomp"})
	check := func(name string, sec runtime.SecurityContext, mode, unshare string) {
		t.Helper()
		st, lines := f.Run(sb, runtime.ContainerConfig{Name: name, Args: Sh(seccompProbe), Security: sec})
		if st.ExitCode != 0 || len(lines) != 2 {
			t.Fatalf("%s: probe exited %d: %q", name, st.ExitCode, lines)
		}
		if got := statusField(lines, "Seccomp"); got != mode {
			t.Errorf("%s: Seccomp mode %q, want %q", name, got, mode)
		}
		if !strings.HasPrefix(lines[1], unshare) {
			t.Errorf("%s: unshare -U: %q, want %s", name, lines[1], unshare)
		}
	}
	const refused = "unshare-refused unshare: unshare(0x10000000): Operation not permitted"
	check("unconfined-by-default", runtime.SecurityContext{}, "0", "unshare-ok")
	check("unconfined", runtime.SecurityContext{Seccomp: runtime.SeccompProfile{Type: runtime.SeccompUnconfined}}, "0", "unshare-ok")
	defaultProfile := runtime.SeccompProfile{Type: runtime.SeccompRuntimeDefault}
	check("runtime-default", runtime.SecurityContext{Seccomp: defaultProfile}, "2", refused)
	// The profile's rules depend on the container's capabilities.
	check("runtime-default-sys-admin", runtime.SecurityContext{Seccomp: defaultProfile, CapAdd: []string{"SYS_ADMIN"}}, "2", "unshare-ok")

	// Exec'd processes get the container's filter too.
	id := f.Container(sb, runtime.ContainerConfig{Name: "default-exec", Args: []string{"sleep", "3600"},
		Security: runtime.SecurityContext{Seccomp: defaultProfile}}, true)
	f.WaitContainer(id, "running", func(s *runtime.ContainerStatus) bool { return s.State == runtime.ContainerRunning })
	var out bytes.Buffer
	code, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(seccompProbe), Stdout: &out, Stderr: &out})
	if lines := strings.Split(strings.TrimSpace(out.String()), "\n"); err != nil || code != 0 || len(lines) != 2 ||
		statusField(lines, "Seccomp") != "2" || !strings.HasPrefix(lines[1], refused) {
		t.Errorf("exec under RuntimeDefault: code %d, %v: %q", code, err, out.String())
	}

	// A Localhost profile: everything allowed but mkdir, refused with
	// EOPNOTSUPP (so that the refusal is recognisably this profile's).
	profile := filepath.Join(f.TempDir(), "no-mkdir.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "localhost", Args: Sh(seccompProbe + `; mkdir /tmp/d 2>&1; echo "mkdir $?"`),
		Security: runtime.SecurityContext{Seccomp: runtime.SeccompProfile{Type: runtime.SeccompLocalhost, LocalhostProfile: profile}}})
	want := []string{"Seccomp:\t2", "unshare-ok", "mkdir: can't create directory '/tmp/d': Operation not supported", "mkdir 1"}
	if st.ExitCode != 0 || !slices.Equal(lines, want) {
		t.Errorf("Localhost profile refusing mkdir with EOPNOTSUPP:\n got %q\nwant %q", lines, want)
	}

	// Privileged containers run without seccomp whatever they ask.
	priv := f.Sandbox(runtime.SandboxConfig{Name: "seccomp-priv", Privileged: true})
	st, lines = f.Run(priv, runtime.ContainerConfig{Name: "privileged", Args: Sh(seccompProbe),
		Security: runtime.SecurityContext{Privileged: true, Seccomp: defaultProfile}})
	if st.ExitCode != 0 || !slices.Equal(lines, []string{"Seccomp:\t0", "unshare-ok"}) {
		t.Errorf("privileged container with RuntimeDefault: exit %d, %q; want no filter", st.ExitCode, lines)
	}
}

func testSeccompErrors(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "seccomp-errors"})
	dir := f.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"defaultAction": `), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]runtime.SeccompProfile{
		"relative":  {Type: runtime.SeccompLocalhost, LocalhostProfile: "profiles/audit.json"},
		"missing":   {Type: runtime.SeccompLocalhost, LocalhostProfile: filepath.Join(dir, "missing.json")},
		"malformed": {Type: runtime.SeccompLocalhost, LocalhostProfile: bad},
		"type":      {Type: "Strict"},
	} {
		_, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: name, Args: Sh("true"),
			Rootfs: runtime.Rootfs{LowerDirs: []string{f.Rootfs}}, Security: runtime.SecurityContext{Seccomp: p}})
		isErr(t, "seccomp profile "+name, err, runtime.ErrInvalid)
	}
	if cs, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{}); err != nil || len(cs) != 0 {
		t.Errorf("refused seccomp profiles left containers: %v, %v", names(cs), err)
	}
}

// testUnmaskedProc: procMount Unmasked leaves /proc (and /sys) without the
// masked and read-only paths a default container has.
func testUnmaskedProc(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "procmount"})
	probe := Sh(`awk '$2 ~ /^\/proc\// || $2 ~ /^\/sys\// {print "mount " $2}' /proc/self/mounts; echo done`)
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "default", Args: probe})
	if st.ExitCode != 0 || !slices.Contains(lines, "mount /proc/sys") || !slices.Contains(lines, "mount /proc/keys") {
		t.Fatalf("a default container's masks and read-only paths under /proc: exit %d, %q", st.ExitCode, lines)
	}
	st, lines = f.Run(sb, runtime.ContainerConfig{Name: "unmasked", Args: probe,
		Security: runtime.SecurityContext{UnmaskedProc: true}})
	if st.ExitCode != 0 || slices.ContainsFunc(lines, func(l string) bool {
		return strings.HasPrefix(l, "mount /proc/") || strings.HasPrefix(l, "mount /sys/firmware")
	}) {
		t.Errorf("an Unmasked container still has masked or read-only paths: exit %d, %q", st.ExitCode, lines)
	}
}
