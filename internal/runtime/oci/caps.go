package oci

import (
	"fmt"
	"slices"
	"strings"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// capNames are the capabilities by number (linux/capability.h).
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
	"CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
	"CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
	"CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

const capChekpointRestore = 40

// DefaultCapabilities is containerd's (and so the CRI's) default set for
// unprivileged containers.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths and DefaultReadonlyPaths are containerd's defaults for
// unprivileged containers.
var (
	DefaultMaskedPaths = []string{
		"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
		"/sys/firmware", "/sys/devices/virtual/powercap",
	}
	DefaultReadonlyPaths = []string{
		"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
	}
)

// allCapabilities lists every capability up to the kernel's last.
func allCapabilities(last int) []string {
	if last >= len(capNames) {
		last = len(capNames) - 1
	}
	return slices.Clone(capNames[:last+1])
}

// normalizeCap turns "net_admin" or "NET_ADMIN" into "CAP_NET_ADMIN".
func normalizeCap(c string) string {
	c = strings.ToUpper(strings.TrimSpace(c))
	if c == "ALL" || strings.HasPrefix(c, "CAP_") {
		return c
	}
	return "CAP_" + c
}

// capabilitySet applies Kubernetes' add/drop rules to the default set (as
// containerd does): "ALL" in add starts from every capability the runtime
// holds (all), "ALL" in drop from none; then the named adds are added and the
// named drops removed. A privileged container gets all.
func capabilitySet(sc runtime.SecurityContext, all []string) ([]string, error) {
	all = slices.Clone(all)
	if sc.Privileged {
		return all, nil
	}
	known := func(c string) error {
		if c != "ALL" && !slices.Contains(capNames, c) {
			return fmt.Errorf("oci: unknown capability %q: %w", c, runtime.ErrInvalid)
		}
		return nil
	}
	var add, drop []string
	for _, c := range sc.CapAdd {
		c = normalizeCap(c)
		if err := known(c); err != nil {
			return nil, err
		}
		add = append(add, c)
	}
	for _, c := range sc.CapDrop {
		c = normalizeCap(c)
		if err := known(c); err != nil {
			return nil, err
		}
		drop = append(drop, c)
	}
	set := slices.Clone(DefaultCapabilities)
	if slices.Contains(add, "ALL") {
		set = all
	}
	if slices.Contains(drop, "ALL") {
		set = nil
	}
	for _, c := range add {
		if c != "ALL" && !slices.Contains(set, c) {
			set = append(set, c)
		}
	}
	set = slices.DeleteFunc(set, func(c string) bool { return slices.Contains(drop, c) })
	if set == nil {
		set = []string{}
	}
	return set, nil
}
