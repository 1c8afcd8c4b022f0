package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// holderScript runs in a new mount namespace (unshare --mount) and becomes
// the process holding the namespaces podman runs in. Its arguments are
// pairs SOURCE TARGET of bind mounts: this process's own cgroups over their
// hierarchies' mount points, so that podman's cgroups (cgroupfs manager,
// "/libpod_parent/...") land below the benchmark's cgroups instead of at
// the roots. Then tmpfs over /run, /dev/shm and /var/lib (netns bind
// mounts, podman's lock file, CNI's IPAM leases: nothing of the machine's
// is written), and new cgroup and network namespaces: podman's bridge,
// firewall rules and forwarding sysctl live and die with the holder, and no
// pod can reach beyond it.
const holderScript = `set -e
while [ "$#" -ge 2 ]; do mount --bind "$1" "$2"; shift 2; done
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /var/lib
exec unshare --cgroup --net sh -c 'ip link set lo up 2>/dev/null || true; echo ready; exec sleep infinity'
`

// cgroupBinds returns the bind mounts (source, target pairs) that show the
// cgroups named in cgroupFile (/proc/self/cgroup) as the roots of their
// hierarchies, mounted as mountinfo (/proc/self/mountinfo) says. Hierarchies
// in which the process sits at the root need none.
func cgroupBinds(cgroupFile, mountinfo []byte) ([]string, error) {
	type mnt struct {
		root, point, fstype string
		opts                []string
	}
	var mounts []mnt
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 || (b[0] != "cgroup" && b[0] != "cgroup2") {
			continue
		}
		mounts = append(mounts, mnt{root: unescapeMountinfo(a[3]), point: unescapeMountinfo(a[4]), fstype: b[0], opts: strings.Split(b[2], ",")})
	}
	var out []string
	sc = bufio.NewScanner(bytes.NewReader(cgroupFile))
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), ":", 3)
		if len(f) != 3 {
			continue
		}
		ctrls, path := f[1], f[2]
		if path == "/" {
			continue
		}
		found := false
		for _, m := range mounts {
			if ctrls == "" {
				if m.fstype != "cgroup2" {
					continue
				}
			} else if m.fstype != "cgroup" || !containsAll(m.opts, strings.Split(ctrls, ",")) {
				continue
			}
			found = true
			rel, ok := strings.CutPrefix(path, strings.TrimSuffix(m.root, "/"))
			if !ok || (rel != "" && !strings.HasPrefix(rel, "/")) {
				return nil, fmt.Errorf("cgroup %s of %q is not under its mount's root %s (%s)", path, ctrls, m.root, m.point)
			}
			if rel == "" || rel == "/" {
				continue // the mount shows this cgroup as its root already
			}
			out = append(out, m.point+rel, m.point)
			break
		}
		if !found && ctrls != "" && !strings.HasPrefix(ctrls, "name=") {
			return nil, fmt.Errorf("no mount of cgroup hierarchy %q", ctrls)
		}
	}
	return out, nil
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

func unescapeMountinfo(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}

// podmanPeer is podman, run as the benchmark's peer in a directory and
// namespaces of its own (see holderScript): its storage, run and tmp
// directories, network configuration and containers.conf are all in dir,
// which is removed at the end.
type podmanPeer struct {
	bin    string
	dir    string
	holder *exec.Cmd
	// holderDone is closed when the holder exited.
	holderDone chan struct{}
	logf       func(string, ...any)

	events     *exec.Cmd
	eventsDone chan struct{}

	mu      sync.Mutex
	running map[string]time.Time
	gone    map[string]time.Time
	changed chan struct{}
	err     error
}

// startPodman prepares the peer: its directory, its namespaces, its
// containers.conf, the image loaded from archive, and an event stream.
func startPodman(ctx context.Context, bin, archive string, logf func(string, ...any)) (_ *podmanPeer, err error) {
	for _, tool := range []string{bin, "unshare", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("podman peer: %w", err)
		}
	}
	if archive, err = filepath.Abs(archive); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "peapod-bench-podman-")
	if err != nil {
		return nil, err
	}
	for _, hidden := range []string{"/run", "/dev/shm", "/var/lib"} {
		if dir == hidden || strings.HasPrefix(dir, hidden+"/") {
			_ = os.Remove(dir)
			return nil, fmt.Errorf("podman peer: temporary directory %s is under %s, which its namespace hides: set TMPDIR", dir, hidden)
		}
	}
	p := &podmanPeer{
		bin: bin, dir: dir, logf: logf,
		running: map[string]time.Time{}, gone: map[string]time.Time{}, changed: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			if cerr := p.close(); cerr != nil {
				logf("podman: cleaning up after a failed start: %v", cerr)
			}
		}
	}()
	for _, sub := range []string{"tmp", "yaml", "net"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(p.conf(), containersConf(), 0o600); err != nil {
		return nil, err
	}
	if err := p.startHolder(); err != nil {
		return nil, err
	}
	logf("podman: loading %s", archive)
	if out, err := p.command(ctx, "load", "-i", archive).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("podman load: %w: %s", err, bytes.TrimSpace(out))
	}
	if err := p.startEvents(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *podmanPeer) conf() string { return filepath.Join(p.dir, "containers.conf") }

// containersConf sets the containers' open files and processes limits to
// what this process may give (root without CAP_SYS_RESOURCE cannot raise a
// hard limit, and podman's defaults for root are far above the usual
// ones); RLIMIT_NPROC is kept below 32768, above which runc's setrlimit
// failed on the machines the benchmark was written on.
func containersConf() []byte {
	limit := func(res int, most uint64) uint64 {
		var rl unix.Rlimit
		if err := unix.Getrlimit(res, &rl); err != nil || rl.Max > most {
			return most
		}
		return rl.Max
	}
	nofile := limit(unix.RLIMIT_NOFILE, 1<<20)
	nproc := limit(unix.RLIMIT_NPROC, 32768)
	return fmt.Appendf(nil, "[containers]\ndefault_ulimits = [\"nofile=%d:%d\", \"nproc=%d:%d\"]\n", nofile, nofile, nproc, nproc)
}

// startHolder starts the process holding podman's namespaces and waits
// until it is ready.
func (p *podmanPeer) startHolder() error {
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return err
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	binds, err := cgroupBinds(cg, mi)
	if err != nil {
		return err
	}
	args := append([]string{"--mount", "--propagation", "private", "--", "sh", "-c", holderScript, "holder"}, binds...)
	cmd := exec.Command("unshare", args...)
	// Should the benchmark die, the holder goes too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("podman peer: start the namespace holder: %w", err)
	}
	p.holder = cmd
	p.holderDone = make(chan struct{})
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- strings.TrimSpace(line)
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = cmd.Wait()
		close(p.holderDone)
	}()
	select {
	case line := <-ready:
		if line == "ready" {
			return nil
		}
		<-p.holderDone
		return fmt.Errorf("podman peer: the namespace holder failed: %s", strings.TrimSpace(stderr.String()))
	case <-time.After(30 * time.Second):
		return errors.New("podman peer: the namespace holder was not ready after 30s")
	}
}

// command is podman with args, run in the holder's namespaces on the peer's
// own storage, with the cgroupfs manager and runc (peapod's default runtime).
func (p *podmanPeer) command(ctx context.Context, args ...string) *exec.Cmd {
	full := []string{
		"--target", strconv.Itoa(p.holder.Process.Pid), "--mount", "--cgroup", "--net", "--",
		"env", "CONTAINERS_CONF=" + p.conf(), "TMPDIR=" + filepath.Join(p.dir, "tmp"),
		p.bin,
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "run"),
		"--tmpdir", filepath.Join(p.dir, "libpod"),
		"--volumepath", filepath.Join(p.dir, "volumes"),
		"--network-config-dir", filepath.Join(p.dir, "net"),
		"--cgroup-manager", "cgroupfs",
		"--runtime", "runc",
		"--events-backend", "file",
		"--storage-driver", "overlay",
	}
	return exec.CommandContext(ctx, "nsenter", append(full, args...)...)
}

// run runs podman with args and returns its standard output.
func (p *podmanPeer) run(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := p.command(ctx, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// podmanEvent is the part of a `podman events --format json` line the
// benchmark reads.
type podmanEvent struct {
	Name   string    `json:"Name"`
	Status string    `json:"Status"`
	Type   string    `json:"Type"`
	Time   time.Time `json:"Time"`
}

// parsePodmanEvent returns the pod whose benchmark container an event line
// says started, and when podman recorded it.
func parsePodmanEvent(line []byte) (pod string, at time.Time, ok bool) {
	var ev podmanEvent
	if err := json.Unmarshal(line, &ev); err != nil {
		return "", time.Time{}, false
	}
	if ev.Type != "container" || ev.Status != "start" {
		return "", time.Time{}, false
	}
	// kube play names a pod's containers POD-CONTAINER.
	pod, ok = strings.CutSuffix(ev.Name, "-"+podContainer)
	if !ok {
		return "", time.Time{}, false
	}
	return pod, ev.Time, true
}

// startEvents follows podman's event log. Its file backend is polled, so an
// event arrives up to a quarter of a second late: the times used are the
// ones podman recorded in the events (when it had started the container),
// not their arrival.
func (p *podmanPeer) startEvents() error {
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	cmd := p.command(context.Background(), "events", "--format", "json", "--filter", "type=container", "--since", since)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("podman events: %w", err)
	}
	p.events = cmd
	p.eventsDone = make(chan struct{})
	go func() {
		defer close(p.eventsDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			pod, at, ok := parsePodmanEvent(sc.Bytes())
			if !ok {
				continue
			}
			p.mu.Lock()
			if _, seen := p.running[pod]; !seen {
				p.running[pod] = at
			}
			p.notifyLocked()
			p.mu.Unlock()
		}
		werr := cmd.Wait()
		p.mu.Lock()
		if p.err == nil {
			p.err = fmt.Errorf("podman events ended (%v): %s", werr, strings.TrimSpace(stderr.String()))
		}
		p.notifyLocked()
		p.mu.Unlock()
	}()
	return nil
}

func (p *podmanPeer) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// create plays the pod's manifest; `podman kube play` returns once the pod
// runs.
func (p *podmanPeer) create(ctx context.Context, name string) error {
	b, err := podYAML(name)
	if err != nil {
		return err
	}
	file := filepath.Join(p.dir, "yaml", name+".yaml")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		return err
	}
	_, err = p.run(ctx, "kube", "play", "--quiet", file)
	return err
}

// remove removes the pod, stopping it first; `podman pod rm -f` returns once
// it is gone.
func (p *podmanPeer) remove(ctx context.Context, name string) error {
	if _, err := p.run(ctx, "pod", "rm", "-f", name); err != nil {
		return err
	}
	p.mu.Lock()
	p.gone[name] = time.Now()
	p.notifyLocked()
	p.mu.Unlock()
	return nil
}

// waitFor waits for the pods' start events (Running; podman has no Ready,
// so Ready is Running) or returns when their removal returned (gone).
func (p *podmanPeer) waitFor(ctx context.Context, names []string, state podState) (map[string]time.Time, error) {
	for {
		p.mu.Lock()
		seen := p.running
		if state == stateGone {
			seen = p.gone
		}
		out, missing := splitSeen(names, seen)
		err, changed := p.err, p.changed
		p.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return out, fmt.Errorf("%d of %d pods not %s (first: %s): %w", len(missing), len(names), state, missing[0], ctx.Err())
		}
	}
}

// close removes everything podman made, with podman's own commands (pods,
// containers, images, networks, storage), then the cgroups it left, stops
// the holder (its namespaces go with it) and removes the directory.
func (p *podmanPeer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var errs []error
	if p.events != nil {
		_ = p.events.Process.Kill()
		<-p.eventsDone
	}
	if p.holder != nil {
		for _, args := range [][]string{{"pod", "rm", "--all", "--force"}, {"rm", "--all", "--force"}, {"system", "reset", "--force"}} {
			if _, err := p.run(ctx, args...); err != nil {
				errs = append(errs, err)
			}
		}
		errs = append(errs, p.removeCgroups())
		_ = p.holder.Process.Kill()
		<-p.holderDone
	}
	errs = append(errs, os.RemoveAll(p.dir))
	return errors.Join(errs...)
}

// removeCgroups removes the (empty) cgroups podman left under the
// benchmark's own, seen through the holder's mount namespace.
func (p *podmanPeer) removeCgroups() error {
	roots, err := filepath.Glob(fmt.Sprintf("/proc/%d/root/sys/fs/cgroup/*/libpod_parent", p.holder.Process.Pid))
	if err != nil {
		return err
	}
	more, _ := filepath.Glob(fmt.Sprintf("/proc/%d/root/sys/fs/cgroup/libpod_parent", p.holder.Process.Pid))
	var dirs []string
	for _, root := range append(roots, more...) {
		_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, d := range dirs {
		if err := os.Remove(d); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// runPodmanPods measures podman: the same pods through `podman kube play`.
func runPodmanPods(ctx context.Context, o PodsOptions, logf func(string, ...any)) (_ *PodsSystem, err error) {
	p, err := startPodman(ctx, o.Podman, o.Image, logf)
	if err != nil {
		return nil, err
	}
	defer func() {
		logf("podman: removing its pods, storage, cgroups and namespaces")
		if cerr := p.close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("podman cleanup: %w", cerr))
		}
	}()
	sys := &PodsSystem{
		Name: "podman",
		Notes: []string{
			"podman has no Ready: its Ready figures are its Running ones",
			"Running = the container's start event as podman recorded it; create = `podman kube play` (one process per pod, in parallel for a batch at once); delete = `podman pod rm -f` until it returns",
			"runc, cgroupfs, CNI bridge network (kube play's default), storage overlay on the same disk, in a network namespace of its own",
			"no resident agent: conmons and infra only",
		},
	}
	if v, err := p.run(ctx, "version", "--format", "{{.Client.Version}}"); err == nil {
		sys.Version = "podman " + strings.TrimSpace(v)
	}
	s := &scenario{o: o, d: p, hasReady: false, waitEach: false, logf: logf}
	sample := func(pods int) error {
		if pods == 0 {
			return nil
		}
		time.Sleep(o.Settle)
		return sampleSystem(sys, 0, p.dir, pods, logf)
	}
	return sys, s.run(ctx, sys, sample)
}
