package scheduler

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type nodeOpt func(*v1.Node)

func mkNode(name, cpu, mem string, opts ...nodeOpt) *v1.Node {
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: v1.NodeStatus{
			Allocatable: v1.ResourceList{
				v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse(mem),
				v1.ResourcePods: resource.MustParse("110"), v1.ResourceEphemeralStorage: resource.MustParse("10Gi"),
			},
			Conditions: []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue}},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withLabel(k, v string) nodeOpt { return func(n *v1.Node) { n.Labels[k] = v } }
func withTaint(k, v string, e v1.TaintEffect) nodeOpt {
	return func(n *v1.Node) { n.Spec.Taints = append(n.Spec.Taints, v1.Taint{Key: k, Value: v, Effect: e}) }
}
func withReady(s v1.ConditionStatus) nodeOpt {
	return func(n *v1.Node) { n.Status.Conditions[0].Status = s }
}
func withPods(c string) nodeOpt {
	return func(n *v1.Node) { n.Status.Allocatable[v1.ResourcePods] = resource.MustParse(c) }
}
func unschedulable(n *v1.Node) { n.Spec.Unschedulable = true }

type podOpt func(*v1.Pod)

func mkPod(name string, opts ...podOpt) *v1.Pod {
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox"}}},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

func req(cpu, mem string) podOpt {
	return func(p *v1.Pod) {
		rl := v1.ResourceList{}
		if cpu != "" {
			rl[v1.ResourceCPU] = resource.MustParse(cpu)
		}
		if mem != "" {
			rl[v1.ResourceMemory] = resource.MustParse(mem)
		}
		p.Spec.Containers[0].Resources.Requests = rl
	}
}
func selector(k, v string) podOpt {
	return func(p *v1.Pod) {
		if p.Spec.NodeSelector == nil {
			p.Spec.NodeSelector = map[string]string{}
		}
		p.Spec.NodeSelector[k] = v
	}
}
func tolerate(k string, e v1.TaintEffect) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, v1.Toleration{Key: k, Operator: v1.TolerationOpExists, Effect: e})
	}
}
func hostPort(port int32) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Containers[0].Ports = append(p.Spec.Containers[0].Ports, v1.ContainerPort{ContainerPort: 80, HostPort: port})
	}
}
func affinityReq(k string, op v1.NodeSelectorOperator, vals ...string) podOpt {
	return func(p *v1.Pod) {
		p.Spec.Affinity = &v1.Affinity{NodeAffinity: &v1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &v1.NodeSelector{NodeSelectorTerms: []v1.NodeSelectorTerm{{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: k, Operator: op, Values: vals}},
			}}},
		}}
	}
}
func prefer(weight int32, k, v string) podOpt {
	return func(p *v1.Pod) {
		if p.Spec.Affinity == nil {
			p.Spec.Affinity = &v1.Affinity{}
		}
		if p.Spec.Affinity.NodeAffinity == nil {
			p.Spec.Affinity.NodeAffinity = &v1.NodeAffinity{}
		}
		na := p.Spec.Affinity.NodeAffinity
		na.PreferredDuringSchedulingIgnoredDuringExecution = append(na.PreferredDuringSchedulingIgnoredDuringExecution,
			v1.PreferredSchedulingTerm{Weight: weight, Preference: v1.NodeSelectorTerm{
				MatchExpressions: []v1.NodeSelectorRequirement{{Key: k, Operator: v1.NodeSelectorOpIn, Values: []string{v}}},
			}})
	}
}
func onNode(n string) podOpt { return func(p *v1.Pod) { p.Spec.NodeName = n } }

func TestFilter(t *testing.T) {
	bound := mkPod("existing", req("1500m", "1Gi"), hostPort(8080), onNode("n"))
	initSidecar := func(p *v1.Pod) {
		always := v1.ContainerRestartPolicyAlways
		p.Spec.InitContainers = []v1.Container{
			{Name: "sidecar", RestartPolicy: &always, Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("300m")}}},
			{Name: "init", Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1800m")}}},
		}
	}
	tests := []struct {
		name       string
		pod        *v1.Pod
		node       *v1.Node
		existing   []*v1.Pod
		want       []string // nil = fits
		resolvable bool
	}{
		{name: "fits", pod: mkPod("p", req("1", "1Gi")), node: mkNode("n", "2", "4Gi")},
		{name: "insufficient cpu", pod: mkPod("p", req("3", "")), node: mkNode("n", "2", "4Gi"), want: []string{"Insufficient cpu"}, resolvable: true},
		{name: "insufficient cpu and memory counting bound pods", pod: mkPod("p", req("1", "4Gi")), node: mkNode("n", "2", "4Gi"),
			existing: []*v1.Pod{bound}, want: []string{"Insufficient cpu", "Insufficient memory"}, resolvable: true},
		{name: "too many pods", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withPods("1")), existing: []*v1.Pod{mkPod("x", onNode("n"))},
			want: []string{"Too many pods"}, resolvable: true},
		{name: "init container max vs sidecar sum", pod: mkPod("p", req("1", ""), initSidecar), node: mkNode("n", "2", "4Gi"),
			want: []string{"Insufficient cpu"}, resolvable: true}, // sidecar starts first: max(0.3+1.8, 0.3+1) = 2.1
		{name: "ephemeral storage", pod: mkPod("p", func(p *v1.Pod) {
			p.Spec.Containers[0].Resources.Requests = v1.ResourceList{v1.ResourceEphemeralStorage: resource.MustParse("20Gi")}
		}), node: mkNode("n", "2", "4Gi"), want: []string{"Insufficient ephemeral-storage"}, resolvable: true},
		{name: "host port conflict", pod: mkPod("p", hostPort(8080)), node: mkNode("n", "8", "8Gi"), existing: []*v1.Pod{bound},
			want: []string{"node(s) didn't have free ports for the requested pod ports"}, resolvable: true},
		{name: "other host port", pod: mkPod("p", hostPort(8081)), node: mkNode("n", "8", "8Gi"), existing: []*v1.Pod{bound}},
		{name: "node selector mismatch", pod: mkPod("p", selector("disktype", "ssd")), node: mkNode("n", "2", "4Gi"),
			want: []string{"node(s) didn't match Pod's node affinity/selector"}},
		{name: "node selector match", pod: mkPod("p", selector("disktype", "ssd")), node: mkNode("n", "2", "4Gi", withLabel("disktype", "ssd"))},
		{name: "affinity NotIn", pod: mkPod("p", affinityReq("zone", v1.NodeSelectorOpNotIn, "a")), node: mkNode("n", "2", "4Gi", withLabel("zone", "a")),
			want: []string{"node(s) didn't match Pod's node affinity/selector"}},
		{name: "affinity DoesNotExist", pod: mkPod("p", affinityReq("zone", v1.NodeSelectorOpDoesNotExist)), node: mkNode("n", "2", "4Gi")},
		{name: "affinity Gt", pod: mkPod("p", affinityReq("gen", v1.NodeSelectorOpGt, "3")), node: mkNode("n", "2", "4Gi", withLabel("gen", "2")),
			want: []string{"node(s) didn't match Pod's node affinity/selector"}},
		{name: "affinity Lt", pod: mkPod("p", affinityReq("gen", v1.NodeSelectorOpLt, "3")), node: mkNode("n", "2", "4Gi", withLabel("gen", "2"))},
		{name: "untolerated NoSchedule taint", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withTaint("dedicated", "gpu", v1.TaintEffectNoSchedule)),
			want: []string{"node(s) had untolerated taint {dedicated: gpu}"}},
		{name: "untolerated NoExecute taint", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withTaint("k", "", v1.TaintEffectNoExecute)),
			want: []string{"node(s) had untolerated taint {k: }"}},
		{name: "PreferNoSchedule ignored", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withTaint("k", "", v1.TaintEffectPreferNoSchedule))},
		{name: "tolerated taint", pod: mkPod("p", tolerate("dedicated", v1.TaintEffectNoSchedule)),
			node: mkNode("n", "2", "4Gi", withTaint("dedicated", "gpu", v1.TaintEffectNoSchedule))},
		{name: "not ready", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withReady(v1.ConditionFalse)),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/not-ready: }"}},
		{name: "ready unknown", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", withReady(v1.ConditionUnknown)),
			want: []string{"node(s) had untolerated taint {node.kubernetes.io/unreachable: }"}},
		{name: "not ready tolerated", pod: mkPod("p", tolerate("node.kubernetes.io/not-ready", "")), node: mkNode("n", "2", "4Gi", withReady(v1.ConditionFalse))},
		{name: "unschedulable", pod: mkPod("p"), node: mkNode("n", "2", "4Gi", unschedulable), want: []string{"node(s) were unschedulable"}},
		{name: "unschedulable tolerated", pod: mkPod("p", tolerate("node.kubernetes.io/unschedulable", v1.TaintEffectNoSchedule)), node: mkNode("n", "2", "4Gi", unschedulable)},
		{name: "filter order: unschedulable before taint before affinity before resources",
			pod:  mkPod("p", req("9", ""), selector("a", "b")),
			node: mkNode("n", "2", "4Gi", unschedulable, withTaint("t", "", v1.TaintEffectNoSchedule)), want: []string{"node(s) were unschedulable"}},
		{name: "filter order: affinity before resources", pod: mkPod("p", req("9", ""), selector("a", "b")), node: mkNode("n", "2", "4Gi"),
			want: []string{"node(s) didn't match Pod's node affinity/selector"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := Filter(tc.pod, &NodeInfo{Node: tc.node, Pods: tc.existing})
			if tc.want == nil {
				if st != nil {
					t.Fatalf("want fit, got %+v", st)
				}
				return
			}
			if st == nil {
				t.Fatalf("want %v, got fit", tc.want)
			}
			if len(st.Reasons) != len(tc.want) || st.Resolvable != tc.resolvable {
				t.Fatalf("got %+v, want %v resolvable=%v", st, tc.want, tc.resolvable)
			}
			for i := range tc.want {
				if st.Reasons[i] != tc.want[i] {
					t.Fatalf("got %v, want %v", st.Reasons, tc.want)
				}
			}
		})
	}
}

func TestScheduleAndMessage(t *testing.T) {
	never := v1.PreemptNever
	tests := []struct {
		name     string
		pod      *v1.Pod
		nodes    []*NodeInfo
		wantNode string
		wantMsg  string
	}{
		{
			name: "mixed reasons",
			pod:  mkPod("p", req("3", ""), selector("disktype", "ssd")),
			nodes: []*NodeInfo{
				{Node: mkNode("a", "2", "4Gi", withLabel("disktype", "ssd"))},
				{Node: mkNode("b", "8", "4Gi")},
				{Node: mkNode("c", "8", "4Gi")},
			},
			wantMsg: "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node affinity/selector. " +
				"preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
		},
		{
			name:  "all unresolvable",
			pod:   mkPod("p", selector("disktype", "ssd")),
			nodes: []*NodeInfo{{Node: mkNode("a", "2", "4Gi")}, {Node: mkNode("b", "2", "4Gi", withTaint("k", "v", v1.TaintEffectNoSchedule))}},
			wantMsg: "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {k: v}. " +
				"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.",
		},
		{
			name:    "cpu and memory on one node",
			pod:     mkPod("p", req("3", "8Gi")),
			nodes:   []*NodeInfo{{Node: mkNode("a", "2", "4Gi")}},
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.",
		},
		{
			name:    "preemptionPolicy Never",
			pod:     mkPod("p", req("3", ""), func(p *v1.Pod) { p.Spec.PreemptionPolicy = &never }),
			nodes:   []*NodeInfo{{Node: mkNode("a", "2", "4Gi")}},
			wantMsg: "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.",
		},
		{name: "no nodes", pod: mkPod("p"), wantMsg: "no nodes available to schedule pods"},
		{
			name:     "least allocated wins",
			pod:      mkPod("p", req("500m", "512Mi")),
			nodes:    []*NodeInfo{{Node: mkNode("a", "2", "4Gi"), Pods: []*v1.Pod{mkPod("x", req("1", "1Gi"), onNode("a"))}}, {Node: mkNode("b", "2", "4Gi")}},
			wantNode: "b",
		},
		{
			name:     "tie broken by name",
			pod:      mkPod("p"),
			nodes:    []*NodeInfo{{Node: mkNode("c", "2", "4Gi")}, {Node: mkNode("b", "2", "4Gi")}, {Node: mkNode("d", "2", "4Gi")}},
			wantNode: "b",
		},
		{
			name:     "preferred affinity outweighs allocation",
			pod:      mkPod("p", prefer(10, "zone", "z1"), prefer(1, "zone", "z2")),
			nodes:    []*NodeInfo{{Node: mkNode("a", "64", "256Gi", withLabel("zone", "z2"))}, {Node: mkNode("b", "2", "4Gi", withLabel("zone", "z1"))}},
			wantNode: "b",
		},
		{
			name:    "only tolerated tainted node fits",
			pod:     mkPod("p", req("3", "")),
			nodes:   []*NodeInfo{{Node: mkNode("a", "2", "4Gi")}, {Node: mkNode("b", "4", "4Gi", withTaint("k", "", v1.TaintEffectNoSchedule))}},
			wantMsg: "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {k: }. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			node, fe := Schedule(tc.pod, tc.nodes)
			if tc.wantMsg != "" {
				if fe == nil {
					t.Fatalf("want failure %q, got node %q", tc.wantMsg, node)
				}
				if got := fe.Error(); got != tc.wantMsg {
					t.Fatalf("message\n got: %s\nwant: %s", got, tc.wantMsg)
				}
				return
			}
			if fe != nil {
				t.Fatalf("unexpected failure: %v", fe)
			}
			if node != tc.wantNode {
				t.Fatalf("got node %q, want %q", node, tc.wantNode)
			}
		})
	}
}
