package kubelet

import (
	"bufio"
	"bytes"
	"context"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-helpers/apimachinery/lease"
)

const (
	// leaseDuration and heartbeat are upstream's defaults (40 s lease,
	// renewed every 10 s; status at least every 10 s when it changes).
	leaseDuration   = 40
	heartbeat       = 10 * time.Second
	statusReportMax = time.Minute
	// evictionReserve is upstream's default memory.available hard eviction
	// threshold, kept out of allocatable.
	evictionReserve = 100 << 20
)

func (k *Kubelet) nodeLabels() map[string]string {
	l := map[string]string{
		v1.LabelHostname:          k.cfg.NodeName,
		v1.LabelOSStable:          goruntime.GOOS,
		v1.LabelArchStable:        goruntime.GOARCH,
		"beta.kubernetes.io/os":   goruntime.GOOS,
		"beta.kubernetes.io/arch": goruntime.GOARCH,
	}
	for key, val := range k.cfg.Labels {
		l[key] = val
	}
	return l
}

// registerNode creates the Node, or brings an existing one's labels up to
// date (a restarted agent keeps its node).
func (k *Kubelet) registerNode(ctx context.Context) error {
	for {
		n, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			node := &v1.Node{
				ObjectMeta: metav1.ObjectMeta{
					Name:        k.cfg.NodeName,
					Labels:      k.nodeLabels(),
					Annotations: map[string]string{"node.alpha.kubernetes.io/ttl": "0"},
				},
			}
			node.Status = k.nodeStatus(nil)
			_, err := k.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
			if err == nil {
				k.log.Info("node registered", "node", k.cfg.NodeName)
				return nil
			}
			if !apierrors.IsAlreadyExists(err) {
				k.log.Warn("registering node", "err", err)
			}
		case err == nil:
			changed := false
			if n.Labels == nil {
				n.Labels = map[string]string{}
			}
			for key, val := range k.nodeLabels() {
				if n.Labels[key] != val {
					n.Labels[key] = val
					changed = true
				}
			}
			if changed {
				if _, err := k.client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
					k.log.Warn("updating node labels", "err", err)
					break
				}
			}
			return nil
		default:
			k.log.Warn("registering node", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-k.clock.After(time.Second):
		}
	}
}

func (k *Kubelet) runLease(ctx context.Context) {
	c := lease.NewController(k.clock, k.client, k.cfg.NodeName, leaseDuration, nil, heartbeat,
		k.cfg.NodeName, v1.NamespaceNodeLease, k.setLeaseOwner)
	c.Run(ctx)
}

// setLeaseOwner makes the Node own its Lease (deleting the node deletes it).
func (k *Kubelet) setLeaseOwner(l *coordinationv1.Lease) error {
	if len(l.OwnerReferences) > 0 {
		return nil
	}
	n, err := k.client.CoreV1().Nodes().Get(context.TODO(), k.cfg.NodeName, metav1.GetOptions{})
	if err != nil {
		return nil // set on a later renewal
	}
	l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
	return nil
}

func (k *Kubelet) runNodeStatus(ctx context.Context) {
	t := k.clock.NewTicker(heartbeat)
	defer t.Stop()
	k.updateNodeStatus(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
			k.updateNodeStatus(ctx)
		}
	}
}

// updateNodeStatus writes the node's status when it changed or has not been
// written for statusReportMax.
func (k *Kubelet) updateNodeStatus(ctx context.Context) {
	for range 3 {
		n, err := k.client.CoreV1().Nodes().Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			// Deleted under us: register again, as upstream's kubelet does.
			if err := k.registerNode(ctx); err != nil {
				return
			}
			continue
		}
		if err != nil {
			return
		}
		st := k.nodeStatus(n)
		if apiequality.Semantic.DeepEqual(withoutHeartbeats(st), withoutHeartbeats(n.Status)) && !stale(n, k.clock.Now()) {
			return
		}
		n.Status = st
		if _, err := k.client.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{}); err == nil || !apierrors.IsConflict(err) {
			if err != nil {
				k.log.Warn("updating node status", "err", err)
			}
			return
		}
	}
}

func stale(n *v1.Node, now time.Time) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return now.Sub(c.LastHeartbeatTime.Time) >= statusReportMax
		}
	}
	return true
}

func withoutHeartbeats(st v1.NodeStatus) v1.NodeStatus {
	st = *st.DeepCopy()
	for i := range st.Conditions {
		st.Conditions[i].LastHeartbeatTime = metav1.Time{}
	}
	return st
}

// nodeStatus computes the node's status; old (may be nil) keeps condition
// transition times.
func (k *Kubelet) nodeStatus(old *v1.Node) v1.NodeStatus {
	now := metav1.NewTime(k.clock.Now())
	capacity := v1.ResourceList{
		v1.ResourceCPU:  *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		v1.ResourcePods: *resource.NewQuantity(int64(k.cfg.MaxPods), resource.DecimalSI),
		"hugepages-2Mi": resource.MustParse("0"),
		"hugepages-1Gi": resource.MustParse("0"),
	}
	allocatable := capacity.DeepCopy()
	if mem := k.memory; mem > 0 {
		capacity[v1.ResourceMemory] = *resource.NewQuantity(mem, resource.BinarySI)
		allocatable[v1.ResourceMemory] = *resource.NewQuantity(max(mem-evictionReserve, 0), resource.BinarySI)
	}
	var fs unix.Statfs_t
	if k.cfg.DataDir != "" && unix.Statfs(k.cfg.DataDir, &fs) == nil {
		total := int64(fs.Blocks) * fs.Bsize
		capacity[v1.ResourceEphemeralStorage] = *resource.NewQuantity(total, resource.BinarySI)
		// Upstream's default nodefs.available hard eviction threshold is 10%.
		allocatable[v1.ResourceEphemeralStorage] = *resource.NewQuantity(total-total/10, resource.BinarySI)
	}
	var addrs []v1.NodeAddress
	for _, ip := range k.cfg.NodeIPs {
		addrs = append(addrs, v1.NodeAddress{Type: v1.NodeInternalIP, Address: ip.String()})
	}
	hostname := k.cfg.Hostname
	if hostname == "" {
		hostname = k.cfg.NodeName
	}
	addrs = append(addrs, v1.NodeAddress{Type: v1.NodeHostName, Address: hostname})

	ready := v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"}
	if !k.networkReady() {
		ready = v1.NodeCondition{Type: v1.NodeReady, Status: v1.ConditionFalse, Reason: "KubeletNotReady",
			Message: "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: waiting for the node's pod CIDR"}
	}
	conds := []v1.NodeCondition{
		{Type: v1.NodeMemoryPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: v1.NodeDiskPressure, Status: v1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: v1.NodePIDPressure, Status: v1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		ready,
	}
	for i := range conds {
		conds[i].LastHeartbeatTime = now
		conds[i].LastTransitionTime = now
		if old != nil {
			for _, oc := range old.Status.Conditions {
				if oc.Type == conds[i].Type && oc.Status == conds[i].Status {
					conds[i].LastTransitionTime = oc.LastTransitionTime
				}
			}
		}
	}
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	st := v1.NodeStatus{
		Capacity:        capacity,
		Allocatable:     allocatable,
		Conditions:      conds,
		Addresses:       addrs,
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: k.cfg.KubeletPort}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID:               readTrim("/etc/machine-id"),
			SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
			BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
			KernelVersion:           unix.ByteSliceToString(uts.Release[:]),
			OSImage:                 osImage(),
			ContainerRuntimeVersion: k.cfg.RuntimeVersion,
			KubeletVersion:          Version,
			OperatingSystem:         goruntime.GOOS,
			Architecture:            goruntime.GOARCH,
		},
	}
	if old != nil {
		st.Images = old.Status.Images
		st.VolumesInUse = old.Status.VolumesInUse
		st.VolumesAttached = old.Status.VolumesAttached
	}
	return st
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	s := bufio.NewScanner(bytes.NewReader(b))
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func osImage() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return "Linux"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return "Linux"
}
