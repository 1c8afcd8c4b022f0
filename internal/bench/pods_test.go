package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"
)

func TestSpans(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	starts := map[string]time.Time{"a": ms(0), "b": ms(10), "c": ms(20), "d": ms(5)}
	ends := map[string]time.Time{"a": ms(300), "b": ms(110), "c": ms(2020)}
	lat, wall := spans(starts, ends)
	// d never ended: left out. Sorted latencies; wall from a's start to c's end.
	want := []time.Duration{100 * time.Millisecond, 300 * time.Millisecond, 2000 * time.Millisecond}
	if !slices.Equal(lat, want) || wall != 2020*time.Millisecond {
		t.Errorf("spans = %v, %v; want %v, 2.02s", lat, wall, want)
	}
	// An end before its start (clocks of two processes) counts as 0.
	lat, _ = spans(map[string]time.Time{"a": ms(10)}, map[string]time.Time{"a": ms(9)})
	if !slices.Equal(lat, []time.Duration{0}) {
		t.Errorf("negative span = %v", lat)
	}
	if lat, wall := spans(nil, ends); len(lat) != 0 || wall != 0 {
		t.Errorf("no starts: %v, %v", lat, wall)
	}
}

func TestPodYAML(t *testing.T) {
	b, err := podYAML("seq-007")
	if err != nil {
		t.Fatal(err)
	}
	var got corev1.Pod
	if err := yaml.UnmarshalStrict(b, &got); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for _, want := range []string{"apiVersion: v1", "kind: Pod", "name: seq-007", "image: busybox:1.36", "imagePullPolicy: IfNotPresent", "shareProcessNamespace: true"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("manifest lacks %q:\n%s", want, b)
		}
	}
	c := got.Spec.Containers
	if len(c) != 1 || c[0].Name != podContainer || !slices.Equal(c[0].Command, []string{"sleep", "3600"}) ||
		c[0].ReadinessProbe != nil || got.Labels[labelApp] != podsApp {
		t.Errorf("pod from manifest = %+v", got)
	}
}

func TestParsePodmanEvent(t *testing.T) {
	for _, tc := range []struct {
		line string
		pod  string
		ok   bool
	}{
		{`{"ID":"797e","Image":"localhost/busybox:1.36","Name":"seq-001-sleep","Status":"start","Time":"2026-11-23T06:27:01.257305424Z","Type":"container","PodID":"178a","Attributes":{}}`, "seq-001", true},
		// The infra container, other events, other types, garbage.
		{`{"Name":"178a23226714-infra","Status":"start","Time":"2026-11-23T06:27:01.096038151Z","Type":"container"}`, "", false},
		{`{"Name":"seq-001-sleep","Status":"init","Time":"2026-11-23T06:27:01.243863608Z","Type":"container"}`, "", false},
		{`{"Name":"seq-001","Status":"start","Time":"2026-11-23T06:27:01.243863608Z","Type":"pod"}`, "", false},
		{`not json`, "", false},
	} {
		pod, at, ok := parsePodmanEvent([]byte(tc.line))
		if pod != tc.pod || ok != tc.ok {
			t.Errorf("parsePodmanEvent(%s) = %q, %v; want %q, %v", tc.line, pod, ok, tc.pod, tc.ok)
		}
		if ok && !at.Equal(time.Date(2026, 11, 23, 6, 27, 1, 257305424, time.UTC)) {
			t.Errorf("event time %v", at)
		}
	}
}

func TestCgroupBinds(t *testing.T) {
	// A hybrid host (v1 controllers and a cgroup2 mount) on which the
	// process sits below the root in the memory hierarchy only.
	hybridCgroup := `9:name=systemd:/
8:pids:/
4:memory:/process_api/dd31
3:cpuset:/
1:cpu,cpuacct:/
0::/
`
	hybridMounts := `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
	got, err := cgroupBinds([]byte(hybridCgroup), []byte(hybridMounts))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/sys/fs/cgroup/memory/process_api/dd31", "/sys/fs/cgroup/memory"}; !slices.Equal(got, want) {
		t.Errorf("hybrid: %q, want %q", got, want)
	}

	// A unified host, the process in a systemd scope.
	got, err = cgroupBinds([]byte("0::/user.slice/session-1.scope\n"),
		[]byte("30 23 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/sys/fs/cgroup/user.slice/session-1.scope", "/sys/fs/cgroup"}; !slices.Equal(got, want) {
		t.Errorf("unified: %q, want %q", got, want)
	}

	// A mount whose root is the process's cgroup already (a container's
	// view), and one whose root is above it.
	got, err = cgroupBinds([]byte("4:memory:/a/b\n5:pids:/a/b/c\n"),
		[]byte("35 31 0:32 /a/b /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n36 31 0:33 /a/b /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/sys/fs/cgroup/pids/c", "/sys/fs/cgroup/pids"}; !slices.Equal(got, want) {
		t.Errorf("rooted mounts: %q, want %q", got, want)
	}

	// A controller without a mount, or a cgroup outside its mount: errors.
	if _, err := cgroupBinds([]byte("4:memory:/a\n"), []byte(hybridMounts[:strings.Index(hybridMounts, "35 31")])); err == nil {
		t.Error("memory not mounted: no error")
	}
	if _, err := cgroupBinds([]byte("4:memory:/x\n"), []byte("35 31 0:32 /a/b /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")); err == nil {
		t.Error("cgroup outside its mount: no error")
	}
}

func podWithStatus(name string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	p := nodePod(name)
	p.Spec.NodeName = "n1"
	p.Status.Phase = phase
	status := corev1.ConditionFalse
	if ready {
		status = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	return p
}

func TestPodTracker(t *testing.T) {
	tr := newPodTracker()
	t0 := time.Unix(2000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	waiting := podWithStatus("a", corev1.PodPending, false)
	waiting.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "sleep", State: corev1.ContainerState{
		Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}
	tr.observe(watch.Event{Type: watch.Added, Object: waiting}, at(0))
	tr.observe(watch.Event{Type: watch.Modified, Object: podWithStatus("a", corev1.PodRunning, false)}, at(100))
	tr.observe(watch.Event{Type: watch.Modified, Object: podWithStatus("a", corev1.PodRunning, true)}, at(150))
	// Later events do not move the first times.
	tr.observe(watch.Event{Type: watch.Modified, Object: podWithStatus("a", corev1.PodRunning, true)}, at(900))
	tr.observe(watch.Event{Type: watch.Bookmark, Object: &metav1.PartialObjectMetadata{}}, at(950))

	ctx := context.Background()
	for state, want := range map[podState]time.Time{stateRunning: at(100), stateReady: at(150)} {
		got, err := tr.waitFor(ctx, []string{"a"}, state)
		if err != nil || !got["a"].Equal(want) {
			t.Errorf("waitFor(a, %s) = %v, %v; want %v", state, got, err, want)
		}
	}

	// A waiter is woken by the event it waits for.
	done := make(chan error, 1)
	go func() {
		got, err := tr.waitFor(ctx, []string{"a", "b"}, stateGone)
		if err == nil && (!got["a"].Equal(at(2000)) || !got["b"].Equal(at(2100))) {
			err = fmt.Errorf("times %v", got)
		}
		done <- err
	}()
	tr.observe(watch.Event{Type: watch.Deleted, Object: podWithStatus("a", corev1.PodRunning, false)}, at(2000))
	tr.observe(watch.Event{Type: watch.Deleted, Object: podWithStatus("b", corev1.PodRunning, false)}, at(2100))
	if err := <-done; err != nil {
		t.Error(err)
	}

	// A timeout names the pods that did not get there, and where they were.
	tr.observe(watch.Event{Type: watch.Added, Object: waiting.DeepCopy()}, at(3000))
	c := waiting.DeepCopy()
	c.Name = "c"
	tr.observe(watch.Event{Type: watch.Added, Object: c}, at(3000))
	tctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := tr.waitFor(tctx, []string{"c", "d"}, stateRunning)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "2 of 2 pods not Running") ||
		!strings.Contains(err.Error(), "c: Pending, sleep waiting: ContainerCreating") || !strings.Contains(err.Error(), "d: never seen") {
		t.Errorf("timeout error = %v", err)
	}

	// A failed watch ends every wait.
	tr.fail(errors.New("watch ended"))
	if _, err := tr.waitFor(ctx, []string{"x"}, stateRunning); err == nil || err.Error() != "watch ended" {
		t.Errorf("after the watch failed: %v", err)
	}
}

// fakeDriver runs pods in memory: a pod runs runDelay after its create,
// is Ready readyDelay later, and is gone goneDelay after its delete.
type fakeDriver struct {
	runDelay, readyDelay, goneDelay time.Duration
	failCreate                      string

	mu      sync.Mutex
	seen    [numStates]map[string]time.Time
	changed chan struct{}
	creates []string
	removes []string
}

func newFakeDriver() *fakeDriver {
	d := &fakeDriver{changed: make(chan struct{}), runDelay: 3 * time.Millisecond, readyDelay: time.Millisecond, goneDelay: 2 * time.Millisecond}
	for i := range d.seen {
		d.seen[i] = map[string]time.Time{}
	}
	return d
}

func (d *fakeDriver) set(s podState, name string, at time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.seen[s][name] = at
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *fakeDriver) create(_ context.Context, name string) error {
	if name == d.failCreate {
		return errors.New("no room")
	}
	d.mu.Lock()
	d.creates = append(d.creates, name)
	d.mu.Unlock()
	now := time.Now()
	time.AfterFunc(d.runDelay, func() { d.set(stateRunning, name, now.Add(d.runDelay)) })
	time.AfterFunc(d.runDelay+d.readyDelay, func() { d.set(stateReady, name, now.Add(d.runDelay+d.readyDelay)) })
	return nil
}

func (d *fakeDriver) remove(_ context.Context, name string) error {
	d.mu.Lock()
	d.removes = append(d.removes, name)
	d.mu.Unlock()
	now := time.Now()
	time.AfterFunc(d.goneDelay, func() { d.set(stateGone, name, now.Add(d.goneDelay)) })
	return nil
}

func (d *fakeDriver) waitFor(ctx context.Context, names []string, s podState) (map[string]time.Time, error) {
	for {
		d.mu.Lock()
		out := map[string]time.Time{}
		for _, n := range names {
			if at, ok := d.seen[s][n]; ok {
				out[n] = at
			}
		}
		changed := d.changed
		d.mu.Unlock()
		if len(out) == len(names) {
			return out, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
}

func TestScenarioRun(t *testing.T) {
	d := newFakeDriver()
	o := DefaultPodsOptions()
	o.Count, o.AtOnce, o.DeleteCount = 5, []int{4, 2}, 3
	s := &scenario{o: o, d: d, hasReady: true, waitEach: true, logf: t.Logf}
	sys := &PodsSystem{Name: "fake", HasReady: true}
	var samples []int
	err := s.run(context.Background(), sys, func(pods int) error {
		d.mu.Lock()
		running := 0
		for n := range d.seen[stateRunning] {
			if _, gone := d.seen[stateGone][n]; !gone {
				running++
			}
		}
		d.mu.Unlock()
		if running != pods {
			return fmt.Errorf("sampled with %d pods running, told %d", running, pods)
		}
		samples = append(samples, pods)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(samples, []int{0, 5}) {
		t.Errorf("memory sampled with %v pods, want 0 then 5", samples)
	}
	wantCreates := []string{"warmup", "seq-000", "seq-001", "seq-002", "seq-003", "seq-004"}
	if !slices.Equal(d.creates[:6], wantCreates) || len(d.creates) != 6+4+2 || len(d.removes) != 6+4+2 {
		t.Errorf("creates %v, removes %v", d.creates, d.removes)
	}
	b := sys.OneAtATime
	if b.Pods != 5 || b.AtOnce || b.Running.Samples != 5 || b.Ready.Samples != 5 || b.Delete.Samples != 3 || b.Request.Samples != 5 {
		t.Errorf("one at a time: %+v", b)
	}
	// Each pod's own latency is the fake's delays.
	if b.Running.P50Ms < 3 || b.Ready.P50Ms < 4 || b.Delete.P50Ms < 2 {
		t.Errorf("one at a time latencies: running %+v ready %+v delete %+v", b.Running, b.Ready, b.Delete)
	}
	// One after another, the whole batch takes at least 5 pods' time.
	if b.AllRunningSeconds < 0.015 {
		t.Errorf("one at a time all Running after %.3fs", b.AllRunningSeconds)
	}
	if len(sys.AtOnce) != 2 || sys.AtOnce[0].Pods != 4 || !sys.AtOnce[0].AtOnce || sys.AtOnce[1].Pods != 2 {
		t.Fatalf("at once: %+v", sys.AtOnce)
	}
	for _, a := range sys.AtOnce {
		if a.Running.Samples != a.Pods || a.Delete.Samples != a.Pods || a.AllRunningSeconds <= 0 || a.AllReadySeconds < a.AllRunningSeconds || a.AllDeletedSeconds <= 0 {
			t.Errorf("at once batch: %+v", a)
		}
	}

	// A failing create stops the run with the pod named.
	d2 := newFakeDriver()
	d2.failCreate = "seq-002"
	s2 := &scenario{o: o, d: d2, hasReady: false, waitEach: false, logf: t.Logf}
	err = s2.run(context.Background(), &PodsSystem{Name: "fake2"}, nil)
	if err == nil || !strings.Contains(err.Error(), "pod 3 of 5: no room") {
		t.Errorf("failing create: %v", err)
	}
}

func TestPodsResultWriteText(t *testing.T) {
	lat := func(p50, p99 float64) Latency { return Latency{Samples: 100, P50Ms: p50, P99Ms: p99} }
	r := &PodsResult{
		Count: 100, DeleteCount: 30, AtOnce: []int{30, 100},
		Pod: "busybox",
		Systems: []*PodsSystem{
			{
				Name: "peapod", Version: "v1.32.13+peapod", HasReady: true, Agent: "server",
				OneAtATime: PodsBatch{Pods: 100, Running: lat(150, 600), Ready: lat(160, 610), Delete: lat(200, 300)},
				AtOnce: []PodsBatch{
					{Pods: 30, AtOnce: true, Running: lat(900, 1500), Ready: lat(910, 1510), Delete: lat(500, 900), AllRunningSeconds: 1.5, AllReadySeconds: 1.6, AllDeletedSeconds: 1},
					{Pods: 100, AtOnce: true, Running: lat(4000, 9000), AllRunningSeconds: 9.1},
				},
				Memory: NodeMemory{
					Pods: 100, Conmon: Smaps{PSSKiB: 100 * 1000}, Infra: Smaps{PSSKiB: 100 * 150}, Workload: Smaps{PSSKiB: 100 * 300},
					AgentIdle: ProcSample{RSSKiB: 50000, PSSKiB: 40000}, Agent: ProcSample{RSSKiB: 55000, AnonKiB: 20000, FileKiB: 35000, PSSKiB: 45000},
				},
			},
			{
				Name: "podman", Version: "podman 4.3.1",
				OneAtATime: PodsBatch{Pods: 100, Running: lat(450, 700), Delete: lat(3600, 4100)},
				Memory:     NodeMemory{Pods: 100, Conmon: Smaps{PSSKiB: 100 * 1050}, Infra: Smaps{PSSKiB: 100 * 260}},
				Notes:      []string{"podman has no Ready"},
			},
		},
		Errors: map[string]string{"other": "it broke"},
	}
	var b bytes.Buffer
	if err := r.WriteText(&b, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	// (100000+15000+5000)/100 KiB = 1200 KiB = 1.23 MB; agent 55000 KiB = 56.3 MB.
	for _, want := range []string{
		"150 ms (met)", "600 ms (NOT met)", "  450 ms\n", "= Running",
		"1.50 s (met)", "9.10 s (NOT met)", "20.5 / 35.8 MB", "1.23 MB (met)", "56.3 MB (met)", "no agent",
		"podman: podman has no Ready", "other: FAILED: it broke", "delete→gone p50, one at a time (30 pods)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	if err := r.WriteText(&b, true); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	if !strings.HasPrefix(md, "| metric | target (peapod) | peapod | podman |\n| --- | --- | ---: | ---: |\n") ||
		!strings.Contains(md, "| ↳ conmon PSS per pod") {
		t.Errorf("markdown report:\n%s", md)
	}
}

func TestMedianPodsResults(t *testing.T) {
	round := func(p50 float64, allRunning float64, conmonKiB int64, load string) *PodsResult {
		return &PodsResult{
			Count: 100, DeleteCount: 30, AtOnce: []int{30}, LoadEnd: load,
			Systems: []*PodsSystem{{
				Name: "peapod", HasReady: true, Version: "v1",
				OneAtATime: PodsBatch{Pods: 100, Running: Latency{Samples: 100, P50Ms: p50}},
				AtOnce:     []PodsBatch{{Pods: 30, AtOnce: true, AllRunningSeconds: allRunning}},
				Memory:     NodeMemory{Pods: 100, Conmon: Smaps{PSSKiB: conmonKiB}},
			}},
		}
	}
	m, err := MedianPodsResults([]*PodsResult{round(300, 3, 1000, "a"), round(100, 9, 1001, "b"), round(200, 1, 5000, "c")})
	if err != nil {
		t.Fatal(err)
	}
	s := m.Systems[0]
	if m.Rounds != 3 || m.Count != 100 || m.LoadEnd != "c" || s.Name != "peapod" || !s.HasReady ||
		s.OneAtATime.Running.P50Ms != 200 || s.OneAtATime.Running.Samples != 100 ||
		s.AtOnce[0].AllRunningSeconds != 3 || s.Memory.Conmon.PSSKiB != 1001 {
		t.Errorf("median of 3 rounds = %+v, system %+v", m, s)
	}
	// Two rounds: the mean of the two; integers stay integers.
	m, err = MedianPodsResults([]*PodsResult{round(300, 3, 1000, "a"), round(100, 9, 1001, "b")})
	if err != nil {
		t.Fatal(err)
	}
	if s := m.Systems[0]; s.OneAtATime.Running.P50Ms != 200 || s.AtOnce[0].AllRunningSeconds != 6 || s.Memory.Conmon.PSSKiB != 1001 {
		t.Errorf("median of 2 rounds: %+v", s)
	}
	other := round(1, 1, 1, "x")
	other.Systems[0].Name = "podman"
	if _, err := MedianPodsResults([]*PodsResult{round(1, 1, 1, "a"), other}); err == nil {
		t.Error("rounds of different systems: no error")
	}
}
