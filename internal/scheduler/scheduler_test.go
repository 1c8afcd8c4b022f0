package scheduler

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestResponsible(t *testing.T) {
	now := metav1.Now()
	tests := []struct {
		name string
		pod  *v1.Pod
		want bool
	}{
		{"empty scheduler name", mkPod("p"), true},
		{"default-scheduler", mkPod("p", func(p *v1.Pod) { p.Spec.SchedulerName = "default-scheduler" }), true},
		{"other scheduler", mkPod("p", func(p *v1.Pod) { p.Spec.SchedulerName = "other" }), false},
		{"already bound", mkPod("p", onNode("n")), false},
		{"terminating", mkPod("p", func(p *v1.Pod) { p.DeletionTimestamp = &now }), false},
		{"gated", mkPod("p", func(p *v1.Pod) { p.Spec.SchedulingGates = []v1.PodSchedulingGate{{Name: "g"}} }), false},
		{"failed", mkPod("p", func(p *v1.Pod) { p.Status.Phase = v1.PodFailed }), false},
	}
	for _, tc := range tests {
		if got := responsible(tc.pod); got != tc.want {
			t.Errorf("%s: responsible = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNodeChanged(t *testing.T) {
	base := mkNode("n", "2", "4Gi")
	tests := []struct {
		name string
		mut  func(*v1.Node)
		want bool
	}{
		{"heartbeat only", func(n *v1.Node) { n.Status.Conditions[0].LastHeartbeatTime = metav1.Now() }, false},
		{"label", withLabel("disktype", "ssd"), true},
		{"taint", withTaint("k", "v", v1.TaintEffectNoSchedule), true},
		{"unschedulable", unschedulable, true},
		{"ready", withReady(v1.ConditionFalse), true},
		{"allocatable", func(n *v1.Node) { n.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("4") }, true},
	}
	for _, tc := range tests {
		n := base.DeepCopy()
		tc.mut(n)
		if got := nodeChanged(base, n); got != tc.want {
			t.Errorf("%s: nodeChanged = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// newBookkeeping is a Scheduler with only its bookkeeping and queue, no API.
func newBookkeeping(t *testing.T, clk clock.Clock) *Scheduler {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]())
	t.Cleanup(q.ShutDown)
	return &Scheduler{clock: clk, queue: q,
		unschedulable: map[string]time.Time{}, assumed: map[string]string{}, assumedPods: map[string]*v1.Pod{},
		bound: map[string]map[string]*v1.Pod{}, nodeOf: map[string]string{}}
}

func TestBoundPodsTrackedPerNode(t *testing.T) {
	s := newBookkeeping(t, clocktesting.NewFakeClock(time.Now()))
	a, b := mkPod("a", onNode("n1")), mkPod("b")
	s.podChanged(nil, a)
	s.podChanged(nil, b)
	if len(s.bound["n1"]) != 1 || s.nodeOf["default/a"] != "n1" {
		t.Fatalf("bound = %v, nodeOf = %v", s.bound, s.nodeOf)
	}
	if _, ok := s.nodeOf["default/b"]; ok {
		t.Fatal("a pending pod is counted on a node")
	}
	// Finishing frees the node.
	done := a.DeepCopy()
	done.Status.Phase = v1.PodSucceeded
	s.podChanged(a, done)
	if len(s.bound) != 0 || len(s.nodeOf) != 0 {
		t.Fatalf("finished pod still counted: %v", s.bound)
	}
}

func TestParkedPodsRetry(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	s := newBookkeeping(t, clk)
	for _, k := range []string{"default/old", "default/new"} {
		s.unschedulable[k] = clk.Now()
		clk.Step(time.Minute)
	}
	held := mkPod("held", onNode("n1"))
	s.podChanged(nil, held)
	pending := mkPod("pending")
	s.podChanged(nil, pending)
	s.queue.Get() // the pending pod itself
	if s.queue.Len() != 0 {
		t.Fatalf("queue has %d items", s.queue.Len())
	}

	// Deleting a pod that held nothing (pending) retries nobody.
	s.podDeleted(pending)
	if s.queue.Len() != 0 || len(s.unschedulable) != 2 {
		t.Fatalf("deleting a pending pod requeued parked pods: queue %d, parked %d", s.queue.Len(), len(s.unschedulable))
	}
	// The periodic flush takes only those parked long enough.
	s.retryParkedSince(clk.Now().Add(-90 * time.Second))
	if s.queue.Len() != 1 || len(s.unschedulable) != 1 {
		t.Fatalf("flush: queue %d, parked %d; want 1 and 1", s.queue.Len(), len(s.unschedulable))
	}
	// Deleting a pod that held resources on a node retries every parked pod.
	s.podDeleted(held)
	if s.queue.Len() != 2 || len(s.unschedulable) != 0 {
		t.Fatalf("after freeing a node: queue %d, parked %d; want 2 and 0", s.queue.Len(), len(s.unschedulable))
	}
}
