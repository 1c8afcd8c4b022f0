package runtimetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// testSharedNetwork is the seed's two-container pod: one serves on
// localhost:8082, the other fetches from it.
func testSharedNetwork(t *testing.T, f *Fixture) {
	www := f.TempDir()
	const page = "hello from the other container"
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(page+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// /etc/hosts is the caller's, as the agent will write it.
	hosts := filepath.Join(f.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	etcHosts := runtime.Mount{Source: hosts, Destination: "/etc/hosts", ReadOnly: true}
	sb := f.Sandbox(runtime.SandboxConfig{Name: "auto-pod"})
	f.Container(sb, runtime.ContainerConfig{Name: "web", Args: []string{"httpd", "-f", "-p", "8082", "-h", "/www"},
		Mounts: []runtime.Mount{{Source: www, Destination: "/www", ReadOnly: true}, etcHosts}}, true)
	// The client retries until httpd listens (the wait has a deadline).
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "client", Mounts: []runtime.Mount{etcHosts}, Args: Sh(
		`for i in $(seq 1 300); do wget -qO- http://localhost:8082/ 2>/dev/null && exit 0; sleep 0.05; done; exit 1`)})
	if st.ExitCode != 0 || !slices.Contains(lines, page) {
		t.Fatalf("client exited %d with log %q; want the page from localhost:8082", st.ExitCode, lines)
	}
	// Only loopback exists in the pod's new network namespace.
	st, lines = f.Run(sb, runtime.ContainerConfig{Name: "links", Args: Sh(`ls /sys/class/net; cat /sys/class/net/lo/operstate`)})
	if st.ExitCode != 0 || len(lines) != 2 || lines[0] != "lo" {
		t.Errorf("network interfaces in the pod = %q (exit %d); want only lo", lines, st.ExitCode)
	}
}

func testSharedUTSAndIPC(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "pea", Hostname: "pod-host-name"})
	ss, err := f.RT.SandboxStatus(ctx, sb)
	if err != nil {
		t.Fatal(err)
	}
	probe := `hostname; echo $HOSTNAME; readlink /proc/self/ns/uts; readlink /proc/self/ns/ipc; readlink /proc/self/ns/net; `
	st1, a := f.Run(sb, runtime.ContainerConfig{Name: "writer", Args: Sh(probe + `echo shared > /dev/shm/marker`)})
	st2, b := f.Run(sb, runtime.ContainerConfig{Name: "reader", Args: Sh(probe + `cat /dev/shm/marker`)})
	if st1.ExitCode != 0 || st2.ExitCode != 0 || len(a) != 5 || len(b) != 6 {
		t.Fatalf("probes exited %d and %d with %q and %q", st1.ExitCode, st2.ExitCode, a, b)
	}
	if a[0] != "pod-host-name" || a[1] != "pod-host-name" {
		t.Errorf("hostname and $HOSTNAME = %q, %q; want the pod's", a[0], a[1])
	}
	if !slices.Equal(a[:5], b[:5]) {
		t.Errorf("containers of one pod see different hostnames or namespaces: %q vs %q", a, b)
	}
	for i, ns := range []string{"uts", "ipc", "net"} {
		infra, _ := os.Readlink(filepath.Join("/proc", fmt.Sprint(ss.Pid), "ns", ns))
		host, _ := os.Readlink("/proc/self/ns/" + ns)
		if a[2+i] != infra || a[2+i] == host {
			t.Errorf("%s namespace = %s; want the infra's %s, not the host's %s", ns, a[2+i], infra, host)
		}
	}
	if b[5] != "shared" {
		t.Errorf("/dev/shm is not shared: the reader saw %q", b[5])
	}
}

// testSharedPID: with SharePID the infra is PID 1 of the pod, containers
// see each other, and an orphan's zombie is reaped by the infra.
func testSharedPID(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "pids", SharePID: true})
	id := f.Container(sb, runtime.ContainerConfig{Name: "parent",
		Args: Sh(`sh -c 'sleep 300 & echo orphan $!'; echo ready; exec sleep 3600`)}, true)
	f.waitLog(id, "ready")
	var orphan string
	for _, l := range f.LogLines(f.Status(id).LogPath) {
		if v, ok := strings.CutPrefix(l, "orphan "); ok {
			orphan = v
		}
	}
	if orphan == "" {
		t.Fatal("the container did not report its orphan's PID")
	}
	run := func(cmd string) string {
		t.Helper()
		var out bytes.Buffer
		code, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(cmd), Stdout: &out, Stderr: &out})
		if err != nil || code != 0 {
			t.Fatalf("exec %q: code %d, %v: %s", cmd, code, err, out.String())
		}
		return strings.TrimSpace(out.String())
	}
	if got := run(`tr '\0' ' ' < /proc/1/cmdline`); got != "/catatonit -P" {
		t.Errorf("PID 1 of the pod runs %q, want the infra's catatonit", got)
	}
	if got := run(`grep PPid /proc/` + orphan + `/status`); got != "PPid:\t1" {
		t.Errorf("the orphan's parent: %q, want PID 1", got)
	}
	// A second container sees the first one's processes.
	_, lines := f.Run(sb, runtime.ContainerConfig{Name: "peer", Args: Sh(`cat /proc/` + orphan + `/comm`)})
	if !slices.Equal(lines, []string{"sleep"}) {
		t.Errorf("a peer container sees %q as the orphan, want sleep", lines)
	}
	run("kill " + orphan)
	err := WaitFor(ctx, waitTimeout, func() (bool, error) {
		var out bytes.Buffer
		_, err := f.RT.Exec(ctx, id, runtime.ExecOptions{Cmd: Sh(`cat /proc/` + orphan + `/stat 2>/dev/null || echo reaped`), Stdout: &out})
		return strings.TrimSpace(out.String()) == "reaped", err
	})
	if err != nil {
		t.Fatalf("the killed orphan was not reaped by PID 1: %v", err)
	}
}

func testHostNamespaces(t *testing.T, f *Fixture) {
	sb := f.Sandbox(runtime.SandboxConfig{Name: "hostns", HostNetwork: true, HostIPC: true, HostPID: true})
	ss, err := f.RT.SandboxStatus(f.Ctx(), sb)
	if err != nil || ss.NetNSPath != "" || ss.Hostname != "" || ss.State != runtime.SandboxReady {
		t.Fatalf("status of a host-namespace sandbox = %+v, %v", ss, err)
	}
	st, lines := f.Run(sb, runtime.ContainerConfig{Name: "probe",
		Args: Sh(`hostname; for n in net ipc pid uts; do readlink /proc/self/ns/$n; done`)})
	host, _ := os.Hostname()
	want := []string{host}
	for _, n := range []string{"net", "ipc", "pid", "uts"} {
		l, _ := os.Readlink("/proc/self/ns/" + n)
		want = append(want, l)
	}
	if st.ExitCode != 0 || !slices.Equal(lines, want) {
		t.Errorf("host-namespace container saw %q (exit %d), want %q", lines, st.ExitCode, want)
	}
}
