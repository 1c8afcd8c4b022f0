package bench

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// A conmon's /proc/PID/smaps_rollup, as Linux 6.x writes it.
const smapsRollupSample = `55c6717d8000-7fff8246d000 ---p 00000000 00:00 0                          [rollup]
Rss:                2104 kB
Pss:                 632 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            520 kB
Pss_Shmem:             0 kB
Shared_Clean:       1600 kB
Shared_Dirty:          0 kB
Private_Clean:        52 kB
Private_Dirty:       112 kB
Referenced:         2104 kB
Anonymous:           112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
Swap:                  0 kB
SwapPss:               0 kB
Locked:                0 kB
`

func TestParseSmapsRollup(t *testing.T) {
	s, err := parseSmapsRollup([]byte(smapsRollupSample))
	if err != nil {
		t.Fatal(err)
	}
	if s != (Smaps{RSSKiB: 2104, PSSKiB: 632}) {
		t.Errorf("parseSmapsRollup = %+v, want Rss 2104 Pss 632", s)
	}
	// A zombie's file is empty; a garbled value is an error.
	for _, bad := range []string{"", "Rss: 12 kB\n", "Rss: 12 kB\nPss: x kB\n", "Rss: 12 MB\nPss: 1 kB\n"} {
		if _, err := parseSmapsRollup([]byte(bad)); err == nil {
			t.Errorf("parseSmapsRollup(%q): no error", bad)
		}
	}
}

func TestReadSmapsRollupSelf(t *testing.T) {
	s, err := ReadSmapsRollup("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.PSSKiB <= 0 || s.PSSKiB > s.RSSKiB {
		t.Errorf("ReadSmapsRollup(self) = %+v", s)
	}
}

// fakeProc writes a /proc-like tree: each process's status, cmdline and
// smaps_rollup (Rss = 2*pss).
type fakeProc struct {
	pid, ppid int
	name      string
	cmdline   []string
	pssKiB    int64
}

func writeFakeProc(t *testing.T, procs []fakeProc) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		status := "Name:\t" + p.name + "\nUmask:\t0022\nState:\tS (sleeping)\nPPid:\t" + strconv.Itoa(p.ppid) + "\n"
		cmdline := strings.Join(p.cmdline, "\x00") + "\x00"
		smaps := "0-1 ---p 00000000 00:00 0 [rollup]\nRss: " + strconv.FormatInt(2*p.pssKiB, 10) + " kB\nPss: " + strconv.FormatInt(p.pssKiB, 10) + " kB\n"
		for name, content := range map[string]string{"status": status, "cmdline": cmdline, "smaps_rollup": smaps} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Not processes: ignored.
	if err := os.WriteFile(filepath.Join(root, "meminfo"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "sys"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func conmonCmd(dir string) []string {
	return []string{"/usr/bin/conmon", "--api-version", "1", "-c", "abc", "-r", "/usr/sbin/runc", "-b", dir + "/agent/runtime/sandboxes/abc"}
}

// Two pods of node A (infra conmon + catatonit, container conmon + sleep
// each), one pod of node B, and unrelated processes.
var nodeProcs = []fakeProc{
	{1, 0, "init", []string{"/sbin/init"}, 1000},
	{10, 1, "peapod", []string{"/bin/peapod", "server", "--data-dir", "/data/a"}, 100000},
	{20, 1, "conmon", conmonCmd("/data/a"), 500},
	{21, 20, "catatonit", []string{"/catatonit", "-P"}, 100},
	{22, 1, "conmon", conmonCmd("/data/a"), 510},
	{23, 22, "sleep", []string{"sleep", "3600"}, 300},
	{30, 1, "conmon", conmonCmd("/data/a"), 490},
	{31, 30, "catatonit", []string{"/catatonit", "-P"}, 110},
	{32, 1, "conmon", conmonCmd("/data/a"), 500},
	{33, 32, "sleep", []string{"sleep", "3600"}, 310},
	{40, 1, "conmon", conmonCmd("/data/b"), 9999},
	{41, 40, "catatonit", []string{"/catatonit", "-P"}, 9999},
	// A process named conmon by its comm but not by its command line.
	{50, 1, "conmon", []string{"/usr/local/bin/other", "/data/a"}, 9999},
	// A kernel thread: no command line.
	{60, 2, "kworker/0:1", nil, 0},
}

func TestFindPodProcs(t *testing.T) {
	root := writeFakeProc(t, nodeProcs)
	procs, err := listProcs(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != len(nodeProcs) {
		t.Fatalf("listProcs found %d processes, want %d", len(procs), len(nodeProcs))
	}
	pp := findPodProcs(procs, "/data/a")
	for _, l := range [][]int{pp.Conmons, pp.Infras, pp.Workloads} {
		slices.Sort(l)
	}
	if !slices.Equal(pp.Conmons, []int{20, 22, 30, 32}) || !slices.Equal(pp.Infras, []int{21, 31}) || !slices.Equal(pp.Workloads, []int{23, 33}) {
		t.Errorf("findPodProcs(/data/a) = %+v", pp)
	}
	pb := findPodProcs(procs, "/data/b")
	if !slices.Equal(pb.Conmons, []int{40}) || !slices.Equal(pb.Infras, []int{41}) || len(pb.Workloads) != 0 {
		t.Errorf("findPodProcs(/data/b) = %+v", pb)
	}
}

func TestSampleNodeMemory(t *testing.T) {
	root := writeFakeProc(t, nodeProcs)
	m, err := sampleNodeMemory(root, "/data/a", 2)
	if err != nil {
		t.Fatal(err)
	}
	if m.Conmons != 4 || m.Infras != 2 || m.Workloads != 2 {
		t.Errorf("counts = %d conmons, %d infra, %d workloads", m.Conmons, m.Infras, m.Workloads)
	}
	if m.Conmon != (Smaps{RSSKiB: 4000, PSSKiB: 2000}) || m.Infra.PSSKiB != 210 || m.Workload.PSSKiB != 610 {
		t.Errorf("sums: conmon %+v infra %+v workload %+v", m.Conmon, m.Infra, m.Workload)
	}
	// Without an agent a pod costs its conmons and infra: (2000+210)/2.
	if got := m.PerPodKiB(); got != 1105 {
		t.Errorf("PerPodKiB = %v, want 1105", got)
	}
	// The agent's growth is shared out; a shrinking agent counts as 0.
	m.AgentIdle, m.Agent = ProcSample{PSSKiB: 50000}, ProcSample{PSSKiB: 50400}
	if got := m.PerPodKiB(); got != 1305 {
		t.Errorf("PerPodKiB with agent growth = %v, want 1305", got)
	}
	m.Agent.PSSKiB = 49000
	if got := m.AgentGrowthKiB(); got != 0 {
		t.Errorf("AgentGrowthKiB when the agent shrank = %d", got)
	}

	// A count that does not match the pods is an error, with the figures.
	m, err = sampleNodeMemory(root, "/data/a", 3)
	if err == nil || !strings.Contains(err.Error(), "found 4 conmons, 2 infra and 2 other") {
		t.Errorf("3 pods expected, 2 running: err = %v", err)
	}
	if m.Conmon.PSSKiB != 2000 {
		t.Errorf("figures not kept with the error: %+v", m)
	}
}

func TestSampleProcSelf(t *testing.T) {
	s, err := sampleProc("/proc", os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSSKiB <= 0 || s.PSSKiB <= 0 || s.HWMKiB < s.RSSKiB || s.AnonKiB <= 0 || s.FileKiB <= 0 || s.AnonKiB+s.FileKiB > s.RSSKiB {
		t.Errorf("sampleProc(self) = %+v", s)
	}
}
