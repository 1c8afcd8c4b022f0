package scheduler

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
)

// Upstream's (k8s.io/kubernetes/pkg/scheduler/framework/plugins/*, v1.32) reasons.
const (
	reasonUnschedulable  = "node(s) were unschedulable"
	reasonNodeAffinity   = "node(s) didn't match Pod's node affinity/selector"
	reasonNodePorts      = "node(s) didn't have free ports for the requested pod ports"
	reasonTooManyPods    = "Too many pods"
	reasonNoVictims      = "No preemption victims found for incoming pod"
	reasonNotHelpful     = "Preemption is not helpful for scheduling"
	msgPreemptionNever   = "not eligible due to preemptionPolicy=Never."
	msgNoNodesAvailable  = "no nodes available to schedule pods"
	taintNodeNotReady    = "node.kubernetes.io/not-ready"
	taintNodeUnreachable = "node.kubernetes.io/unreachable"
	taintUnschedulable   = "node.kubernetes.io/unschedulable"
)

// Scores for pods without requests, as upstream (schedutil.DefaultMilliCPURequest / DefaultMemoryRequest).
var nonZeroDefaults = v1.ResourceList{
	v1.ResourceCPU:    resource.MustParse("100m"),
	v1.ResourceMemory: resource.MustParse("200Mi"),
}

// NodeInfo is a node with the pods that hold resources on it (bound, not terminated).
type NodeInfo struct {
	Node *v1.Node
	Pods []*v1.Pod
}

// NodeStatus is why a node was filtered out. Resolvable is upstream's
// "Unschedulable" code (preemption might help) as opposed to
// "UnschedulableAndUnresolvable".
type NodeStatus struct {
	Reasons    []string
	Resolvable bool
}

// FitError is a pod that fits no node; Error() is upstream's FailedScheduling message.
type FitError struct {
	Pod         *v1.Pod
	NumAllNodes int
	// NodeStatus holds the filter outcome of every node by name.
	NodeStatus map[string]NodeStatus
	// LowerPriorityPods counts, per node, the pods with lower priority than Pod.
	LowerPriorityPods map[string]int
}

// Error formats like upstream's FitError.Error plus the DefaultPreemption PostFilter message.
func (f *FitError) Error() string {
	if f.NumAllNodes == 0 {
		return msgNoNodesAvailable
	}
	reasons := map[string]int{}
	for _, st := range f.NodeStatus {
		for _, r := range st.Reasons {
			reasons[r]++
		}
	}
	msg := fmt.Sprintf("0/%d nodes are available:", f.NumAllNodes)
	if h := histogram(reasons); h != "" {
		msg += " " + h + "."
	}
	return msg + " preemption: " + f.preemptionMessage()
}

// preemptionMessage is what upstream's DefaultPreemption reports when it finds no
// candidate: nodes rejected for resolvable reasons are dry-run (and, without
// lower-priority pods, have no victims); all others are "not helpful".
func (f *FitError) preemptionMessage() string {
	if f.Pod != nil && f.Pod.Spec.PreemptionPolicy != nil && *f.Pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return msgPreemptionNever
	}
	reasons := map[string]int{}
	for name, st := range f.NodeStatus {
		if st.Resolvable && f.LowerPriorityPods[name] == 0 {
			reasons[reasonNoVictims]++
		} else if st.Resolvable {
			// Preemption is not implemented: upstream would evict lower-priority
			// pods; report the node's own reasons instead.
			for _, r := range st.Reasons {
				reasons[r]++
			}
		} else {
			reasons[reasonNotHelpful]++
		}
	}
	return fmt.Sprintf("0/%d nodes are available: %s.", f.NumAllNodes, histogram(reasons))
}

func histogram(reasons map[string]int) string {
	var s []string
	for k, v := range reasons {
		s = append(s, fmt.Sprintf("%v %v", v, k))
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// effectiveTaints are the node's taints plus those upstream's node lifecycle
// controller would add for a node whose Ready condition is not True.
func effectiveTaints(node *v1.Node) []v1.Taint {
	taints := node.Spec.Taints
	ready := v1.ConditionUnknown
	for _, c := range node.Status.Conditions {
		if c.Type == v1.NodeReady {
			ready = c.Status
		}
	}
	key := ""
	switch ready {
	case v1.ConditionTrue:
		return taints
	case v1.ConditionFalse:
		key = taintNodeNotReady
	default:
		key = taintNodeUnreachable
	}
	for _, t := range taints {
		if t.Key == key {
			return taints
		}
	}
	out := append([]v1.Taint{}, taints...)
	return append(out, v1.Taint{Key: key, Effect: v1.TaintEffectNoSchedule})
}

// Filter runs upstream's default filters, in upstream's order, stopping at the
// first that rejects the node. It returns nil when the pod fits.
func Filter(pod *v1.Pod, ni *NodeInfo) *NodeStatus {
	node := ni.Node
	// NodeUnschedulable
	if node.Spec.Unschedulable && !corev1helpers.TolerationsTolerateTaint(pod.Spec.Tolerations,
		&v1.Taint{Key: taintUnschedulable, Effect: v1.TaintEffectNoSchedule}) {
		return &NodeStatus{Reasons: []string{reasonUnschedulable}}
	}
	// TaintToleration
	if taint, bad := corev1helpers.FindMatchingUntoleratedTaint(effectiveTaints(node), pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
	}); bad {
		return &NodeStatus{Reasons: []string{fmt.Sprintf("node(s) had untolerated taint {%s: %s}", taint.Key, taint.Value)}}
	}
	// NodeAffinity (nodeSelector and required affinity)
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); !ok {
		return &NodeStatus{Reasons: []string{reasonNodeAffinity}}
	}
	// NodePorts
	if portsConflict(hostPorts(pod), ni.Pods) {
		return &NodeStatus{Reasons: []string{reasonNodePorts}, Resolvable: true}
	}
	// NodeResourcesFit
	if r := insufficientResources(pod, ni); len(r) > 0 {
		return &NodeStatus{Reasons: r, Resolvable: true}
	}
	return nil
}

func hostPorts(pod *v1.Pod) []v1.ContainerPort {
	var out []v1.ContainerPort
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, p := range c.Ports {
				if p.HostPort > 0 {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

func portsConflict(want []v1.ContainerPort, pods []*v1.Pod) bool {
	if len(want) == 0 {
		return false
	}
	norm := func(p v1.ContainerPort) (string, string) {
		proto, ip := string(p.Protocol), p.HostIP
		if proto == "" {
			proto = string(v1.ProtocolTCP)
		}
		if ip == "" {
			ip = "0.0.0.0"
		}
		return proto, ip
	}
	for _, other := range pods {
		for _, u := range hostPorts(other) {
			up, uip := norm(u)
			for _, w := range want {
				wp, wip := norm(w)
				if w.HostPort == u.HostPort && wp == up && (wip == uip || wip == "0.0.0.0" || uip == "0.0.0.0") {
					return true
				}
			}
		}
	}
	return false
}

// requested sums the requests of pods (upstream's NodeInfo.Requested, or
// NonZeroRequested with defaults for containers that request nothing).
func requested(pods []*v1.Pod, nonZero bool) v1.ResourceList {
	opts := resourcehelper.PodResourcesOptions{}
	if nonZero {
		opts.NonMissingContainerRequests = nonZeroDefaults
	}
	total := v1.ResourceList{}
	for _, p := range pods {
		for name, q := range resourcehelper.PodRequests(p, opts) {
			cur := total[name]
			cur.Add(q)
			total[name] = cur
		}
	}
	return total
}

// insufficientResources mirrors upstream's noderesources fitsRequest reasons and order.
func insufficientResources(pod *v1.Pod, ni *NodeInfo) []string {
	var out []string
	alloc := ni.Node.Status.Allocatable
	if int64(len(ni.Pods))+1 > alloc.Pods().Value() {
		out = append(out, reasonTooManyPods)
	}
	want := resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
	used := requested(ni.Pods, false)
	fits := func(name v1.ResourceName) bool {
		w, ok := want[name]
		if !ok || w.IsZero() {
			return true
		}
		free := alloc[name].DeepCopy()
		free.Sub(used[name])
		return w.Cmp(free) <= 0
	}
	for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage} {
		if !fits(name) {
			out = append(out, "Insufficient "+string(name))
		}
	}
	var scalar []string
	for name := range want {
		switch name {
		case v1.ResourceCPU, v1.ResourceMemory, v1.ResourceEphemeralStorage, v1.ResourcePods:
			continue
		}
		if !fits(name) {
			scalar = append(scalar, "Insufficient "+string(name))
		}
	}
	sort.Strings(scalar)
	return append(out, scalar...)
}

// Score is upstream's default weighting of the two scores implemented here:
// NodeAffinity (preferred terms, normalized to 0-100, weight 2) and
// NodeResourcesFit LeastAllocated over cpu and memory (weight 1).
func Score(pod *v1.Pod, nodes []*NodeInfo) []int64 {
	scores := make([]int64, len(nodes))
	var affinity []int64
	var maxAff int64
	if a := pod.Spec.Affinity; a != nil && a.NodeAffinity != nil && len(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution) > 0 {
		terms, err := nodeaffinity.NewPreferredSchedulingTerms(a.NodeAffinity.PreferredDuringSchedulingIgnoredDuringExecution)
		if err == nil {
			affinity = make([]int64, len(nodes))
			for i, ni := range nodes {
				affinity[i] = terms.Score(ni.Node)
				maxAff = max(maxAff, affinity[i])
			}
		}
	}
	podReq := requested([]*v1.Pod{pod}, true)
	for i, ni := range nodes {
		if affinity != nil && maxAff > 0 {
			scores[i] += 2 * (affinity[i] * 100 / maxAff)
		}
		used := requested(ni.Pods, true)
		var sum int64
		for _, name := range []v1.ResourceName{v1.ResourceCPU, v1.ResourceMemory} {
			alloc := ni.Node.Status.Allocatable[name]
			u := used[name]
			u.Add(podReq[name])
			a, r := alloc.MilliValue(), u.MilliValue()
			if a > 0 && r <= a {
				sum += (a - r) * 100 / a
			}
		}
		scores[i] += sum / 2
	}
	return scores
}

// Schedule picks the node for pod: filter, score, highest score wins, ties go to
// the lexically first node name. It returns a *FitError when no node fits.
func Schedule(pod *v1.Pod, nodes []*NodeInfo) (string, *FitError) {
	fe := &FitError{Pod: pod, NumAllNodes: len(nodes), NodeStatus: map[string]NodeStatus{}, LowerPriorityPods: map[string]int{}}
	var feasible []*NodeInfo
	prio := corev1helpers.PodPriority(pod)
	for _, ni := range nodes {
		st := Filter(pod, ni)
		if st == nil {
			feasible = append(feasible, ni)
			continue
		}
		fe.NodeStatus[ni.Node.Name] = *st
		for _, p := range ni.Pods {
			if corev1helpers.PodPriority(p) < prio {
				fe.LowerPriorityPods[ni.Node.Name]++
			}
		}
	}
	if len(feasible) == 0 {
		return "", fe
	}
	scores := Score(pod, feasible)
	best := 0
	for i := 1; i < len(feasible); i++ {
		if scores[i] > scores[best] || (scores[i] == scores[best] && feasible[i].Node.Name < feasible[best].Node.Name) {
			best = i
		}
	}
	return feasible[best].Node.Name, nil
}
