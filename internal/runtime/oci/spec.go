package oci

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// ociVersion is the spec version written into bundles: crun 1.8 accepts
// only 1.0.x, and nothing newer is used.
const ociVersion = "1.0.2"

// defaultPath is the PATH a container gets when its environment has none.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// specInput is everything one container's OCI spec is built from.
type specInput struct {
	// Infra marks the sandbox's pause container.
	Infra bool
	// RootPath is the root filesystem directory on the host.
	RootPath string
	ReadOnly bool
	Args     []string
	Env      []string
	Cwd      string
	// Terminal gives the process a pseudo-terminal (process.terminal); the
	// runtime hands its master to conmon through a console socket.
	Terminal bool
	// Hostname is set for containers that own their UTS namespace, and
	// exported as HOSTNAME to every container of the pod.
	Hostname    string
	OwnUTS      bool
	Mounts      []runtime.Mount
	Namespaces  []specs.LinuxNamespace
	CgroupsPath string
	Resources   runtime.Resources
	Rlimits     []runtime.Rlimit
	Security    runtime.SecurityContext
	// ShmSource is the host directory bind-mounted at /dev/shm.
	ShmSource string
	Sysctls   map[string]string
	// HostDevices are given to privileged containers.
	HostDevices []specs.LinuxDevice
	Annotations map[string]string
	Host        hostFacts
}

// buildSpec turns a specInput into an OCI runtime spec with upstream's
// (containerd's CRI plugin's) defaults.
func buildSpec(in specInput) (*specs.Spec, error) {
	if len(in.Args) == 0 {
		return nil, fmt.Errorf("oci: a container needs a command: %w", runtime.ErrInvalid)
	}
	priv := in.Security.Privileged
	caps, err := capabilitySet(in.Security, in.Host.ownCaps)
	if err != nil {
		return nil, err
	}
	if in.Infra && !priv {
		caps = []string{} // catatonit needs none
	}
	env := slices.Clone(in.Env)
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append([]string{defaultPath}, env...)
	}
	if in.Hostname != "" && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOSTNAME=") }) {
		env = append(env, "HOSTNAME="+in.Hostname)
	}
	if in.Terminal && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
		env = append(env, "TERM=xterm") // as containerd's and CRI-O's CRI do for TTY containers
	}
	cwd := in.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("oci: working directory %q is not absolute: %w", cwd, runtime.ErrInvalid)
	}
	rlimits, err := clampRlimits(in.Rlimits, in.Host)
	if err != nil {
		return nil, err
	}
	mounts, propagation, err := buildMounts(in)
	if err != nil {
		return nil, err
	}
	s := &specs.Spec{
		Version: ociVersion,
		Process: &specs.Process{
			User:     specs.User{UID: in.Security.UID, GID: in.Security.GID, AdditionalGids: in.Security.AdditionalGIDs},
			Terminal: in.Terminal,
			Args:     in.Args,
			Env:      env,
			Cwd:      cwd,
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         rlimits,
			NoNewPrivileges: in.Security.NoNewPrivileges || (in.Infra && !priv),
			OOMScoreAdj:     clampOOMScoreAdj(in.Resources.OOMScoreAdj, in.Host),
		},
		Root:        &specs.Root{Path: in.RootPath, Readonly: in.ReadOnly},
		Mounts:      mounts,
		Annotations: in.Annotations,
		Linux: &specs.Linux{
			Namespaces:        in.Namespaces,
			CgroupsPath:       in.CgroupsPath,
			Resources:         buildResources(in.Resources, priv),
			RootfsPropagation: propagation,
		},
	}
	if in.OwnUTS {
		s.Hostname = in.Hostname
	}
	if in.Infra && len(in.Sysctls) > 0 {
		s.Linux.Sysctl = in.Sysctls
	}
	switch {
	case priv:
		s.Linux.Devices = in.HostDevices
	case !in.Security.UnmaskedProc:
		s.Linux.MaskedPaths = slices.Clone(DefaultMaskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(DefaultReadonlyPaths)
	}
	// Privileged containers run without seccomp, as upstream's do.
	if !priv {
		if s.Linux.Seccomp, err = seccompProfile(in.Security.Seccomp, s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// buildMounts puts the caller's bind mounts over the default /proc, /dev,
// /dev/pts, /dev/shm, /dev/mqueue, /sys and /sys/fs/cgroup (a caller's mount
// at one of those destinations replaces the default). It also returns the
// root propagation the mounts need.
func buildMounts(in specInput) ([]specs.Mount, string, error) {
	ro := "ro"
	if in.Security.Privileged {
		ro = "rw"
	}
	defaults := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", ro}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", ro}},
	}
	if in.ShmSource != "" {
		defaults = append(defaults, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: in.ShmSource,
			Options: []string{"rbind", "nosuid", "nodev", "noexec"}})
	} else {
		defaults = append(defaults, specs.Mount{Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
			Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}})
	}
	user := map[string]bool{}
	var mounts []specs.Mount
	propagation := ""
	for _, m := range in.Mounts {
		if !path.IsAbs(m.Destination) || m.Source == "" || !path.IsAbs(m.Source) {
			return nil, "", fmt.Errorf("oci: mount %q -> %q: source and destination must be absolute: %w", m.Source, m.Destination, runtime.ErrInvalid)
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case "", "private", "rprivate":
			opts = append(opts, "rprivate")
		case "rslave", "slave":
			opts = append(opts, "rslave")
			if propagation == "" {
				propagation = "rslave"
			}
		case "rshared", "shared":
			opts = append(opts, "rshared")
			propagation = "rshared"
		default:
			return nil, "", fmt.Errorf("oci: mount propagation %q: %w", m.Propagation, runtime.ErrInvalid)
		}
		if m.ReadOnly {
			opts = append(opts, "ro")
		}
		dest := path.Clean(m.Destination)
		user[dest] = true
		mounts = append(mounts, specs.Mount{Destination: dest, Type: "bind", Source: m.Source, Options: opts})
	}
	var out []specs.Mount
	for _, d := range defaults {
		if !user[d.Destination] {
			out = append(out, d)
		}
	}
	return append(out, mounts...), propagation, nil
}

// buildResources maps runtime.Resources to the spec's cgroup settings, with
// the device rules of an unprivileged container: deny everything but the
// default devices (Docker's and containerd's list).
func buildResources(r runtime.Resources, privileged bool) *specs.LinuxResources {
	res := &specs.LinuxResources{}
	if privileged {
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		res.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
		dev := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
			d := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Access: access}
			if major >= 0 {
				d.Major = &major
			}
			if minor >= 0 {
				d.Minor = &minor
			}
			return d
		}
		res.Devices = append(res.Devices,
			dev("c", -1, -1, "m"), dev("b", -1, -1, "m"),
			dev("c", 1, 3, "rwm"), dev("c", 1, 5, "rwm"), dev("c", 1, 7, "rwm"), dev("c", 1, 8, "rwm"),
			dev("c", 1, 9, "rwm"), dev("c", 5, 0, "rwm"), dev("c", 5, 1, "rwm"), dev("c", 5, 2, "rwm"),
			dev("c", 136, -1, "rwm"), dev("c", 10, 200, "rwm"),
		)
	}
	if r.MemoryLimit > 0 {
		limit := r.MemoryLimit
		res.Memory = &specs.LinuxMemory{Limit: &limit}
	}
	if r.CPUShares != 0 || r.CPUQuota != 0 || r.CPUPeriod != 0 {
		res.CPU = &specs.LinuxCPU{}
		if r.CPUShares != 0 {
			shares := r.CPUShares
			res.CPU.Shares = &shares
		}
		if r.CPUQuota != 0 {
			quota := r.CPUQuota
			res.CPU.Quota = &quota
		}
		if r.CPUPeriod != 0 {
			period := r.CPUPeriod
			res.CPU.Period = &period
		}
	}
	if r.PidsLimit > 0 {
		res.Pids = &specs.LinuxPids{Limit: r.PidsLimit}
	}
	return res
}

// clampRlimits lowers limits above the runtime's own hard limits to them
// (raising a hard limit needs CAP_SYS_RESOURCE, which a runtime may lack).
func clampRlimits(in []runtime.Rlimit, h hostFacts) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, rl := range in {
		typ := strings.ToUpper(rl.Type)
		if !strings.HasPrefix(typ, "RLIMIT_") {
			typ = "RLIMIT_" + typ
		}
		if _, ok := rlimitNumbers[typ]; !ok {
			return nil, fmt.Errorf("oci: unknown rlimit %q: %w", rl.Type, runtime.ErrInvalid)
		}
		soft, hard := rl.Soft, rl.Hard
		if soft > hard {
			return nil, fmt.Errorf("oci: rlimit %s soft %d above hard %d: %w", typ, soft, hard, runtime.ErrInvalid)
		}
		if max, ok := h.hardLimits[typ]; ok && !h.sysResource && hard > max {
			hard = max
			soft = min(soft, hard)
		}
		out = append(out, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
	return out, nil
}

// clampOOMScoreAdj raises a requested oom_score_adj below the runtime's own
// to it unless the runtime may lower it (CAP_SYS_RESOURCE).
func clampOOMScoreAdj(want *int, h hostFacts) *int {
	if want == nil {
		return nil
	}
	v := *want
	if !h.sysResource && v < h.oomScoreAdj {
		v = h.oomScoreAdj
	}
	return &v
}

// nsPath is a namespace of a running process.
func nsPath(pid int, ns string) string {
	return "/proc/" + strconv.Itoa(pid) + "/ns/" + ns
}
