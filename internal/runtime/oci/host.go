package oci

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// hostFacts is what the spec builder needs to know about the host and the
// runtime process, read once by New.
type hostFacts struct {
	// capLast is the highest capability number the kernel knows; ownCaps
	// the runtime process's permitted capabilities, which are all a
	// privileged container can get.
	capLast int
	ownCaps []string
	// oomScoreAdj is the runtime process's own oom_score_adj; sysResource
	// whether it holds CAP_SYS_RESOURCE (and may lower it or raise rlimits).
	oomScoreAdj int
	sysResource bool
	// hardLimits are the process's hard rlimits by OCI name.
	hardLimits map[string]uint64
	// cgroupNS gives containers a cgroup namespace (unified hosts, as
	// containerd does).
	cgroupNS bool
}

// rlimitNumbers maps OCI rlimit names to resource numbers.
var rlimitNumbers = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

func loadHostFacts(mode cgroups.Mode) (hostFacts, error) {
	h := hostFacts{capLast: capChekpointRestore, hardLimits: map[string]uint64{}, cgroupNS: mode == cgroups.ModeUnified}
	if b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			h.capLast = n
		}
	}
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return h, fmt.Errorf("oci: %w", err)
	}
	if h.oomScoreAdj, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
		return h, fmt.Errorf("oci: oom_score_adj: %w", err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return h, fmt.Errorf("oci: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, v, _ := strings.Cut(sc.Text(), ":")
		if key != "CapEff" && key != "CapPrm" {
			continue
		}
		bits, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return h, fmt.Errorf("oci: %s: %w", key, err)
		}
		if key == "CapEff" {
			h.sysResource = bits&(1<<unix.CAP_SYS_RESOURCE) != 0
			continue
		}
		for i, name := range allCapabilities(h.capLast) {
			if bits&(1<<i) != 0 {
				h.ownCaps = append(h.ownCaps, name)
			}
		}
	}
	for name, n := range rlimitNumbers {
		var rl unix.Rlimit
		if err := unix.Getrlimit(n, &rl); err != nil {
			return h, fmt.Errorf("oci: getrlimit %s: %w", name, err)
		}
		h.hardLimits[name] = rl.Max
	}
	return h, nil
}

// hostDevices lists the device nodes under /dev, for privileged containers
// (as containerd's WithHostDevices does).
func hostDevices() ([]specs.LinuxDevice, error) {
	var devs []specs.LinuxDevice
	skip := map[string]bool{"/dev/pts": true, "/dev/shm": true, "/dev/fd": true, "/dev/mqueue": true,
		"/dev/.lxc": true, "/dev/.lxd-mounts": true, "/dev/.udev": true}
	err := filepath.WalkDir("/dev", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // vanished or unreadable: not a device we can give
		}
		if d.IsDir() {
			if skip[p] {
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" || d.Type()&fs.ModeDevice == 0 {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil
		}
		typ := "c"
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			typ = "b"
		}
		mode := fs.FileMode(st.Mode & 0o777)
		uid, gid := st.Uid, st.Gid
		devs = append(devs, specs.LinuxDevice{
			Path: p, Type: typ, Major: int64(unix.Major(st.Rdev)), Minor: int64(unix.Minor(st.Rdev)),
			FileMode: &mode, UID: &uid, GID: &gid,
		})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("oci: listing host devices: %w", err)
	}
	return devs, nil
}

// pidStart is a process's start time in clock ticks since boot (field 22 of
// /proc/PID/stat); with the PID it names one process for good. ok is false
// when the process is gone or a zombie.
func pidStart(pid int) (start uint64, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name is in parentheses and may contain spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, err == nil
}

// alive reports whether the process pid that started at start still runs.
func alive(pid int, start uint64) bool {
	s, ok := pidStart(pid)
	return ok && s == start
}
