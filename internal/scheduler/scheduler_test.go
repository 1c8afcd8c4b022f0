package scheduler

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
