package prober

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clocktesting "k8s.io/utils/clock/testing"
)

// gatedExec is an Execer whose commands wait at a gate while hold is set;
// it tracks how many run at once.
type gatedExec struct {
	gate chan struct{}
	hold bool

	mu             sync.Mutex
	running, peak  int
	calls          int
	waitingAtStart chan struct{} // closed when want commands wait at once
	want           int
	signalled      bool
}

func (g *gatedExec) Exec(ctx context.Context, _ string, _ []string, _ time.Duration) (int, []byte, error) {
	g.mu.Lock()
	g.calls++
	g.running++
	g.peak = max(g.peak, g.running)
	if g.running == g.want && !g.signalled {
		g.signalled = true
		close(g.waitingAtStart)
	}
	hold := g.hold
	g.mu.Unlock()
	if hold {
		select {
		case <-g.gate:
		case <-ctx.Done():
		}
	}
	g.mu.Lock()
	g.running--
	g.mu.Unlock()
	return 0, nil, nil
}

// TestManyProbesBoundedGoroutines runs 500 pods' probes (1000 exec, 500
// TCP) on one scheduler and checks that they all run with a bounded number
// of goroutines.
func TestManyProbesBoundedGoroutines(t *testing.T) {
	const (
		pods    = 500
		workers = 8
	)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	_, port := hostPort(t, l.Addr())

	before := runtime.NumGoroutine()
	clk := clocktesting.NewFakeClock(time.Unix(1_700_000_000, 0))
	ex := &gatedExec{gate: make(chan struct{}), waitingAtStart: make(chan struct{}), want: workers}
	h := &harness{t: t, clk: clk}
	h.m = New(Config{Exec: ex, Clock: clk, Workers: workers})
	startManager(t, h.m)

	for i := range pods {
		pod := testPod(v1.Container{
			Name:           "c",
			LivenessProbe:  execProbe("live"),
			ReadinessProbe: execProbe("ready"),
			StartupProbe: &v1.Probe{
				ProbeHandler:  v1.ProbeHandler{TCPSocket: &v1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}},
				PeriodSeconds: 1,
			},
		})
		pod.UID = types.UID(fmt.Sprint("uid-", i))
		h.m.UpdatePod(pod, "127.0.0.1", map[string]Running{"c": {ID: fmt.Sprint("id-", i), StartedAt: clk.Now()}})
	}
	// Startup probes (TCP) have their first run jittered within 1 s; when
	// they pass, readiness runs at once and liveness within a period.
	h.step(time.Second)
	for i := range pods {
		if !h.m.Started(types.UID(fmt.Sprint("uid-", i)), "c") {
			t.Fatalf("pod %d not started after its TCP startup probe", i)
		}
	}
	ex.mu.Lock()
	calls := ex.calls
	ex.hold = true
	ex.mu.Unlock()
	if calls != pods {
		t.Fatalf("%d readiness runs right after startup, want %d", calls, pods)
	}

	// Now every readiness and liveness exec probe is due and waits at the
	// gate: every worker is busy and the rest queue.
	h.clk.Step(period)
	select {
	case <-ex.waitingAtStart:
	case <-time.After(10 * time.Second):
		t.Fatal("the workers did not all start a probe")
	}
	during := runtime.NumGoroutine()
	close(ex.gate)
	h.settle()

	ex.mu.Lock()
	calls, peak := ex.calls, ex.peak
	ex.mu.Unlock()
	if calls != 3*pods {
		t.Fatalf("%d exec probe runs, want %d", calls, 3*pods)
	}
	if peak > workers {
		t.Fatalf("%d probes ran at once, want at most %d", peak, workers)
	}
	// The scheduler, the workers and a little slack for the runtime.
	if extra := during - before; extra > workers+4 {
		t.Fatalf("%d goroutines while %d probes were due, want at most %d more than %d before", during, 2*pods, workers+4, before)
	}
	t.Logf("goroutines: %d before, %d with every worker busy and %d probes due; peak concurrency %d", before, during, 2*pods, peak)

	// Another period: every probe runs again.
	h.step(period)
	ex.mu.Lock()
	calls = ex.calls
	ex.mu.Unlock()
	if calls != 5*pods {
		t.Fatalf("%d exec probe runs after another period, want %d", calls, 5*pods)
	}
	for i := range pods {
		if !h.m.Ready(types.UID(fmt.Sprint("uid-", i)), "c") {
			t.Fatalf("pod %d not ready", i)
		}
	}
}
