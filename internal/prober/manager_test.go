package prober

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"

	"github.com/peapod-dev/peapod/internal/testutil"
)

const period = 10 * time.Second

func TestLivenessFailureKillsOnceAndResetsOnRestart(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) {
		p.TerminationGracePeriodSeconds = ptr.To[int64](5)
	})})
	h.ex.set("live", execResult{code: 1, out: "boom"})
	h.run(pod, map[string]string{"c": "id1"})

	if got := h.ex.count("id1", "live"); got != 1 {
		t.Fatalf("first run: %d runs, want 1 (no initial delay, no jitter)", got)
	}
	if !h.m.Started(pod.UID, "c") || !h.m.Ready(pod.UID, "c") {
		t.Fatal("a container without startup and readiness probes is started and ready")
	}
	h.step(period)
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok || h.changeCount() != 0 {
		t.Fatal("kill requested before failureThreshold (3) failures")
	}
	h.step(period)
	if got := h.ex.count("id1", "live"); got != 3 {
		t.Fatalf("%d runs, want 3", got)
	}
	if h.changeCount() != 1 {
		t.Fatalf("OnChange called %d times, want 1", h.changeCount())
	}
	k, ok := h.m.TakeKill(pod.UID, "c")
	want := Kill{
		ContainerID:        "id1",
		Unhealthy:          "Liveness probe failed: boom",
		Message:            "Container c failed liveness probe, will be restarted",
		GracePeriodSeconds: 5,
	}
	if !ok || k != want {
		t.Fatalf("TakeKill = %+v, %v; want %+v", k, ok, want)
	}
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("the kill was reported twice")
	}
	wantEvents := slices.Repeat([]string{"c Warning Unhealthy Liveness probe failed: boom"}, 3)
	if got := h.eventList(); !slices.Equal(got, wantEvents) {
		t.Fatalf("events %q, want %q", got, wantEvents)
	}

	// Held until a new container appears.
	for range 3 {
		h.step(period)
	}
	if got := h.ex.count("id1", "live"); got != 3 {
		t.Fatalf("liveness probe ran %d times after the kill request, want it held", got-3)
	}
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("a held probe asked for another kill")
	}

	// The restarted container starts afresh: three new failures to a kill.
	h.run(pod, map[string]string{"c": "id2"})
	h.step(period)
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("the restarted container inherited failures")
	}
	h.step(period)
	if k, ok := h.m.TakeKill(pod.UID, "c"); !ok || k.ContainerID != "id2" {
		t.Fatalf("TakeKill after three failures of id2 = %+v, %v", k, ok)
	}
}

func TestLivenessFailuresMustBeConsecutive(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) { p.FailureThreshold = 2 })})
	h.ex.set("live", execResult{code: 1})
	h.run(pod, map[string]string{"c": "id1"}) // fail 1
	h.ex.set("live", execResult{code: 0})
	h.step(period) // success
	h.ex.set("live", execResult{code: 1})
	h.step(period) // fail 1
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("non-consecutive failures reached the threshold")
	}
	h.step(period) // fail 2
	if _, ok := h.m.TakeKill(pod.UID, "c"); !ok {
		t.Fatal("two failures in a row did not ask for a kill")
	}
}

func TestInitialDelayAndPeriod(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) { p.InitialDelaySeconds = 15 })})
	h.run(pod, map[string]string{"c": "id1"})
	h.step(14 * time.Second)
	if got := h.ex.count("id1", "live"); got != 0 {
		t.Fatalf("probe ran %d times within the initial delay", got)
	}
	h.step(time.Second)
	if got := h.ex.count("id1", "live"); got != 1 {
		t.Fatalf("%d runs at the end of the initial delay, want 1", got)
	}
	h.step(period - time.Second)
	if got := h.ex.count("id1", "live"); got != 1 {
		t.Fatalf("%d runs before the period passed, want 1", got)
	}
	h.step(time.Second)
	if got := h.ex.count("id1", "live"); got != 2 {
		t.Fatalf("%d runs after one period, want 2", got)
	}

	// A container that started long ago (agent restart) is probed now.
	h.clk.Step(time.Hour)
	h.m.UpdatePod(pod, "10.88.0.2", map[string]Running{"c": {ID: "old", StartedAt: h.clk.Now().Add(-time.Hour)}})
	h.settle()
	if got := h.ex.count("old", "live"); got != 1 {
		t.Fatalf("container past its initial delay: %d runs, want 1 at once", got)
	}
}

func TestStartupProbeGatesLivenessAndReadiness(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{
		Name:           "c",
		StartupProbe:   execProbe("start", func(p *v1.Probe) { p.PeriodSeconds = 1; p.FailureThreshold = 30 }),
		LivenessProbe:  execProbe("live"),
		ReadinessProbe: execProbe("ready"),
	})
	h.ex.set("start", execResult{code: 1, out: "not yet"})
	h.run(pod, map[string]string{"c": "id1"})
	for range 3 {
		h.step(time.Second)
	}
	if got := h.ex.count("id1", "start"); got != 4 {
		t.Fatalf("startup probe ran %d times, want 4", got)
	}
	if n := h.ex.count("id1", "live") + h.ex.count("id1", "ready"); n != 0 {
		t.Fatalf("liveness/readiness ran %d times before startup succeeded", n)
	}
	if h.m.Started(pod.UID, "c") || h.m.Ready(pod.UID, "c") {
		t.Fatal("container started/ready before its startup probe passed")
	}

	h.ex.set("start", execResult{})
	h.step(time.Second)
	if !h.m.Started(pod.UID, "c") {
		t.Fatal("not started after the startup probe passed")
	}
	if h.ex.count("id1", "live") != 1 || h.ex.count("id1", "ready") != 1 {
		t.Fatalf("liveness %d, readiness %d runs right after startup; want 1 each",
			h.ex.count("id1", "live"), h.ex.count("id1", "ready"))
	}
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("not ready after the first readiness success")
	}
	if got := h.changeCount(); got != 2 {
		t.Fatalf("OnChange called %d times, want 2 (started, ready)", got)
	}
	for range 3 {
		h.step(period)
	}
	if got := h.ex.count("id1", "start"); got != 5 {
		t.Fatalf("startup probe ran %d times, want it stopped after success (5)", got)
	}
	if got := h.ex.count("id1", "ready"); got != 4 {
		t.Fatalf("readiness ran %d times, want 4", got)
	}
	want := slices.Repeat([]string{"c Warning Unhealthy Startup probe failed: not yet"}, 4)
	if got := h.eventList(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}

	// A restart resets started and ready.
	h.ex.set("start", execResult{code: 1})
	h.run(pod, map[string]string{"c": "id2"})
	if h.m.Started(pod.UID, "c") || h.m.Ready(pod.UID, "c") {
		t.Fatal("restarted container kept the old container's results")
	}
}

func TestStartupFailureKills(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{
		Name: "c",
		StartupProbe: execProbe("start", func(p *v1.Probe) {
			p.FailureThreshold = 2
			p.TerminationGracePeriodSeconds = ptr.To[int64](7)
		}),
		LivenessProbe: execProbe("live"),
	})
	pod.Spec.RestartPolicy = v1.RestartPolicyNever
	h.ex.set("start", execResult{code: 3, out: "no"})
	h.run(pod, map[string]string{"c": "id1"})
	h.step(period)
	k, ok := h.m.TakeKill(pod.UID, "c")
	want := Kill{ContainerID: "id1", Unhealthy: "Startup probe failed: no", Message: "Container c failed startup probe", GracePeriodSeconds: 7}
	if !ok || k != want {
		t.Fatalf("TakeKill = %+v, %v; want %+v", k, ok, want)
	}
	if h.m.Started(pod.UID, "c") {
		t.Fatal("started after the startup probe failed")
	}
	h.step(period)
	if got := h.ex.count("id1", "start"); got != 2 {
		t.Fatalf("startup probe ran %d times, want it held after the kill request (2)", got)
	}
	if got := h.ex.count("id1", "live"); got != 0 {
		t.Fatalf("liveness ran %d times although the container never started", got)
	}
}

func TestReadinessThresholds(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", ReadinessProbe: execProbe("ready", func(p *v1.Probe) {
		p.SuccessThreshold = 2
		p.FailureThreshold = 2
	})})
	h.run(pod, map[string]string{"c": "id1"})
	if h.m.Ready(pod.UID, "c") {
		t.Fatal("ready after one success with successThreshold 2")
	}
	if !h.m.Started(pod.UID, "c") {
		t.Fatal("not started without a startup probe")
	}
	h.step(period)
	if !h.m.Ready(pod.UID, "c") || h.changeCount() != 1 {
		t.Fatalf("ready=%v changes=%d after two successes", h.m.Ready(pod.UID, "c"), h.changeCount())
	}
	h.ex.set("ready", execResult{code: 1, out: "down"})
	h.step(period)
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("not ready after one failure with failureThreshold 2")
	}
	h.step(period)
	if h.m.Ready(pod.UID, "c") || h.changeCount() != 2 {
		t.Fatalf("ready=%v changes=%d after two failures", h.m.Ready(pod.UID, "c"), h.changeCount())
	}
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("a readiness failure asked for a kill")
	}
	// Readiness keeps probing and comes back.
	h.ex.set("ready", execResult{})
	h.step(period)
	h.step(period)
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("readiness did not come back")
	}
	want := slices.Repeat([]string{"c Warning Unhealthy Readiness probe failed: down"}, 2)
	if got := h.eventList(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestReadinessResetsOnRestart(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", ReadinessProbe: execProbe("ready", func(p *v1.Probe) { p.InitialDelaySeconds = 5 })})
	h.run(pod, map[string]string{"c": "id1"})
	if h.m.Ready(pod.UID, "c") {
		t.Fatal("ready before the first readiness run")
	}
	h.step(5 * time.Second)
	if !h.m.Ready(pod.UID, "c") {
		t.Fatal("not ready after the first success")
	}
	h.run(pod, map[string]string{"c": "id2"})
	if h.m.Ready(pod.UID, "c") {
		t.Fatal("the restarted container is ready before its own probe ran")
	}
	h.step(5 * time.Second)
	if !h.m.Ready(pod.UID, "c") || h.ex.count("id2", "ready") != 1 {
		t.Fatal("the restarted container's readiness probe did not run after its initial delay")
	}
	// The old container's probe is gone.
	h.step(period)
	if got := h.ex.count("id1", "ready"); got != 1 {
		t.Fatalf("old container probed %d times, want 1", got)
	}
}

func TestContainersThatDoNotRun(t *testing.T) {
	h := newHarness(t)
	pod := testPod(
		v1.Container{Name: "plain"},
		v1.Container{Name: "probed", LivenessProbe: execProbe("live"), ReadinessProbe: execProbe("ready")},
	)
	if h.m.Ready(pod.UID, "plain") || h.m.Started(pod.UID, "plain") {
		t.Fatal("an unknown pod's container is ready or started")
	}
	h.run(pod, map[string]string{"plain": "p1", "probed": "x1"})
	if !h.m.Ready(pod.UID, "plain") || !h.m.Started(pod.UID, "plain") {
		t.Fatal("a running container without probes is not ready/started")
	}
	// probed exits: its probes stop and it is neither ready nor started.
	h.run(pod, map[string]string{"plain": "p1"})
	if h.m.Ready(pod.UID, "probed") || h.m.Started(pod.UID, "probed") {
		t.Fatal("an exited container is ready or started")
	}
	h.step(period)
	if h.ex.count("x1", "live") != 1 || h.ex.count("x1", "ready") != 1 {
		t.Fatal("an exited container was probed")
	}
	h.m.RemovePod(pod.UID)
	if h.m.Ready(pod.UID, "plain") {
		t.Fatal("a removed pod's container is ready")
	}
	h.m.UpdatePod(pod, "10.88.0.2", map[string]Running{"probed": {ID: "x2", StartedAt: h.clk.Now()}})
	h.settle()
	h.m.RemovePod(pod.UID)
	h.step(period)
	if got := h.ex.count("x2", "live"); got != 1 {
		t.Fatalf("probe of a removed pod ran %d times, want 1", got)
	}
}

func TestDeletionStopsLivenessAndStartup(t *testing.T) {
	h := newHarness(t)
	pod := testPod(
		v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) { p.FailureThreshold = 1 })},
		v1.Container{Name: "d", LivenessProbe: execProbe("ok"), ReadinessProbe: execProbe("ready")},
	)
	h.ex.set("live", execResult{code: 1})
	h.run(pod, map[string]string{"c": "id1", "d": "id2"})
	deleting := pod.DeepCopy()
	deleting.DeletionTimestamp = &metav1.Time{Time: h.clk.Now()}
	deleting.DeletionGracePeriodSeconds = ptr.To[int64](30)
	h.run(deleting, map[string]string{"c": "id1", "d": "id2"})
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("kill request kept while the pod is being deleted")
	}
	h.step(period)
	h.step(period)
	if h.ex.count("id2", "ok") != 1 || h.ex.count("id2", "ready") != 3 {
		t.Fatalf("during deletion liveness ran %d times (want 1), readiness %d (want 3)",
			h.ex.count("id2", "ok"), h.ex.count("id2", "ready"))
	}

	// A container still starting counts as started once deletion begins.
	pod2 := testPod(v1.Container{Name: "s", StartupProbe: execProbe("start"), ReadinessProbe: execProbe("ready")})
	pod2.UID = "uid-2"
	h.ex.set("start", execResult{code: 1})
	h.run(pod2, map[string]string{"s": "s1"})
	pod2 = pod2.DeepCopy()
	pod2.DeletionTimestamp = &metav1.Time{Time: h.clk.Now()}
	h.run(pod2, map[string]string{"s": "s1"})
	if !h.m.Started(pod2.UID, "s") || !h.m.Ready(pod2.UID, "s") {
		t.Fatal("deletion: want started, and readiness run")
	}
}

func TestSidecarProbes(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "app"})
	pod.Spec.InitContainers = []v1.Container{
		{Name: "init", LivenessProbe: execProbe("init-live")}, // plain init containers are not probed
		{Name: "side", RestartPolicy: ptr.To(v1.ContainerRestartPolicyAlways), LivenessProbe: execProbe("side-live", func(p *v1.Probe) { p.FailureThreshold = 1 })},
	}
	h.ex.set("side-live", execResult{code: 1})
	h.run(pod, map[string]string{"init": "i1", "side": "s1", "app": "a1"})
	if got := h.ex.count("i1", "init-live"); got != 0 {
		t.Fatalf("plain init container probed %d times", got)
	}
	k, ok := h.m.TakeKill(pod.UID, "side")
	if !ok || k.Message != "Init container side failed liveness probe" || k.GracePeriodSeconds != 30 {
		t.Fatalf("sidecar kill = %+v, %v", k, ok)
	}
}

func TestExecErrorsAreRetriedAndNotCounted(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) { p.FailureThreshold = 1 })})
	h.ex.set("live", execResult{err: errors.New("container not running")})
	h.run(pod, map[string]string{"c": "id1"})
	if got := h.ex.count("id1", "live"); got != maxProbeRetries {
		t.Fatalf("an erroring probe ran %d times, want %d", got, maxProbeRetries)
	}
	h.step(period)
	if _, ok := h.m.TakeKill(pod.UID, "c"); ok {
		t.Fatal("an erroring probe counted as a failure")
	}
	want := slices.Repeat([]string{"c Warning Unhealthy Liveness probe errored: container not running"}, 2)
	if got := h.eventList(); !slices.Equal(got, want) {
		t.Fatalf("events %q, want %q", got, want)
	}
}

func TestExecTimeoutFails(t *testing.T) {
	h := newHarness(t)
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("sleep", func(p *v1.Probe) { p.FailureThreshold = 1 })})
	pod.Spec.Containers[0].LivenessProbe.Exec.Command = []string{"sleep", "60"}
	h.ex.set("sleep", execResult{block: true})
	h.run(pod, map[string]string{"c": "id1"})
	k, ok := h.m.TakeKill(pod.UID, "c")
	if want := `Liveness probe failed: command timed out: "sleep 60" timed out after 1s`; !ok || k.Unhealthy != want {
		t.Fatalf("TakeKill = %+v, %v; want Unhealthy %q", k, ok, want)
	}
}

func TestExecCommandAndOutput(t *testing.T) {
	h := newHarness(t)
	c := v1.Container{
		Name: "c",
		Env: []v1.EnvVar{
			{Name: "FILE", Value: "/tmp/healthy"},
			{Name: "FROM", ValueFrom: &v1.EnvVarSource{FieldRef: &v1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		LivenessProbe: execProbe("cat"),
	}
	c.LivenessProbe.Exec.Command = []string{"cat", "$(FILE)", "$(FROM)", "$(NOPE)"}
	h.ex.set("cat", execResult{code: 1, out: strings.Repeat("x", 20<<10)})
	h.run(testPod(c), map[string]string{"c": "id1"})
	h.ex.mu.Lock()
	got := h.ex.last
	h.ex.mu.Unlock()
	if want := []string{"cat", "/tmp/healthy", "", "$(NOPE)"}; !slices.Equal(got, want) {
		t.Fatalf("command %q, want %q (static env only)", got, want)
	}
	ev := h.eventList()
	if len(ev) != 1 || len(ev[0]) != len("c Warning Unhealthy Liveness probe failed: ")+maxExecOutput {
		t.Fatalf("want one event with the output cut to %d bytes, got %d events", maxExecOutput, len(ev))
	}
}

func TestGracePeriod(t *testing.T) {
	probe := &v1.Probe{TerminationGracePeriodSeconds: ptr.To[int64](4)}
	for _, tc := range []struct {
		name            string
		deletion, pod   *int64
		liveness, start *v1.Probe
		typ             probeType
		want            int64
	}{
		{name: "pod", pod: ptr.To[int64](30), liveness: &v1.Probe{}, typ: liveness, want: 30},
		{name: "probe", pod: ptr.To[int64](30), liveness: probe, typ: liveness, want: 4},
		{name: "probe longer than pod", pod: ptr.To[int64](1), liveness: probe, typ: liveness, want: 4},
		{name: "startup uses its own", pod: ptr.To[int64](30), liveness: probe, start: &v1.Probe{}, typ: startup, want: 30},
		{name: "deletion wins", deletion: ptr.To[int64](9), pod: ptr.To[int64](30), liveness: probe, typ: liveness, want: 9},
		{name: "nothing set", liveness: probe, typ: liveness, want: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{DeletionGracePeriodSeconds: tc.deletion}, Spec: v1.PodSpec{TerminationGracePeriodSeconds: tc.pod}}
			c := &v1.Container{LivenessProbe: tc.liveness, StartupProbe: tc.start}
			if got := gracePeriod(pod, c, tc.typ); got != tc.want {
				t.Fatalf("grace period %d, want %d", got, tc.want)
			}
		})
	}
}

func TestFirstRunJitter(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	m := New(Config{Exec: newFakeExec(), Clock: clk}) // real jitter, not running
	now := clk.Now()
	const pods = 200
	for i := range pods {
		pod := testPod(v1.Container{
			Name:           "c",
			LivenessProbe:  execProbe("live", func(p *v1.Probe) { p.InitialDelaySeconds = 3 }),
			ReadinessProbe: execProbe("ready", func(p *v1.Probe) { p.InitialDelaySeconds = 3 }),
		})
		pod.UID = types.UID(fmt.Sprint("uid-", i))
		m.UpdatePod(pod, "10.88.0.2", map[string]Running{"c": {ID: fmt.Sprint("id-", i), StartedAt: now}})
	}
	base := now.Add(3 * time.Second)
	distinct := map[time.Time]bool{}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.queue) != 2*pods {
		t.Fatalf("%d probe runs queued, want %d", len(m.queue), 2*pods)
	}
	var minDue, maxDue time.Time
	for _, w := range m.queue {
		switch w.typ {
		case readiness:
			if !w.due.Equal(base) {
				t.Fatalf("readiness first run at +%s, want right after the initial delay", w.due.Sub(now))
			}
		case liveness:
			if w.due.Before(base) || !w.due.Before(base.Add(period)) {
				t.Fatalf("liveness first run at +%s, want within [3s, 13s)", w.due.Sub(now))
			}
			distinct[w.due] = true
			if minDue.IsZero() || w.due.Before(minDue) {
				minDue = w.due
			}
			if w.due.After(maxDue) {
				maxDue = w.due
			}
		}
	}
	if len(distinct) < pods*9/10 || maxDue.Sub(minDue) < period/2 {
		t.Fatalf("first runs not spread: %d distinct times over %s", len(distinct), maxDue.Sub(minDue))
	}
}

func TestRunStopsCleanly(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	ex := newFakeExec()
	ex.set("live", execResult{block: true})
	var events []string
	var mu sync.Mutex
	m := New(Config{Exec: ex, Clock: clk, OnEvent: func(_ *v1.Pod, c, _, _, msg string) {
		mu.Lock()
		events = append(events, msg)
		mu.Unlock()
	}})
	m.jitter = func(time.Duration) time.Duration { return 0 }
	pod := testPod(v1.Container{Name: "c", LivenessProbe: execProbe("live", func(p *v1.Probe) { p.TimeoutSeconds = 60 })})
	m.UpdatePod(pod, "10.88.0.2", map[string]Running{"c": {ID: "id1", StartedAt: clk.Now()}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	testutil.Eventually(t, 10*time.Second, func() error {
		if ex.count("id1", "live") == 0 {
			return errors.New("the probe did not start")
		}
		return nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) != 0 {
		t.Fatalf("a probe cut short by shutdown yielded events: %q", events)
	}
}
