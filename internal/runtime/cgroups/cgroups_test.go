package cgroups

import (
	"github.com/peapod-dev/peapod/internal/testutil"

	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// hybridMountinfo is the project machines' layout: v1 controllers, each in
// its own hierarchy, plus a controller-less cgroup2 at unified.
const hybridMountinfo = `22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const hybridProcCgroup = `9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/2e3d
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
`

// unifiedMountinfo is a systemd host on pure cgroup v2.
const unifiedMountinfo = `24 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

const unifiedProcCgroup = "0::/system.slice/peapod.service\n"

// legacyMountinfo co-mounts cpu and cpuacct and has a second mount of the
// memory hierarchy (listed once).
const legacyMountinfo = `25 20 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw
26 25 0:23 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
27 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
29 1 0:25 / /mnt/memory\040copy rw - cgroup cgroup rw,memory
`

const legacyProcCgroup = `3:memory:/system.slice/peapod.service
2:cpu,cpuacct:/system.slice
1:name=systemd:/system.slice/peapod.service
`

func host(t *testing.T, mountinfo, proc string) *Host {
	t.Helper()
	l, err := ParseMountinfo(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	own, err := ParseProcCgroup(strings.NewReader(proc))
	if err != nil {
		t.Fatal(err)
	}
	return &Host{Layout: l, Own: own}
}

func TestHybridLayout(t *testing.T) {
	h := host(t, hybridMountinfo, hybridProcCgroup)
	if h.Layout.Mode != ModeHybrid || len(h.Layout.Hierarchies) != 10 {
		t.Fatalf("layout = %v with %d hierarchies, want hybrid with 10", h.Layout.Mode, len(h.Layout.Hierarchies))
	}
	base, err := h.Base()
	if err != nil || base != "/process_api/2e3d" {
		t.Fatalf("Base = %q, %v; want /process_api/2e3d", base, err)
	}
	p := "/process_api/2e3d/pod1/c1"
	for ctrl, want := range map[string]string{
		"cpu":          "/sys/fs/cgroup/cpu/process_api/2e3d/pod1/c1",
		"memory":       "/sys/fs/cgroup/memory/process_api/2e3d/pod1/c1",
		"name=systemd": "/sys/fs/cgroup/systemd/process_api/2e3d/pod1/c1",
		"":             "/sys/fs/cgroup/unified/process_api/2e3d/pod1/c1",
	} {
		if got, ok := h.Dir(ctrl, p); !ok || got != want {
			t.Errorf("Dir(%q) = %q, %v; want %q", ctrl, got, ok, want)
		}
	}
	if got := h.Dirs(p); len(got) != 10 {
		t.Errorf("Dirs = %v, want 10 directories", got)
	}
	if err := h.CheckUnder("/process_api/2e3d/pod1"); err != nil {
		t.Errorf("CheckUnder(pod1): %v", err)
	}
	for _, bad := range []string{"/process_api/other", "/", "relative/pod", "/process_api/2e3d/../x", "/process_api/2e3dX"} {
		if err := h.CheckUnder(bad); err == nil {
			t.Errorf("CheckUnder(%q) accepted a path outside the process's cgroup", bad)
		}
	}
	r := Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, PidsLimit: 100}
	want := []File{
		{"cpu", "cpu.shares", "512"}, {"cpu", "cpu.cfs_period_us", "100000"}, {"cpu", "cpu.cfs_quota_us", "50000"},
		{"memory", "memory.limit_in_bytes", "67108864"}, {"pids", "pids.max", "100"},
	}
	if got := h.Files(r); !reflect.DeepEqual(got, want) {
		t.Errorf("Files = %v, want %v", got, want)
	}
	if fp, ok := h.FilePath(want[2], p); !ok || fp != "/sys/fs/cgroup/cpu/process_api/2e3d/pod1/c1/cpu.cfs_quota_us" {
		t.Errorf("FilePath = %q, %v", fp, ok)
	}
}

func TestUnifiedLayout(t *testing.T) {
	h := host(t, unifiedMountinfo, unifiedProcCgroup)
	if h.Layout.Mode != ModeUnified || len(h.Layout.Hierarchies) != 1 {
		t.Fatalf("layout = %+v, want unified with one hierarchy", h.Layout)
	}
	base, err := h.Base()
	if err != nil || base != "/system.slice/peapod.service" {
		t.Fatalf("Base = %q, %v", base, err)
	}
	p := base + "/pods/c1"
	for _, ctrl := range []string{"cpu", "memory", "pids", ""} {
		if got, ok := h.Dir(ctrl, p); !ok || got != "/sys/fs/cgroup/system.slice/peapod.service/pods/c1" {
			t.Errorf("Dir(%q) = %q, %v", ctrl, got, ok)
		}
	}
	r := Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, PidsLimit: 100}
	want := []File{
		{"cpu", "cpu.weight", "20"}, {"cpu", "cpu.max", "50000 100000"},
		{"memory", "memory.max", "67108864"}, {"pids", "pids.max", "100"},
	}
	if got := h.Files(r); !reflect.DeepEqual(got, want) {
		t.Errorf("Files = %v, want %v", got, want)
	}
	if got := V2Files(Resources{CPUPeriod: 50000}); !reflect.DeepEqual(got, []File{{"cpu", "cpu.max", "max 50000"}}) {
		t.Errorf("period without quota = %v", got)
	}
}

func TestLegacyLayout(t *testing.T) {
	h := host(t, legacyMountinfo, legacyProcCgroup)
	if h.Layout.Mode != ModeLegacy || len(h.Layout.Hierarchies) != 3 {
		t.Fatalf("layout = %+v, want legacy with 3 hierarchies", h.Layout)
	}
	if got := h.Layout.Hierarchies[1].Controllers; !reflect.DeepEqual(got, []string{"cpu", "cpuacct"}) {
		t.Errorf("co-mounted controllers = %v", got)
	}
	base, err := h.Base()
	if err != nil || base != "/system.slice/peapod.service" {
		t.Fatalf("Base = %q, %v", base, err)
	}
	if d, ok := h.Dir("cpuacct", base+"/x"); !ok || d != "/sys/fs/cgroup/cpu,cpuacct/system.slice/peapod.service/x" {
		t.Errorf("Dir(cpuacct) = %q, %v", d, ok)
	}
	if _, ok := h.Dir("", base); ok {
		t.Errorf("a legacy host has no cgroup2 directory")
	}
	// Own cgroups that do not nest leave no single path under all of them.
	h2 := host(t, legacyMountinfo, "3:memory:/a\n2:cpu,cpuacct:/b\n1:name=systemd:/a\n")
	if _, err := h2.Base(); err == nil {
		t.Errorf("Base accepted non-nested own cgroups")
	}
}

func TestMountRootAndEscapes(t *testing.T) {
	// Inside a cgroup namespace the mount shows a subtree.
	mi := `30 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw` + "\n" +
		`31 23 0:27 / /mnt/with\040space rw - cgroup cgroup rw,pids` + "\n"
	l, err := ParseMountinfo(strings.NewReader(mi))
	if err != nil {
		t.Fatal(err)
	}
	if l.Mode != ModeHybrid || l.Hierarchies[1].Mountpoint != "/mnt/with space" {
		t.Fatalf("layout = %+v", l)
	}
	if d, ok := dirIn(l.Hierarchies[0], "/kubepods/pod1/c"); !ok || d != "/sys/fs/cgroup/c" {
		t.Errorf("dirIn = %q, %v", d, ok)
	}
	if _, ok := dirIn(l.Hierarchies[0], "/other"); ok {
		t.Errorf("dirIn showed a cgroup outside the mount's root")
	}
}

func TestSharesToWeight(t *testing.T) {
	for shares, want := range map[uint64]uint64{0: 0, 1: 1, 2: 1, 1024: 39, 262144: 10000, 1 << 30: 10000} {
		if got := SharesToWeight(shares); got != want {
			t.Errorf("SharesToWeight(%d) = %d, want %d", shares, got, want)
		}
	}
}

func TestParseKeyed(t *testing.T) {
	oomControl := "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
	if n, ok, err := ParseKeyed(strings.NewReader(oomControl), "oom_kill"); n != 3 || !ok || err != nil {
		t.Errorf("oom_control: %d %v %v", n, ok, err)
	}
	events := "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"
	if n, ok, err := ParseKeyed(strings.NewReader(events), "oom_kill"); n != 1 || !ok || err != nil {
		t.Errorf("memory.events: %d %v %v", n, ok, err)
	}
	if _, ok, _ := ParseKeyed(strings.NewReader("oom_kill_disable 0\nunder_oom 0\n"), "oom_kill"); ok {
		t.Errorf("found a missing key")
	}
	if !(OOM{Kills: 1, KillsKnown: true}).OOMKilled(0) || (OOM{KillsKnown: true, LimitHits: 5}).OOMKilled(137) {
		t.Errorf("OOMKilled must follow the kill counter when the kernel has one")
	}
	if !(OOM{LimitHits: 5}).OOMKilled(137) || (OOM{LimitHits: 5}).OOMKilled(1) {
		t.Errorf("without a kill counter, a SIGKILL after hitting the limit is an OOM kill")
	}
}

// TestLiveCreateRemove makes and removes a cgroup under this process's own
// on the machine's real layout and checks that nothing is left, including
// the directories between the own cgroup and Base in other hierarchies.
func TestLiveCreateRemove(t *testing.T) {
	testutil.RequireRoot(t)
	h, err := LoadHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.Layout.Mode == ModeNone {
		t.Fatal("no cgroup hierarchy mounted")
	}
	base, err := h.Base()
	if err != nil {
		t.Fatal(err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := base + "/peapod-cgtest-" + hex.EncodeToString(b[:])
	t.Cleanup(func() { _ = h.Remove(p + "/child"); _ = h.Remove(p) })
	if err := h.Create(p + "/child"); err != nil {
		t.Fatal(err)
	}
	if got := h.Existing(p + "/child"); len(got) != len(h.Layout.Hierarchies) {
		t.Fatalf("created in %v, want all %d hierarchies", got, len(h.Layout.Hierarchies))
	}
	if d, ok := h.Dir("cpuset", p+"/child"); ok {
		cpus, err := os.ReadFile(filepath.Join(d, "cpuset.cpus"))
		if err != nil || strings.TrimSpace(string(cpus)) == "" {
			t.Errorf("cpuset.cpus of a new cgroup = %q, %v; want the parent's", cpus, err)
		}
	}
	if err := h.Remove(p); err == nil {
		t.Errorf("removing a cgroup with a child succeeded")
	}
	if err := h.Remove(p + "/child"); err != nil {
		t.Fatal(err)
	}
	if err := h.Remove(p); err != nil {
		t.Fatal(err)
	}
	if got := h.Existing(p); len(got) != 0 {
		t.Errorf("left behind: %v", got)
	}
	// (Pruning of the directories between the own cgroups and Base is
	// checked on a fake tree below: here other tests may be using them.)
}

// fakeTree makes a layout whose hierarchies are plain directories (mkdir
// and rmdir behave alike there, except that a non-empty directory is
// ENOTEMPTY rather than EBUSY).
func fakeTree(t *testing.T, mountinfo string) (*Layout, string) {
	t.Helper()
	root := t.TempDir()
	l, err := ParseMountinfo(strings.NewReader(strings.ReplaceAll(mountinfo, " /sys/fs/cgroup", " "+root)))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range l.Hierarchies {
		if err := os.MkdirAll(h.Mountpoint, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &l, root
}

func TestCreateRemoveTree(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, proc string
		pruned                string // a directory that Remove must prune
	}{
		{"hybrid", hybridMountinfo, hybridProcCgroup, "cpu/process_api"},
		{"unified", unifiedMountinfo, unifiedProcCgroup, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, root := fakeTree(t, tc.mountinfo)
			own, _ := ParseProcCgroup(strings.NewReader(tc.proc))
			h := &Host{Layout: *l, Own: own}
			base, _ := h.Base()
			pod, ctr := base+"/kubepods/pod1", base+"/kubepods/pod1/c1"
			if err := h.Create(pod); err != nil {
				t.Fatal(err)
			}
			if err := h.Create(ctr); err != nil {
				t.Fatal(err)
			}
			if got := h.Existing(ctr); len(got) != len(l.Hierarchies) {
				t.Fatalf("created %v", got)
			}
			if err := h.Remove(pod); err == nil {
				t.Errorf("removed a cgroup that has a child")
			}
			if err := h.Remove(ctr); err != nil {
				t.Fatal(err)
			}
			// The caller's cgroups between Base and the container stay.
			if got := h.Existing(pod); len(got) != len(l.Hierarchies) {
				t.Errorf("removing the container took its parent: %v", got)
			}
			if err := h.Remove(pod); err != nil {
				t.Fatal(err)
			}
			if err := h.Remove(base + "/kubepods"); err != nil {
				t.Fatal(err)
			}
			if tc.pruned != "" {
				if _, err := os.Stat(filepath.Join(root, tc.pruned)); err == nil {
					t.Errorf("%s was made for Base and not pruned", tc.pruned)
				}
			}
			// The process's own cgroups are never removed.
			if d, ok := h.Dir("memory", base); ok {
				if _, err := os.Stat(d); err != nil {
					t.Errorf("the process's own cgroup %s was removed", d)
				}
			}
			if err := h.Remove(base + "/kubepods"); err != nil {
				t.Errorf("removing a removed cgroup: %v", err)
			}
		})
	}
}
