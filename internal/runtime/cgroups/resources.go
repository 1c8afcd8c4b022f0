package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Resources are the limits peapod sets on a cgroup. Zero means unset.
type Resources struct {
	// CPUShares is the v1 cpu.shares weight (2-262144); v2 gets it as
	// cpu.weight through SharesToWeight.
	CPUShares uint64
	// CPUQuota and CPUPeriod are the CFS bandwidth in microseconds.
	CPUQuota  int64
	CPUPeriod uint64
	// MemoryLimit is in bytes.
	MemoryLimit int64
	// PidsLimit caps the number of tasks.
	PidsLimit int64
}

// File is one cgroup interface file and the value written to it.
type File struct {
	// Controller names the v1 hierarchy the file lives in ("cpu",
	// "memory"); on v2 every file is in the one hierarchy.
	Controller string
	Name       string
	Value      string
}

// SharesToWeight converts cgroup v1 cpu.shares to cgroup v2 cpu.weight the
// way runc 1.1 and crun 1.8 do: [2, 262144] maps linearly onto [1, 10000].
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	if shares < 2 {
		shares = 2
	}
	if shares > 262144 {
		shares = 262144
	}
	return 1 + ((shares-2)*9999)/262142
}

// V1Files lists the files a runtime writes for r on cgroup v1.
func V1Files(r Resources) []File {
	var fs []File
	if r.CPUShares != 0 {
		fs = append(fs, File{"cpu", "cpu.shares", strconv.FormatUint(r.CPUShares, 10)})
	}
	if r.CPUPeriod != 0 {
		fs = append(fs, File{"cpu", "cpu.cfs_period_us", strconv.FormatUint(r.CPUPeriod, 10)})
	}
	if r.CPUQuota != 0 {
		fs = append(fs, File{"cpu", "cpu.cfs_quota_us", strconv.FormatInt(r.CPUQuota, 10)})
	}
	if r.MemoryLimit != 0 {
		fs = append(fs, File{"memory", "memory.limit_in_bytes", strconv.FormatInt(r.MemoryLimit, 10)})
	}
	if r.PidsLimit > 0 {
		fs = append(fs, File{"pids", "pids.max", strconv.FormatInt(r.PidsLimit, 10)})
	}
	return fs
}

// V2Files lists the files a runtime writes for r on cgroup v2.
func V2Files(r Resources) []File {
	var fs []File
	if r.CPUShares != 0 {
		fs = append(fs, File{"cpu", "cpu.weight", strconv.FormatUint(SharesToWeight(r.CPUShares), 10)})
	}
	if r.CPUQuota != 0 || r.CPUPeriod != 0 {
		period := r.CPUPeriod
		if period == 0 {
			period = 100000
		}
		quota := "max"
		if r.CPUQuota > 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		fs = append(fs, File{"cpu", "cpu.max", quota + " " + strconv.FormatUint(period, 10)})
	}
	if r.MemoryLimit != 0 {
		fs = append(fs, File{"memory", "memory.max", strconv.FormatInt(r.MemoryLimit, 10)})
	}
	if r.PidsLimit > 0 {
		fs = append(fs, File{"pids", "pids.max", strconv.FormatInt(r.PidsLimit, 10)})
	}
	return fs
}

// Files lists the files for r on this host's layout: v1 on legacy and
// hybrid hosts (where the controllers are), v2 on unified ones.
func (h *Host) Files(r Resources) []File {
	if h.Layout.Mode == ModeUnified {
		return V2Files(r)
	}
	return V1Files(r)
}

// FilePath is where f lives for cgroup p on this host.
func (h *Host) FilePath(f File, p string) (string, bool) {
	d, ok := h.Dir(f.Controller, p)
	if !ok {
		return "", false
	}
	return filepath.Join(d, f.Name), true
}

// ParseKeyed reads a flat keyed file ("key value" lines, such as v2
// memory.events or v1 memory.oom_control) and returns key's value.
func ParseKeyed(r io.Reader, key string) (uint64, bool, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if !ok || k != key {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("cgroups: %s: %w", key, err)
		}
		return n, true, nil
	}
	return 0, false, sc.Err()
}

// OOM is what the memory controller says about out-of-memory kills in a
// cgroup.
type OOM struct {
	// Kills counts processes the OOM killer killed in the cgroup (v2
	// memory.events oom_kill; v1 memory.oom_control oom_kill, kernel 4.13+).
	Kills uint64
	// KillsKnown is false on old v1 kernels without the oom_kill counter;
	// LimitHits (v1 memory.failcnt) is then the only hint.
	KillsKnown bool
	LimitHits  uint64
}

// OOMKilled reports whether the cgroup saw an OOM kill; exitCode is the
// process's exit status, used only when the kernel has no kill counter (a
// SIGKILL after the limit was hit then counts).
func (o OOM) OOMKilled(exitCode int) bool {
	if o.KillsKnown {
		return o.Kills > 0
	}
	return o.LimitHits > 0 && exitCode == 137
}

// ReadOOM reads the OOM counters of cgroup p. A missing cgroup is
// os.ErrNotExist.
func (h *Host) ReadOOM(p string) (OOM, error) {
	var o OOM
	if h.Layout.Mode != ModeUnified {
		d, ok := h.Dir("memory", p)
		if !ok {
			return o, errors.New("cgroups: no memory hierarchy")
		}
		data, err := os.ReadFile(filepath.Join(d, "memory.oom_control"))
		if err != nil {
			return o, fmt.Errorf("cgroups: %w", err)
		}
		if o.Kills, o.KillsKnown, err = ParseKeyed(bytes.NewReader(data), "oom_kill"); err != nil {
			return o, err
		}
		if fc, err := os.ReadFile(filepath.Join(d, "memory.failcnt")); err == nil {
			o.LimitHits, _ = strconv.ParseUint(strings.TrimSpace(string(fc)), 10, 64)
		}
		return o, nil
	}
	d, ok := h.Dir("memory", p)
	if !ok {
		return o, errors.New("cgroups: no cgroup2 hierarchy")
	}
	data, err := os.ReadFile(filepath.Join(d, "memory.events"))
	if err != nil {
		return o, fmt.Errorf("cgroups: %w", err)
	}
	o.Kills, o.KillsKnown, err = ParseKeyed(bytes.NewReader(data), "oom_kill")
	return o, err
}

// waitABit paces retries of a busy rmdir.
func waitABit() { time.Sleep(2 * time.Millisecond) }
