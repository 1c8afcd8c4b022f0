package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Smaps is a process's memory from /proc/PID/smaps_rollup, in KiB: its
// resident set and its proportional set (each shared page divided among the
// processes that map it, so that the PSS of a set of processes adds up to
// the memory they cost together).
type Smaps struct {
	RSSKiB int64 `json:"rss_kib"`
	PSSKiB int64 `json:"pss_kib"`
}

// ReadSmapsRollup reads /proc/PID/smaps_rollup under procRoot ("/proc").
func ReadSmapsRollup(procRoot string, pid int) (Smaps, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return Smaps{}, err
	}
	return parseSmapsRollup(b)
}

// parseSmapsRollup reads the Rss and Pss lines of a smaps_rollup file. A
// process without memory (a zombie, a kernel thread) has an empty file:
// that is an error.
func parseSmapsRollup(b []byte) (Smaps, error) {
	var s Smaps
	var rss, pss bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue // the header: "00400000-7ffd... ---p 00000000 00:00 0 [rollup]"
		}
		var dst *int64
		switch key {
		case "Rss":
			dst, rss = &s.RSSKiB, true
		case "Pss":
			dst, pss = &s.PSSKiB, true
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return s, fmt.Errorf("unexpected smaps_rollup line %q", sc.Text())
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return s, fmt.Errorf("unexpected smaps_rollup line %q: %w", sc.Text(), err)
		}
		*dst = v
	}
	if !rss || !pss {
		return s, errors.New("no Rss or Pss in smaps_rollup (a kernel thread or a zombie?)")
	}
	return s, nil
}

// procInfo is one process: its PID, parent, name (comm) and command line.
type procInfo struct {
	PID, PPID int
	Name      string
	Cmdline   []string
}

// listProcs reads every process under procRoot ("/proc"). Processes that
// exit while it reads are left out.
func listProcs(procRoot string) ([]procInfo, error) {
	ents, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, err
	}
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		p, err := readProc(procRoot, pid)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

func readProc(procRoot string, pid int) (procInfo, error) {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return procInfo{}, err
	}
	p := procInfo{PID: pid}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		switch key {
		case "Name":
			p.Name = strings.TrimSpace(val)
		case "PPid":
			if p.PPID, err = strconv.Atoi(strings.TrimSpace(val)); err != nil {
				return p, fmt.Errorf("%s/status: PPid %q: %w", dir, val, err)
			}
		}
	}
	cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
	if err != nil {
		return p, err
	}
	if s := strings.TrimRight(string(cmdline), "\x00"); s != "" {
		p.Cmdline = strings.Split(s, "\x00")
	}
	return p, nil
}

// podProcs are the processes that keep a node's pods running: one conmon per
// container (the pod's infra container included) and the processes conmon
// started, sorted into the pods' infra processes (catatonit) and their
// workloads.
type podProcs struct {
	Conmons, Infras, Workloads []int
}

// findPodProcs picks, among procs, the conmon processes whose command line
// mentions marker (the data or storage directory of one node or engine, so
// that conmons of other nodes on the machine are left out) and their
// children.
func findPodProcs(procs []procInfo, marker string) podProcs {
	var pp podProcs
	conmons := map[int]bool{}
	for _, p := range procs {
		if len(p.Cmdline) == 0 || filepath.Base(p.Cmdline[0]) != "conmon" {
			continue
		}
		if !strings.Contains(strings.Join(p.Cmdline, " "), marker) {
			continue
		}
		conmons[p.PID] = true
		pp.Conmons = append(pp.Conmons, p.PID)
	}
	for _, p := range procs {
		if !conmons[p.PPID] {
			continue
		}
		if p.Name == "catatonit" {
			pp.Infras = append(pp.Infras, p.PID)
		} else {
			pp.Workloads = append(pp.Workloads, p.PID)
		}
	}
	return pp
}

// sumSmaps adds up the smaps_rollup figures of pids. A process that is gone
// is skipped and counted in missing.
func sumSmaps(procRoot string, pids []int) (sum Smaps, missing int, err error) {
	for _, pid := range pids {
		s, err := ReadSmapsRollup(procRoot, pid)
		if errors.Is(err, fs.ErrNotExist) {
			missing++
			continue
		}
		if err != nil {
			return sum, missing, fmt.Errorf("pid %d: %w", pid, err)
		}
		sum.RSSKiB += s.RSSKiB
		sum.PSSKiB += s.PSSKiB
	}
	return sum, missing, nil
}

// NodeMemory is what the pods running on a node cost it in memory.
type NodeMemory struct {
	// Pods is the number of pods running when the sample was taken.
	Pods int `json:"pods"`
	// Conmons, Infras and Workloads count the processes found: one conmon
	// per container (infra included), one infra and one workload per pod.
	Conmons   int `json:"conmons"`
	Infras    int `json:"infras"`
	Workloads int `json:"workloads"`
	// Conmon, Infra and Workload are those processes' memory, summed.
	Conmon   Smaps `json:"conmon"`
	Infra    Smaps `json:"infra"`
	Workload Smaps `json:"workload"`
	// Agent is the process running the node agent (peapod: the server, or
	// the agent when it runs apart), with no pods (AgentIdle) and with
	// Pods pods (Agent); zero for an engine without a resident agent.
	AgentIdle ProcSample `json:"agent_idle"`
	Agent     ProcSample `json:"agent"`
}

// ProcSample is one process's memory at one moment, in KiB: its resident
// set, split into anonymous and file-backed pages, its proportional set and
// its peak resident set.
type ProcSample struct {
	RSSKiB  int64 `json:"rss_kib,omitempty"`
	AnonKiB int64 `json:"rss_anon_kib,omitempty"`
	FileKiB int64 `json:"rss_file_kib,omitempty"`
	PSSKiB  int64 `json:"pss_kib,omitempty"`
	HWMKiB  int64 `json:"hwm_kib,omitempty"`
}

// sampleProc reads pid's RSS, peak RSS and PSS.
func sampleProc(procRoot string, pid int) (ProcSample, error) {
	m, err := ReadProcMemory(pid)
	if err != nil {
		return ProcSample{}, err
	}
	s, err := ReadSmapsRollup(procRoot, pid)
	if err != nil {
		return ProcSample{}, err
	}
	return ProcSample{RSSKiB: m.RSSKiB, AnonKiB: m.AnonKiB, FileKiB: m.FileKiB, HWMKiB: m.HWMKiB, PSSKiB: s.PSSKiB}, nil
}

// AgentGrowthKiB is the growth of the agent's PSS from no pods to Pods pods
// (0 when it shrank, or for an engine without an agent).
func (m NodeMemory) AgentGrowthKiB() int64 {
	if m.Agent.PSSKiB == 0 || m.AgentIdle.PSSKiB == 0 {
		return 0
	}
	return max(0, m.Agent.PSSKiB-m.AgentIdle.PSSKiB)
}

// PerPodKiB is the node memory one running pod costs: the PSS of its conmons
// and infra process plus its share of the agent's growth. Workloads are left
// out: they are the user's, not the system's.
func (m NodeMemory) PerPodKiB() float64 {
	if m.Pods == 0 {
		return 0
	}
	return float64(m.Conmon.PSSKiB+m.Infra.PSSKiB+m.AgentGrowthKiB()) / float64(m.Pods)
}

// sampleNodeMemory finds the pods' processes by marker and sums their
// memory. pods is how many pods should be running: a count of processes
// that does not match is an error, as the figures would be wrong.
func sampleNodeMemory(procRoot, marker string, pods int) (NodeMemory, error) {
	m := NodeMemory{Pods: pods}
	procs, err := listProcs(procRoot)
	if err != nil {
		return m, err
	}
	pp := findPodProcs(procs, marker)
	var missing [3]int
	if m.Conmon, missing[0], err = sumSmaps(procRoot, pp.Conmons); err != nil {
		return m, err
	}
	if m.Infra, missing[1], err = sumSmaps(procRoot, pp.Infras); err != nil {
		return m, err
	}
	if m.Workload, missing[2], err = sumSmaps(procRoot, pp.Workloads); err != nil {
		return m, err
	}
	m.Conmons = len(pp.Conmons) - missing[0]
	m.Infras = len(pp.Infras) - missing[1]
	m.Workloads = len(pp.Workloads) - missing[2]
	if m.Infras != pods || m.Workloads != pods || m.Conmons != 2*pods {
		return m, fmt.Errorf("expected %d pods' processes (conmons of %s): found %d conmons, %d infra and %d other processes",
			pods, marker, m.Conmons, m.Infras, m.Workloads)
	}
	return m, nil
}
