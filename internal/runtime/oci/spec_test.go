package oci

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// testHost is a runtime process without CAP_SYS_RESOURCE (as on the
// project's machines): open files hard limit 20000, oom_score_adj 0.
var testHost = hostFacts{
	capLast: 40, ownCaps: allCapabilities(40), oomScoreAdj: 0,
	hardLimits: map[string]uint64{"RLIMIT_NOFILE": 20000, "RLIMIT_NPROC": 30000},
}

func baseInput() specInput {
	return specInput{
		RootPath: "/state/c/rootfs", Args: []string{"/bin/sh", "-c", "true"}, Hostname: "pod",
		CgroupsPath: "/own/pod/c", ShmSource: "/state/s/shm", Host: testHost,
		Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}},
	}
}

func mountAt(s *specs.Spec, dest string) *specs.Mount {
	for i := range s.Mounts {
		if s.Mounts[i].Destination == dest {
			return &s.Mounts[i]
		}
	}
	return nil
}

func TestSpecDefaults(t *testing.T) {
	in := baseInput()
	in.Env = []string{"A=1"}
	in.Mounts = []runtime.Mount{{Source: "/data/vol", Destination: "/vol/", ReadOnly: true}, {Source: "/data/hosts", Destination: "/etc/hosts"}}
	in.Resources = runtime.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, PidsLimit: 50}
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if s.Version != "1.0.2" || s.Root.Path != in.RootPath || s.Root.Readonly || s.Hostname != "" {
		t.Errorf("version/root/hostname = %q %+v %q", s.Version, s.Root, s.Hostname)
	}
	p := s.Process
	if !slices.Equal(p.Env, []string{defaultPath, "A=1", "HOSTNAME=pod"}) || p.Cwd != "/" || p.NoNewPrivileges || p.Terminal {
		t.Errorf("process = %+v", p)
	}
	if !slices.Equal(p.Capabilities.Effective, DefaultCapabilities) || !slices.Equal(p.Capabilities.Bounding, DefaultCapabilities) ||
		len(p.Capabilities.Inheritable) != 0 || len(p.Capabilities.Ambient) != 0 {
		t.Errorf("capabilities = %+v", p.Capabilities)
	}
	if len(DefaultCapabilities) != 14 {
		t.Errorf("containerd's default set has 14 capabilities, not %d", len(DefaultCapabilities))
	}
	if !slices.Equal(s.Linux.MaskedPaths, DefaultMaskedPaths) || !slices.Equal(s.Linux.ReadonlyPaths, DefaultReadonlyPaths) {
		t.Errorf("masked %v, readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	var dests []string
	for _, m := range s.Mounts {
		dests = append(dests, m.Destination)
	}
	want := []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm", "/vol", "/etc/hosts"}
	if !slices.Equal(dests, want) {
		t.Errorf("mounts = %v, want %v", dests, want)
	}
	if m := mountAt(s, "/sys"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/sys options %v", m.Options)
	}
	if m := mountAt(s, "/dev/shm"); m.Source != "/state/s/shm" || m.Type != "bind" {
		t.Errorf("/dev/shm = %+v, want the sandbox's", m)
	}
	if m := mountAt(s, "/vol"); m.Source != "/data/vol" || !slices.Equal(m.Options, []string{"rbind", "rprivate", "ro"}) {
		t.Errorf("volume = %+v", m)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Shares != 512 || *r.CPU.Quota != 50000 || *r.CPU.Period != 100000 || r.Pids.Limit != 50 {
		t.Errorf("resources = %+v %+v %+v", r.Memory, r.CPU, r.Pids)
	}
	if r.Devices[0].Allow || r.Devices[0].Access != "rwm" || len(r.Devices) != 13 {
		t.Errorf("device rules = %+v; want deny all, then the defaults", r.Devices)
	}
	if s.Linux.CgroupsPath != "/own/pod/c" || len(s.Linux.Devices) != 0 || s.Linux.RootfsPropagation != "" {
		t.Errorf("linux = %+v", s.Linux)
	}
}

func TestSpecOverrides(t *testing.T) {
	in := baseInput()
	in.Mounts = []runtime.Mount{{Source: "/host/shm", Destination: "/dev/shm"}, {Source: "/src", Destination: "/dst", Propagation: "rslave"}}
	in.Env = []string{"PATH=/mine", "HOSTNAME=custom"}
	in.Cwd = "/work"
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if m := mountAt(s, "/dev/shm"); m.Source != "/host/shm" {
		t.Errorf("a caller's /dev/shm must replace the default: %+v", m)
	}
	if s.Linux.RootfsPropagation != "rslave" {
		t.Errorf("rootfs propagation = %q for an rslave mount", s.Linux.RootfsPropagation)
	}
	if !slices.Equal(s.Process.Env, []string{"PATH=/mine", "HOSTNAME=custom"}) || s.Process.Cwd != "/work" {
		t.Errorf("env %v cwd %q", s.Process.Env, s.Process.Cwd)
	}
	for _, bad := range []specInput{
		func() specInput { i := baseInput(); i.Args = nil; return i }(),
		func() specInput { i := baseInput(); i.Cwd = "rel"; return i }(),
		func() specInput {
			i := baseInput()
			i.Mounts = []runtime.Mount{{Source: "rel", Destination: "/x"}}
			return i
		}(),
		func() specInput {
			i := baseInput()
			i.Mounts = []runtime.Mount{{Source: "/x", Destination: "/x", Propagation: "odd"}}
			return i
		}(),
		func() specInput { i := baseInput(); i.Rlimits = []runtime.Rlimit{{Type: "RLIMIT_BOGUS"}}; return i }(),
		func() specInput {
			i := baseInput()
			i.Rlimits = []runtime.Rlimit{{Type: "NOFILE", Soft: 2, Hard: 1}}
			return i
		}(),
		func() specInput { i := baseInput(); i.Security.CapAdd = []string{"CAP_FLY"}; return i }(),
	} {
		if _, err := buildSpec(bad); !errors.Is(err, runtime.ErrInvalid) {
			t.Errorf("buildSpec(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSpecLimitsOfTheHost(t *testing.T) {
	in := baseInput()
	low, high := -999, 500
	in.Rlimits = []runtime.Rlimit{{Type: "nofile", Soft: 1 << 20, Hard: 1 << 20}, {Type: "RLIMIT_NPROC", Soft: 100, Hard: 40000}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
	in.Resources.OOMScoreAdj = &low
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 20000, Hard: 20000}, {Type: "RLIMIT_NPROC", Soft: 100, Hard: 30000}, {Type: "RLIMIT_CORE"}}
	if !slices.Equal(s.Process.Rlimits, want) {
		t.Errorf("rlimits = %+v, want them capped at the runtime's hard limits %+v", s.Process.Rlimits, want)
	}
	if *s.Process.OOMScoreAdj != 0 {
		t.Errorf("oom_score_adj = %d, want it raised to the runtime's own 0", *s.Process.OOMScoreAdj)
	}
	in.Resources.OOMScoreAdj = &high
	if s, _ = buildSpec(in); *s.Process.OOMScoreAdj != 500 {
		t.Errorf("oom_score_adj = %d, want 500", *s.Process.OOMScoreAdj)
	}
	// With CAP_SYS_RESOURCE nothing is capped.
	in.Host.sysResource = true
	in.Resources.OOMScoreAdj = &low
	if s, _ = buildSpec(in); *s.Process.OOMScoreAdj != -999 || s.Process.Rlimits[0].Hard != 1<<20 {
		t.Errorf("with CAP_SYS_RESOURCE: oom %d, rlimits %+v", *s.Process.OOMScoreAdj, s.Process.Rlimits)
	}
}

func TestSpecPrivilegedAndInfra(t *testing.T) {
	in := baseInput()
	in.Security.Privileged = true
	in.Host.ownCaps = []string{"CAP_CHOWN", "CAP_SYS_ADMIN"}
	in.HostDevices = []specs.LinuxDevice{{Path: "/dev/kmsg", Type: "c", Major: 1, Minor: 11}}
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Capabilities.Effective, in.Host.ownCaps) || len(s.Linux.MaskedPaths) != 0 ||
		len(s.Linux.ReadonlyPaths) != 0 || len(s.Linux.Devices) != 1 || !s.Linux.Resources.Devices[0].Allow {
		t.Errorf("privileged spec: caps %v masked %v devices %v rules %+v", s.Process.Capabilities.Effective,
			s.Linux.MaskedPaths, s.Linux.Devices, s.Linux.Resources.Devices)
	}
	if m := mountAt(s, "/sys"); !slices.Contains(m.Options, "rw") {
		t.Errorf("privileged /sys options %v", m.Options)
	}

	in = baseInput()
	in.Infra, in.OwnUTS, in.ReadOnly = true, true, true
	in.Sysctls = map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"}
	if s, err = buildSpec(in); err != nil {
		t.Fatal(err)
	}
	if len(s.Process.Capabilities.Bounding) != 0 || !s.Process.NoNewPrivileges || s.Hostname != "pod" || !s.Root.Readonly ||
		s.Linux.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("infra spec: caps %v nnp %v hostname %q root %+v sysctl %v", s.Process.Capabilities.Bounding,
			s.Process.NoNewPrivileges, s.Hostname, s.Root, s.Linux.Sysctl)
	}
}

func TestCapabilitySet(t *testing.T) {
	all := allCapabilities(40)
	for _, tc := range []struct {
		name     string
		sc       runtime.SecurityContext
		has, not []string
		n        int
	}{
		{"default", runtime.SecurityContext{}, []string{"CAP_CHOWN", "CAP_KILL"}, []string{"CAP_SYS_ADMIN"}, 14},
		{"add and drop", runtime.SecurityContext{CapAdd: []string{"sys_time", "NET_ADMIN"}, CapDrop: []string{"CAP_KILL"}},
			[]string{"CAP_SYS_TIME", "CAP_NET_ADMIN"}, []string{"CAP_KILL"}, 15},
		{"drop all", runtime.SecurityContext{CapDrop: []string{"ALL"}}, nil, []string{"CAP_CHOWN"}, 0},
		{"drop all add one", runtime.SecurityContext{CapDrop: []string{"all"}, CapAdd: []string{"NET_BIND_SERVICE"}},
			[]string{"CAP_NET_BIND_SERVICE"}, nil, 1},
		{"add all drop one", runtime.SecurityContext{CapAdd: []string{"ALL"}, CapDrop: []string{"SYS_ADMIN"}},
			[]string{"CAP_BPF"}, []string{"CAP_SYS_ADMIN"}, 40},
		{"privileged", runtime.SecurityContext{Privileged: true, CapDrop: []string{"ALL"}}, []string{"CAP_SYS_ADMIN"}, nil, 41},
	} {
		got, err := capabilitySet(tc.sc, all)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(got) != tc.n {
			t.Errorf("%s: %d capabilities %v, want %d", tc.name, len(got), got, tc.n)
		}
		for _, c := range tc.has {
			if !slices.Contains(got, c) {
				t.Errorf("%s: %s missing", tc.name, c)
			}
		}
		for _, c := range tc.not {
			if slices.Contains(got, c) {
				t.Errorf("%s: %s present", tc.name, c)
			}
		}
	}
}

func TestNamespacesOfAppContainers(t *testing.T) {
	r := &Runtime{host: testHost}
	infra := &containerRecord{Pid: 4242}
	target := &containerRecord{Pid: 5151}
	rec := &containerRecord{CgroupPath: "/own/pod/c", Config: runtime.ContainerConfig{Name: "c", Args: []string{"true"}}}
	for _, tc := range []struct {
		name   string
		sc     runtime.SandboxConfig
		target *containerRecord
		want   map[specs.LinuxNamespaceType]string // type -> path ("" = new)
	}{
		{"target", runtime.SandboxConfig{}, target, map[specs.LinuxNamespaceType]string{
			"mount": "", "network": "/proc/4242/ns/net", "uts": "/proc/4242/ns/uts", "ipc": "/proc/4242/ns/ipc", "pid": "/proc/5151/ns/pid"}},
		{"target in a shared-pid pod", runtime.SandboxConfig{SharePID: true}, target, map[specs.LinuxNamespaceType]string{
			"mount": "", "network": "/proc/4242/ns/net", "uts": "/proc/4242/ns/uts", "ipc": "/proc/4242/ns/ipc", "pid": "/proc/5151/ns/pid"}},
		{"pod", runtime.SandboxConfig{}, nil, map[specs.LinuxNamespaceType]string{
			"mount": "", "network": "/proc/4242/ns/net", "uts": "/proc/4242/ns/uts", "ipc": "/proc/4242/ns/ipc", "pid": ""}},
		{"shared pid", runtime.SandboxConfig{SharePID: true}, nil, map[specs.LinuxNamespaceType]string{
			"mount": "", "network": "/proc/4242/ns/net", "uts": "/proc/4242/ns/uts", "ipc": "/proc/4242/ns/ipc", "pid": "/proc/4242/ns/pid"}},
		{"host", runtime.SandboxConfig{HostNetwork: true, HostIPC: true, HostPID: true}, nil, map[specs.LinuxNamespaceType]string{"mount": ""}},
	} {
		sb := &sandboxRecord{ID: "s", Config: tc.sc, Shm: "/state/s/shm"}
		s, err := r.containerSpec(sb, infra, tc.target, rec, "/root")
		if err != nil {
			t.Fatal(err)
		}
		got := map[specs.LinuxNamespaceType]string{}
		for _, ns := range s.Linux.Namespaces {
			got[ns.Type] = ns.Path
		}
		if len(got) != len(tc.want) {
			t.Errorf("%s: namespaces %v, want %v", tc.name, got, tc.want)
		}
		for typ, p := range tc.want {
			if gp, ok := got[typ]; !ok || gp != p {
				t.Errorf("%s: %s namespace = %q (present %v), want %q", tc.name, typ, gp, ok, p)
			}
		}
		if s.Hostname != "" {
			t.Errorf("%s: an app container must not set the hostname of the pod's UTS namespace", tc.name)
		}
	}
}

func TestCreateWrapper(t *testing.T) {
	l, err := cgroups.ParseMountinfo(strings.NewReader(
		"32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p, err := writeCreateWrapper(dir, "/usr/bin/crun", &cgroups.Host{Layout: l})
	if err != nil {
		t.Fatalf("writing the wrapper (needs unshare from util-linux): %v", err)
	}
	b, err := os.ReadFile(p)
	if err != nil || filepath.Dir(p) != dir {
		t.Fatal(p, err)
	}
	for _, want := range []string{"--mount --propagation slave", "umount -l /sys/fs/cgroup/unified", "'/usr/bin/crun' \"$@\""} {
		if !strings.Contains(string(b), want) {
			t.Errorf("wrapper lacks %q:\n%s", want, b)
		}
	}
	unified, _ := cgroups.ParseMountinfo(strings.NewReader("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"))
	if _, err := writeCreateWrapper(dir, "/usr/bin/crun", &cgroups.Host{Layout: unified}); err == nil {
		t.Errorf("a wrapper for a unified host makes no sense")
	}
}

func TestTerminalAndStdin(t *testing.T) {
	in := baseInput()
	in.Terminal = true
	s, err := buildSpec(in)
	if err != nil {
		t.Fatal(err)
	}
	if !s.Process.Terminal || !slices.Contains(s.Process.Env, "TERM=xterm") {
		t.Errorf("a TTY container's process: terminal %v, env %q", s.Process.Terminal, s.Process.Env)
	}
	in.Env = []string{"TERM=dumb"}
	if s, _ := buildSpec(in); slices.Contains(s.Process.Env, "TERM=xterm") {
		t.Errorf("TERM given by the caller was overridden: %q", s.Process.Env)
	}
	if s, _ := buildSpec(baseInput()); s.Process.Terminal || slices.ContainsFunc(s.Process.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		t.Errorf("a container without a TTY: terminal %v, env %q", s.Process.Terminal, s.Process.Env)
	}

	for _, tc := range []struct {
		cfg  runtime.ContainerConfig
		want string
	}{
		{runtime.ContainerConfig{}, ""},
		{runtime.ContainerConfig{Stdin: true}, "--stdin --leave-stdin-open"},
		{runtime.ContainerConfig{Stdin: true, StdinOnce: true}, "--stdin"},
		{runtime.ContainerConfig{StdinOnce: true}, ""},
		{runtime.ContainerConfig{TTY: true}, "--terminal"},
		{runtime.ContainerConfig{Stdin: true, TTY: true}, "--stdin --leave-stdin-open --terminal"},
	} {
		if got := strings.Join(stdioArgs(tc.cfg), " "); got != tc.want {
			t.Errorf("conmon options for %+v = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}
