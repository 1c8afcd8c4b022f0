// Package cgroups knows where a process's cgroups are and what the files in
// them should say, on the three layouts Linux hosts have: legacy (cgroup v1
// controllers, each mounted at /sys/fs/cgroup/<controller>), hybrid (the same
// plus a controller-less cgroup2 hierarchy at /sys/fs/cgroup/unified, as on
// the project's machines) and unified (pure cgroup v2 at /sys/fs/cgroup).
//
// The parsing and computing functions are pure (they take the text of
// /proc/self/mountinfo and /proc/self/cgroup), so both layouts are unit
// tested on any host; Host adds the few operations that touch the live
// hierarchy (make and remove directories, read OOM counters).
//
// # Nesting
//
// peapod never moves a process out of the cgroup it was started in: the
// runtime's containers live below it. An OCI runtime applies one cgroupsPath
// to every hierarchy (crun always; runc when the path is absolute), while a
// process may sit at different paths in different v1 hierarchies (here:
// memory:/process_api/ID and / everywhere else). Host.Base is therefore the
// deepest of the process's own paths, which lies under the process's cgroup
// in every hierarchy as long as those paths form a chain (they do on systemd
// and on these machines; Base fails otherwise). In hierarchies where the
// process's own cgroup is shallower, the runtime creates the missing
// directories between it and Base; Host.Remove prunes them when they empty.
//
// On pure cgroup v2 the "no internal processes" rule means controllers can
// only be delegated below a cgroup without processes: the agent must run in
// a leaf below its start cgroup (for example <own>/agent, still under its
// own cgroup) before making pod cgroups under <own>; that is the agent's job.
package cgroups

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// Mode is a host's cgroup layout.
type Mode int

const (
	// ModeNone: no cgroup hierarchy is mounted.
	ModeNone Mode = iota
	// ModeLegacy: only cgroup v1 hierarchies.
	ModeLegacy
	// ModeHybrid: cgroup v1 controllers plus a cgroup2 hierarchy (usually
	// without controllers, at /sys/fs/cgroup/unified).
	ModeHybrid
	// ModeUnified: only cgroup v2.
	ModeUnified
)

func (m Mode) String() string {
	switch m {
	case ModeLegacy:
		return "legacy"
	case ModeHybrid:
		return "hybrid"
	case ModeUnified:
		return "unified"
	}
	return "none"
}

// Hierarchy is one mounted cgroup hierarchy.
type Hierarchy struct {
	// Mountpoint is where it is mounted, Root the cgroup the mount shows
	// ("/" unless mounted from inside a cgroup namespace or a bind mount).
	Mountpoint string
	Root       string
	// V2 marks the cgroup2 hierarchy.
	V2 bool
	// Controllers are the v1 controllers it carries ("cpu", "cpuacct",
	// "name=systemd" for a named hierarchy); nil for v2.
	Controllers []string
}

// Layout is the set of cgroup hierarchies a host mounts.
type Layout struct {
	Mode        Mode
	Hierarchies []Hierarchy
}

// v1Controllers are the v1 controller names that appear in super options.
var v1Controllers = map[string]bool{
	"blkio": true, "cpu": true, "cpuacct": true, "cpuset": true, "devices": true,
	"freezer": true, "hugetlb": true, "memory": true, "misc": true, "net_cls": true,
	"net_prio": true, "perf_event": true, "pids": true, "rdma": true,
}

// ParseMountinfo extracts the cgroup hierarchies from the text of a
// /proc/PID/mountinfo. A hierarchy mounted twice is listed once (its first
// mount).
func ParseMountinfo(r io.Reader) (Layout, error) {
	var l Layout
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		pf, sf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(sf) < 3 {
			return Layout{}, fmt.Errorf("cgroups: malformed mountinfo line %q", line)
		}
		h := Hierarchy{Root: unescapeMountPath(pf[3]), Mountpoint: unescapeMountPath(pf[4])}
		switch sf[0] {
		case "cgroup2":
			h.V2 = true
		case "cgroup":
			for _, o := range strings.Split(sf[2], ",") {
				if v1Controllers[o] || strings.HasPrefix(o, "name=") {
					h.Controllers = append(h.Controllers, o)
				}
			}
			if len(h.Controllers) == 0 {
				continue
			}
			sort.Strings(h.Controllers)
		default:
			continue
		}
		key := "v2"
		if !h.V2 {
			key = strings.Join(h.Controllers, ",")
		}
		if seen[key] {
			continue
		}
		seen[key] = true
		l.Hierarchies = append(l.Hierarchies, h)
	}
	if err := sc.Err(); err != nil {
		return Layout{}, fmt.Errorf("cgroups: reading mountinfo: %w", err)
	}
	var v1, v2 bool
	for _, h := range l.Hierarchies {
		v1, v2 = v1 || !h.V2, v2 || h.V2
	}
	switch {
	case v1 && v2:
		l.Mode = ModeHybrid
	case v1:
		l.Mode = ModeLegacy
	case v2:
		l.Mode = ModeUnified
	}
	return l, nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Membership is a process's cgroups as /proc/PID/cgroup lists them: the path
// per v1 controller ("memory", "name=systemd") and, under the key "", the
// cgroup2 path.
type Membership map[string]string

// ParseProcCgroup parses the text of a /proc/PID/cgroup.
func ParseProcCgroup(r io.Reader) (Membership, error) {
	m := Membership{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroups: malformed /proc/PID/cgroup line %q", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			m[""] = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			m[c] = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("cgroups: reading /proc/PID/cgroup: %w", err)
	}
	return m, nil
}

// Host is a layout together with the cgroups of the process that uses it.
type Host struct {
	Layout Layout
	Own    Membership
}

// LoadHost reads this process's view: /proc/self/mountinfo and
// /proc/self/cgroup.
func LoadHost() (*Host, error) {
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	l, err := ParseMountinfo(bytes.NewReader(mi))
	if err != nil {
		return nil, err
	}
	pc, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups: %w", err)
	}
	own, err := ParseProcCgroup(bytes.NewReader(pc))
	if err != nil {
		return nil, err
	}
	return &Host{Layout: l, Own: own}, nil
}

// ownPath is the process's cgroup in hierarchy h.
func (h *Host) ownPath(hi Hierarchy) (string, bool) {
	if hi.V2 {
		p, ok := h.Own[""]
		return p, ok
	}
	p, ok := h.Own[hi.Controllers[0]]
	return p, ok
}

// isUnder reports whether p is anc or lies below it (both clean, absolute).
func isUnder(p, anc string) bool {
	return anc == "/" || p == anc || strings.HasPrefix(p, anc+"/")
}

// Base is the cgroup path under which the process may nest cgroups that a
// runtime creates with one path in every hierarchy: the deepest of its own
// paths. It fails when the own paths do not form a chain.
func (h *Host) Base() (string, error) {
	var paths []string
	for _, hi := range h.Layout.Hierarchies {
		if p, ok := h.ownPath(hi); ok {
			paths = append(paths, path.Clean(p))
		}
	}
	if len(paths) == 0 {
		return "", errors.New("cgroups: the process is in no mounted cgroup hierarchy")
	}
	base := paths[0]
	for _, p := range paths {
		if len(p) > len(base) {
			base = p
		}
	}
	for _, p := range paths {
		if !isUnder(base, p) {
			return "", fmt.Errorf("cgroups: the process's cgroups %q and %q are not nested, so no one cgroup path lies under both", p, base)
		}
	}
	return base, nil
}

// CheckUnder fails unless p is an absolute cgroup path under Base.
func (h *Host) CheckUnder(p string) error {
	base, err := h.Base()
	if err != nil {
		return err
	}
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("cgroups: %q is not a clean absolute cgroup path", p)
	}
	if !isUnder(p, base) {
		return fmt.Errorf("cgroups: %q is not under this process's cgroup %q", p, base)
	}
	return nil
}

// dirIn is the directory of cgroup p in hierarchy hi, if the mount shows it.
func dirIn(hi Hierarchy, p string) (string, bool) {
	root := path.Clean(hi.Root)
	if !isUnder(p, root) {
		return "", false
	}
	rel := strings.TrimPrefix(p, root)
	return filepath.Join(hi.Mountpoint, rel), true
}

// Dirs lists the directory of cgroup p in every hierarchy.
func (h *Host) Dirs(p string) []string {
	var out []string
	for _, hi := range h.Layout.Hierarchies {
		if d, ok := dirIn(hi, p); ok {
			out = append(out, d)
		}
	}
	return out
}

// Dir is the directory of cgroup p in the hierarchy that carries controller
// (a v1 controller name, or the v2 hierarchy on a unified host). On a hybrid
// host controllers live in v1; Dir("", p) names the cgroup2 directory.
func (h *Host) Dir(controller, p string) (string, bool) {
	for _, hi := range h.Layout.Hierarchies {
		if hi.V2 && (controller == "" || h.Layout.Mode == ModeUnified) {
			return dirIn(hi, p)
		}
		for _, c := range hi.Controllers {
			if c == controller {
				return dirIn(hi, p)
			}
		}
	}
	return "", false
}

// Existing lists the directories of cgroup p that exist.
func (h *Host) Existing(p string) []string {
	var out []string
	for _, d := range h.Dirs(p) {
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}

// Create makes cgroup p (and missing ancestors) in every hierarchy. In a v1
// cpuset hierarchy new directories inherit cpuset.cpus and cpuset.mems from
// their parent, without which no task could join them.
func (h *Host) Create(p string) error {
	if err := h.CheckUnder(p); err != nil {
		return err
	}
	for _, hi := range h.Layout.Hierarchies {
		d, ok := dirIn(hi, p)
		if !ok {
			continue
		}
		// Another user of the tree may prune an empty ancestor between two
		// of our mkdirs (see Remove): start over then.
		var err error
		for range 10 {
			if err = mkdirChain(hi, d); !errors.Is(err, os.ErrNotExist) {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// mkdirChain makes d and its missing ancestors in hierarchy hi.
func mkdirChain(hi Hierarchy, d string) error {
	var made []string
	for cur := d; cur != hi.Mountpoint && cur != "/"; cur = filepath.Dir(cur) {
		if _, err := os.Stat(cur); err == nil {
			break
		}
		made = append(made, cur)
	}
	for i := len(made) - 1; i >= 0; i-- {
		if err := os.Mkdir(made[i], 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("cgroups: %w", err)
		}
		if isCpuset(hi) {
			if err := inheritCpuset(made[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func isCpuset(hi Hierarchy) bool {
	for _, c := range hi.Controllers {
		if c == "cpuset" {
			return true
		}
	}
	return false
}

func inheritCpuset(dir string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		cur, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		if len(bytes.TrimSpace(cur)) != 0 {
			continue
		}
		parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
	}
	return nil
}

// Remove removes cgroup p from every hierarchy (a missing directory is not
// an error; one that still has processes or children is). It then prunes the
// directories a runtime made between the process's own cgroup and Base in
// hierarchies where the own cgroup is shallower than Base, when they are
// empty and p was directly under Base. Cgroups between Base and p belong to
// the caller and are left alone.
func (h *Host) Remove(p string) error {
	if err := h.CheckUnder(p); err != nil {
		return err
	}
	base, _ := h.Base()
	var errs []error
	for _, hi := range h.Layout.Hierarchies {
		d, ok := dirIn(hi, p)
		if !ok {
			continue
		}
		if err := rmdir(d); err != nil {
			errs = append(errs, err)
			continue
		}
		own, ok := h.ownPath(hi)
		if !ok {
			continue
		}
		own = path.Clean(own)
		for a := path.Dir(p); a != own && isUnder(a, own) && isUnder(base, a); a = path.Dir(a) {
			ad, ok := dirIn(hi, a)
			if !ok || syscall.Rmdir(ad) != nil {
				break // in use (or gone): someone else's from here up
			}
		}
	}
	return errors.Join(errs...)
}

// rmdir removes a cgroup directory; ENOENT is success. A cgroup whose last
// task just exited can be briefly busy, so EBUSY is retried a few times
// unless the cgroup has children (which is not going to pass).
func rmdir(d string) error {
	var err error
	for range 50 {
		err = syscall.Rmdir(d)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || hasSubdirs(d) {
			break
		}
		waitABit()
	}
	return fmt.Errorf("cgroups: removing %s: %w", d, err)
}

func hasSubdirs(d string) bool {
	ents, _ := os.ReadDir(d)
	for _, e := range ents {
		if e.IsDir() {
			return true
		}
	}
	return false
}
