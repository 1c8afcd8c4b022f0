package prober

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
)

// fakeExec is an Execer whose commands' outcomes the test sets by the
// command's first word.
type fakeExec struct {
	mu      sync.Mutex
	results map[string]execResult
	calls   map[string]int // by "containerID cmd..."
	last    []string
}

type execResult struct {
	code  int
	out   string
	err   error
	block bool // run until ctx ends
}

func newFakeExec() *fakeExec {
	return &fakeExec{results: map[string]execResult{}, calls: map[string]int{}}
}

func (f *fakeExec) set(cmd string, r execResult) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.results[cmd] = r
}

func (f *fakeExec) count(containerID, cmd string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[containerID+" "+cmd]
}

func (f *fakeExec) Exec(ctx context.Context, containerID string, cmd []string, timeout time.Duration) (int, []byte, error) {
	f.mu.Lock()
	f.calls[containerID+" "+strings.Join(cmd, " ")]++
	f.last = cmd
	r := f.results[cmd[0]]
	f.mu.Unlock()
	if r.block {
		<-ctx.Done()
		return -1, nil, fmt.Errorf("exec killed: %w", ctx.Err())
	}
	return r.code, []byte(r.out), r.err
}

// harness runs a Manager on a fake clock with a fake Execer, without
// jitter, and records its events and change notifications.
type harness struct {
	t   *testing.T
	m   *Manager
	clk *clocktesting.FakeClock
	ex  *fakeExec

	mu      sync.Mutex
	events  []string
	changes int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, clk: clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0)), ex: newFakeExec()}
	h.m = New(Config{
		Exec:    h.ex,
		Clock:   h.clk,
		Workers: 4,
		OnChange: func(types.UID) {
			h.mu.Lock()
			h.changes++
			h.mu.Unlock()
		},
		OnEvent: func(pod *v1.Pod, container, eventType, reason, message string) {
			h.mu.Lock()
			h.events = append(h.events, fmt.Sprintf("%s %s %s %s", container, eventType, reason, message))
			h.mu.Unlock()
		},
	})
	h.m.jitter = func(time.Duration) time.Duration { return 0 }
	startManager(t, h.m)
	h.settle()
	return h
}

// startManager runs m until the test ends.
func startManager(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// settle waits until every due probe ran and was recorded and the scheduler
// sleeps again.
func (h *harness) settle() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !h.m.quiescent() {
		if time.Now().After(deadline) {
			h.t.Fatal("prober did not settle within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// step advances the fake clock by d and lets the probes that became due run.
func (h *harness) step(d time.Duration) {
	h.t.Helper()
	h.settle()
	h.clk.Step(d)
	h.settle()
}

func (h *harness) eventList() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.events...)
}

func (h *harness) changeCount() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changes
}

// run reports container c as running with id since now.
func (h *harness) run(pod *v1.Pod, ids map[string]string) {
	running := map[string]Running{}
	for name, id := range ids {
		running[name] = Running{ID: id, StartedAt: h.clk.Now()}
	}
	h.m.UpdatePod(pod, "10.88.0.2", running)
	h.settle()
}

func execProbe(cmd string, mods ...func(*v1.Probe)) *v1.Probe {
	p := &v1.Probe{
		ProbeHandler:     v1.ProbeHandler{Exec: &v1.ExecAction{Command: []string{cmd}}},
		TimeoutSeconds:   1,
		PeriodSeconds:    10,
		SuccessThreshold: 1,
		FailureThreshold: 3,
	}
	for _, f := range mods {
		f(p)
	}
	return p
}

func testPod(containers ...v1.Container) *v1.Pod {
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "uid-1"},
		Spec: v1.PodSpec{
			Containers:                    containers,
			RestartPolicy:                 v1.RestartPolicyAlways,
			TerminationGracePeriodSeconds: ptr.To[int64](30),
		},
	}
}
