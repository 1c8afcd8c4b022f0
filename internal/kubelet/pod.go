package kubelet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	v1qos "k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"
	"k8s.io/kubernetes/pkg/kubelet/util/format"
	"k8s.io/utils/ptr"

	"github.com/peapod-dev/peapod/internal/network"
	"github.com/peapod-dev/peapod/internal/runtime"
)

// Labels the agent puts on sandboxes and containers to find them again.
const (
	labelPodUID        = "io.kubernetes.pod.uid"
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelContainerName = "io.kubernetes.container.name"
	// annotationNetwork is the sandbox's key in the network; annotationIPs
	// its addresses, comma-separated.
	annotationNetwork = "peapod.dev/network-id"
	annotationIPs     = "peapod.dev/pod-ips"
	// annotationKind marks init containers.
	annotationKind = "peapod.dev/container-kind"
)

// resyncPeriod is how often a running pod is synced without an event.
const resyncPeriod = time.Minute

// waitingState is why a container is not running, as the status reports it.
type waitingState struct{ reason, message string }

// podState is what one sync learnt about a pod, for its status.
type podState struct {
	sandbox    *runtime.SandboxStatus
	containers map[string][]*runtime.ContainerStatus // by name, oldest first
	waiting    map[string]waitingState
}

// syncPod brings one pod's containers to what its spec asks and reports its
// status. It returns when to look again (0: only on the next event).
func (k *Kubelet) syncPod(ctx context.Context, uid types.UID) (time.Duration, error) {
	pod := k.podByUID(uid)
	if pod == nil {
		k.mu.Lock()
		last := k.lastPods[uid]
		k.mu.Unlock()
		grace := int64(0)
		if last != nil && last.Spec.TerminationGracePeriodSeconds != nil {
			grace = min(*last.Spec.TerminationGracePeriodSeconds, 2)
		}
		if err := k.killPod(ctx, uid, last, grace); err != nil {
			return 0, err
		}
		if err := k.cleanupPod(ctx, uid); err != nil {
			return 0, err
		}
		k.forget(uid)
		return 0, nil
	}
	if pod.DeletionTimestamp != nil {
		grace := int64(30)
		if pod.DeletionGracePeriodSeconds != nil {
			grace = *pod.DeletionGracePeriodSeconds
		}
		if err := k.killPod(ctx, uid, pod, grace); err != nil {
			return 0, err
		}
		if err := k.cleanupPod(ctx, uid); err != nil {
			return 0, err
		}
		err := k.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
			GracePeriodSeconds: ptr.To[int64](0),
			Preconditions:      &metav1.Preconditions{UID: &pod.UID},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return 0, fmt.Errorf("delete pod %s/%s: %w", pod.Namespace, pod.Name, err)
		}
		return 0, nil
	}
	k.mu.Lock()
	k.lastPods[uid] = pod
	k.mu.Unlock()
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		// Terminal: nothing restarts; the sandbox and its network go, the
		// containers' records (logs) stay until the pod is deleted.
		k.prober.RemovePod(uid)
		return 0, k.stopSandboxes(ctx, uid)
	}

	if d, exceeded := k.pastDeadline(pod); exceeded {
		return 0, k.failPastDeadline(ctx, pod)
	} else if d > 0 {
		defer k.queue.AddAfter(uid, d)
	}
	st := &podState{waiting: map[string]waitingState{}}
	requeue, err := k.reconcile(ctx, pod, st)
	if serr := k.writeStatus(ctx, pod, st); serr != nil && err == nil {
		err = serr
	}
	if requeue == 0 {
		// Running pods are looked at again now and then, as upstream's
		// kubelet does: volumes' sources may have changed, tokens expire.
		requeue = resyncPeriod
	}
	return requeue, err
}

// pastDeadline reports whether the pod has run longer than its
// activeDeadlineSeconds, or else how long until it will have.
func (k *Kubelet) pastDeadline(pod *v1.Pod) (time.Duration, bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || pod.Status.StartTime == nil {
		return 0, false
	}
	left := pod.Status.StartTime.Add(time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second).Sub(k.clock.Now())
	return left, left <= 0
}

// failPastDeadline stops the pod and marks it Failed with reason
// DeadlineExceeded, as upstream does.
func (k *Kubelet) failPastDeadline(ctx context.Context, pod *v1.Pod) error {
	const msg = "Pod was active on the node longer than the specified deadline"
	k.event(pod, "", v1.EventTypeNormal, "DeadlineExceeded", msg)
	if err := k.killPod(ctx, pod.UID, pod, ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30)); err != nil {
		return err
	}
	st := &podState{waiting: map[string]waitingState{}}
	if err := k.loadContainers(ctx, pod.UID, st); err != nil {
		return err
	}
	status := k.podStatus(ctx, pod, st)
	status.Phase, status.Reason, status.Message = v1.PodFailed, "DeadlineExceeded", msg
	for i, c := range status.Conditions {
		if c.Type == v1.PodReady || c.Type == v1.ContainersReady {
			status.Conditions[i].Status, status.Conditions[i].Reason = v1.ConditionFalse, "PodFailed"
		}
	}
	p := pod.DeepCopy()
	p.Status = *status
	_, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	return err
}

func (k *Kubelet) forget(uid types.UID) {
	k.prober.RemovePod(uid)
	k.mu.Lock()
	delete(k.lastPods, uid)
	k.mu.Unlock()
}

// reconcile runs the pod's sandbox and containers, recording in st what it
// found and why containers wait.
func (k *Kubelet) reconcile(ctx context.Context, pod *v1.Pod, st *podState) (time.Duration, error) {
	if !pod.Spec.HostNetwork && !k.networkReady() {
		return 0, nil // queued again when the network is up
	}
	cg, err := k.podCgroup(pod)
	if err != nil {
		return 0, err
	}
	if err := k.cfg.Volumes.Setup(ctx, pod); err != nil {
		// One event per failing volume, in the volume manager's words.
		errs := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			errs = j.Unwrap()
		}
		for _, e := range errs {
			k.event(pod, "", v1.EventTypeWarning, "FailedMount", "%v", e)
		}
		return 5 * time.Second, nil
	}
	sb, err := k.ensureSandbox(ctx, pod, cg)
	if err != nil {
		k.event(pod, "", v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
		return 5 * time.Second, err
	}
	st.sandbox = sb
	if err := k.loadContainers(ctx, pod.UID, st); err != nil {
		return 0, err
	}
	if k.killUnhealthy(ctx, pod, st) {
		if err := k.loadContainers(ctx, pod.UID, st); err != nil {
			return 0, err
		}
	}

	var requeue time.Duration
	later := func(d time.Duration) {
		if d > 0 && (requeue == 0 || d < requeue) {
			requeue = d
		}
	}
	// Init containers, one at a time, in order.
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		cur := st.current(c.Name, sb.ID)
		switch {
		case cur == nil:
			d, err := k.startContainer(ctx, pod, sb, c, true, st, nextAttempt(st.containers[c.Name]))
			later(d)
			if err != nil || !sidecar {
				return requeue, err
			}
		case cur.State == runtime.ContainerRunning:
			if !sidecar {
				return requeue, nil
			}
		case cur.State == runtime.ContainerCreated:
			if err := k.cfg.Runtime.StartContainer(ctx, cur.ID); err != nil {
				return requeue, err
			}
			if !sidecar {
				return requeue, nil
			}
		case cur.State == runtime.ContainerExited:
			if !sidecar && cur.ExitCode == 0 {
				continue
			}
			if !sidecar && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
				return requeue, nil // the pod failed
			}
			d, err := k.restartContainer(ctx, pod, sb, c, true, st, cur)
			later(d)
			if err != nil || !sidecar {
				return requeue, err
			}
		}
	}
	// App containers, together.
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cur := st.current(c.Name, sb.ID)
		switch {
		case cur == nil:
			d, err := k.startContainer(ctx, pod, sb, c, false, st, nextAttempt(st.containers[c.Name]))
			later(d)
			if err != nil {
				k.log.Warn("starting container", "pod", format.Pod(pod), "container", c.Name, "err", err)
			}
		case cur.State == runtime.ContainerCreated:
			if err := k.cfg.Runtime.StartContainer(ctx, cur.ID); err != nil {
				k.log.Warn("starting container", "pod", format.Pod(pod), "container", c.Name, "err", err)
			}
		case cur.State == runtime.ContainerExited:
			if !shouldRestart(pod.Spec.RestartPolicy, cur.ExitCode) {
				continue
			}
			d, err := k.restartContainer(ctx, pod, sb, c, false, st, cur)
			later(d)
			if err != nil {
				k.log.Warn("restarting container", "pod", format.Pod(pod), "container", c.Name, "err", err)
			}
		}
	}
	// Ephemeral containers (kubectl debug) run once, never restarted.
	for i := range pod.Spec.EphemeralContainers {
		ec := &pod.Spec.EphemeralContainers[i]
		if len(st.containers[ec.Name]) > 0 {
			continue
		}
		c := v1.Container(ec.EphemeralContainerCommon)
		target := ""
		if ec.TargetContainerName != "" {
			cur := st.current(ec.TargetContainerName, sb.ID)
			if cur == nil || cur.State != runtime.ContainerRunning {
				st.waiting[ec.Name] = waitingState{"ContainerCreating", "waiting for target container " + ec.TargetContainerName}
				later(time.Second)
				continue
			}
			target = cur.ID
		}
		d, err := k.startContainerWith(ctx, pod, sb, &c, kindEphemeral, st, 0, target)
		later(d)
		if err != nil {
			k.log.Warn("starting ephemeral container", "pod", format.Pod(pod), "container", ec.Name, "err", err)
		}
	}
	// What started above is reported as it is now.
	if err := k.loadContainers(ctx, pod.UID, st); err != nil {
		return requeue, err
	}
	k.updateProbes(pod, st)
	return requeue, nil
}

func shouldRestart(policy v1.RestartPolicy, exit int32) bool {
	return policy == v1.RestartPolicyAlways || policy == "" || (policy == v1.RestartPolicyOnFailure && exit != 0)
}

func nextAttempt(instances []*runtime.ContainerStatus) uint32 {
	if len(instances) == 0 {
		return 0
	}
	return instances[len(instances)-1].Attempt + 1
}

// current is the newest instance of container name in sandbox sbID.
func (st *podState) current(name, sbID string) *runtime.ContainerStatus {
	in := st.containers[name]
	if len(in) == 0 || in[len(in)-1].SandboxID != sbID {
		return nil
	}
	return in[len(in)-1]
}

func (k *Kubelet) loadContainers(ctx context.Context, uid types.UID, st *podState) error {
	cs, err := k.cfg.Runtime.ListContainers(ctx, runtime.ContainerFilter{Labels: map[string]string{labelPodUID: string(uid)}})
	if err != nil {
		return err
	}
	st.containers = map[string][]*runtime.ContainerStatus{}
	for _, c := range cs {
		n := c.Labels[labelContainerName]
		st.containers[n] = append(st.containers[n], c)
	}
	for _, in := range st.containers {
		slices.SortFunc(in, func(a, b *runtime.ContainerStatus) int { return int(a.Attempt) - int(b.Attempt) })
	}
	return nil
}

// restartContainer starts a new instance of an exited container unless it is
// backing off.
func (k *Kubelet) restartContainer(ctx context.Context, pod *v1.Pod, sb *runtime.SandboxStatus, c *v1.Container, init bool, st *podState, prev *runtime.ContainerStatus) (time.Duration, error) {
	key := string(pod.UID) + "/" + c.Name
	now := k.clock.Now()
	if k.crashBackOff.IsInBackOffSince(key, prev.FinishedAt) {
		d := k.crashBackOff.Get(key)
		st.waiting[c.Name] = waitingState{"CrashLoopBackOff",
			fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", d, c.Name, format.Pod(pod))}
		k.event(pod, fieldPath(pod, c.Name), v1.EventTypeWarning, "BackOff",
			"Back-off restarting failed container %s in pod %s", c.Name, format.Pod(pod))
		return max(prev.FinishedAt.Add(d).Sub(now), 10*time.Millisecond), nil
	}
	k.crashBackOff.Next(key, now)
	return k.startContainer(ctx, pod, sb, c, init, st, prev.Attempt+1)
}

// Container kinds, as recorded on the runtime's containers.
const (
	kindApp       = ""
	kindInit      = "init"
	kindEphemeral = "ephemeral"
)

// startContainer pulls the image, creates and starts one container instance.
func (k *Kubelet) startContainer(ctx context.Context, pod *v1.Pod, sb *runtime.SandboxStatus, c *v1.Container, init bool, st *podState, attempt uint32) (time.Duration, error) {
	kind := kindApp
	if init {
		kind = kindInit
	}
	return k.startContainerWith(ctx, pod, sb, c, kind, st, attempt, "")
}

// startContainerWith is startContainer for any kind of container; target is
// the runtime ID of the container whose PID namespace it joins ("" for none).
func (k *Kubelet) startContainerWith(ctx context.Context, pod *v1.Pod, sb *runtime.SandboxStatus, c *v1.Container, kind string, st *podState, attempt uint32, target string) (time.Duration, error) {
	fp := fieldPath(pod, c.Name)
	img, d, ok := k.ensureImage(ctx, pod, c, fp, st)
	if !ok {
		return d, nil
	}
	holder := fmt.Sprintf("%s_%s_%d", pod.UID, c.Name, attempt)
	lower, icfg, err := k.cfg.Images.Acquire(ctx, holder, c.Image)
	if err != nil {
		st.waiting[c.Name] = waitingState{"CreateContainerError", err.Error()}
		k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 5 * time.Second, nil
	}
	cc, err := k.containerConfig(ctx, pod, sb, c, attempt, lower, icfg)
	if err != nil {
		_ = k.cfg.Images.Release(holder)
		st.waiting[c.Name] = waitingState{"CreateContainerConfigError", err.Error()}
		k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 5 * time.Second, nil
	}
	cc.Annotations[annotationHolder] = holder
	// The status reports the image the instance runs, resolved once here.
	cc.Annotations[annotationImageID] = img.RepoDigest
	if img.RepoDigest == "" {
		cc.Annotations[annotationImageID] = img.ID
	}
	if kind != kindApp {
		cc.Annotations[annotationKind] = kind
	}
	cc.TargetContainerID = target
	id, err := k.cfg.Runtime.CreateContainer(ctx, sb.ID, *cc)
	if err != nil {
		_ = k.cfg.Images.Release(holder)
		st.waiting[c.Name] = waitingState{"CreateContainerError", err.Error()}
		k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 5 * time.Second, nil
	}
	k.event(pod, fp, v1.EventTypeNormal, "Created", "Created container: %s", c.Name)
	if err := k.cfg.Runtime.StartContainer(ctx, id); err != nil {
		st.waiting[c.Name] = waitingState{"RunContainerError", err.Error()}
		k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: %v", err)
		return 5 * time.Second, nil
	}
	k.event(pod, fp, v1.EventTypeNormal, "Started", "Started container %s", c.Name)
	k.pruneInstances(ctx, pod.UID, c.Name)
	if c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		// The container is not Running until its postStart hook returned;
		// a failing hook kills it, and it restarts as its policy says.
		grace := ptr.Deref(pod.Spec.TerminationGracePeriodSeconds, 30)
		hctx, cancel := context.WithTimeout(ctx, time.Duration(max(grace, 1))*time.Second)
		ip, _, _ := strings.Cut(sb.Annotations[annotationIPs], ",")
		err := k.runHook(hctx, pod, c, id, ip, c.Lifecycle.PostStart)
		cancel()
		if err != nil {
			k.event(pod, fp, v1.EventTypeWarning, "FailedPostStartHook", "%v", err)
			st, serr := k.cfg.Runtime.ContainerStatus(ctx, id)
			if serr == nil {
				_ = k.killContainer(ctx, pod, st, k.clock.Now().Add(time.Duration(grace)*time.Second), "FailedPostStartHook")
			}
		}
	}
	return 0, nil
}

// annotationImageID is the image an instance runs, as imageID reports it.
const annotationImageID = "peapod.dev/image-id"

// annotationHolder records which image holder a container's layers are
// pinned for.
const annotationHolder = "peapod.dev/image-holder"

// pruneInstances keeps the newest two instances of a container (the current
// and the previous one, for `kubectl logs --previous` and lastState).
func (k *Kubelet) pruneInstances(ctx context.Context, uid types.UID, name string) {
	cs, err := k.cfg.Runtime.ListContainers(ctx, runtime.ContainerFilter{Labels: map[string]string{labelPodUID: string(uid), labelContainerName: name}})
	if err != nil || len(cs) <= 2 {
		return
	}
	slices.SortFunc(cs, func(a, b *runtime.ContainerStatus) int { return int(a.Attempt) - int(b.Attempt) })
	for _, c := range cs[:len(cs)-2] {
		k.removeContainer(ctx, c)
	}
}

func (k *Kubelet) removeContainer(ctx context.Context, c *runtime.ContainerStatus) {
	if err := k.cfg.Runtime.RemoveContainer(ctx, c.ID); err != nil {
		k.log.Warn("removing container", "id", c.ID, "err", err)
		return
	}
	if h := c.Annotations[annotationHolder]; h != "" {
		_ = k.cfg.Images.Release(h)
	}
	if c.LogPath != "" && strings.HasPrefix(c.LogPath, k.cfg.LogsDir) {
		_ = os.Remove(c.LogPath)
	}
}

// ensureSandbox returns the pod's ready sandbox, creating it (network first)
// when there is none.
func (k *Kubelet) ensureSandbox(ctx context.Context, pod *v1.Pod, cgroup string) (*runtime.SandboxStatus, error) {
	sbs, err := k.sandboxes(ctx, pod.UID)
	if err != nil {
		return nil, err
	}
	var attempt uint32
	for _, sb := range sbs {
		if sb.State == runtime.SandboxReady {
			return sb, nil
		}
		attempt = max(attempt, sb.Attempt+1)
	}
	// A dead sandbox: its containers are killed before the new one starts.
	for _, sb := range sbs {
		_ = k.cfg.Runtime.StopPodSandbox(ctx, sb.ID)
		if id := sb.Annotations[annotationNetwork]; id != "" {
			_ = k.cfg.Network.Teardown(ctx, id)
		}
	}
	netID := fmt.Sprintf("%s-%d", pod.UID, attempt)
	var ips []string
	var netns string
	if !pod.Spec.HostNetwork {
		att, err := k.cfg.Network.Setup(ctx, network.PodRef{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), SandboxID: netID}, hostPorts(pod))
		if err != nil {
			return nil, fmt.Errorf("network: %w", err)
		}
		netns = att.NetNSPath
		for _, ip := range att.IPs {
			ips = append(ips, ip.String())
		}
	} else {
		for _, ip := range k.cfg.NodeIPs {
			ips = append(ips, ip.String())
		}
	}
	privileged := false
	for _, c := range allContainers(pod) {
		if c.SecurityContext != nil && ptr.Deref(c.SecurityContext.Privileged, false) {
			privileged = true
		}
	}
	sysctls := map[string]string{}
	if sc := pod.Spec.SecurityContext; sc != nil {
		for _, s := range sc.Sysctls {
			sysctls[s.Name] = s.Value
		}
	}
	handler, err := k.runtimeHandler(ctx, pod)
	if err != nil {
		if !pod.Spec.HostNetwork {
			_ = k.cfg.Network.Teardown(ctx, netID)
		}
		return nil, err
	}
	cfg := runtime.SandboxConfig{
		RuntimeHandler: handler,
		Name:           pod.Name, Namespace: pod.Namespace, UID: string(pod.UID), Attempt: attempt,
		Hostname: podHostname(pod),
		Labels: map[string]string{
			labelPodUID: string(pod.UID), labelPodName: pod.Name, labelPodNamespace: pod.Namespace,
		},
		Annotations:  map[string]string{annotationNetwork: netID, annotationIPs: strings.Join(ips, ",")},
		HostNetwork:  pod.Spec.HostNetwork,
		NetNSPath:    netns,
		HostIPC:      pod.Spec.HostIPC,
		HostPID:      pod.Spec.HostPID,
		SharePID:     ptr.Deref(pod.Spec.ShareProcessNamespace, false),
		CgroupParent: cgroup,
		Sysctls:      sysctls,
		Privileged:   privileged,
	}
	if err := k.writePodFiles(pod, ips); err != nil {
		_ = k.cfg.Network.Teardown(ctx, netID)
		return nil, err
	}
	id, err := k.cfg.Runtime.RunPodSandbox(ctx, cfg)
	if err != nil {
		_ = k.cfg.Network.Teardown(ctx, netID)
		return nil, err
	}
	return k.cfg.Runtime.SandboxStatus(ctx, id)
}

func (k *Kubelet) sandboxes(ctx context.Context, uid types.UID) ([]*runtime.SandboxStatus, error) {
	all, err := k.cfg.Runtime.ListPodSandboxes(ctx)
	if err != nil {
		return nil, err
	}
	var out []*runtime.SandboxStatus
	for _, sb := range all {
		if sb.Labels[labelPodUID] == string(uid) {
			out = append(out, sb)
		}
	}
	return out, nil
}

func hostPorts(pod *v1.Pod) []network.PortMapping {
	var out []network.PortMapping
	for _, c := range allContainers(pod) {
		for _, p := range c.Ports {
			if p.HostPort == 0 {
				continue
			}
			out = append(out, network.PortMapping{HostPort: p.HostPort, ContainerPort: p.ContainerPort,
				Protocol: strings.ToLower(string(p.Protocol)), HostIP: p.HostIP})
		}
	}
	return out
}

func allContainers(pod *v1.Pod) []v1.Container {
	return append(slices.Clone(pod.Spec.InitContainers), pod.Spec.Containers...)
}

func podHostname(pod *v1.Pod) string {
	h := pod.Name
	if pod.Spec.Hostname != "" {
		h = pod.Spec.Hostname
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}

// fieldPath is the event field path of container name in pod.
func fieldPath(pod *v1.Pod, name string) string {
	for _, c := range pod.Spec.InitContainers {
		if c.Name == name {
			return "spec.initContainers{" + name + "}"
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == name {
			return "spec.ephemeralContainers{" + name + "}"
		}
	}
	return "spec.containers{" + name + "}"
}

func (k *Kubelet) event(pod *v1.Pod, fieldPath, typ, reason, msgFmt string, args ...any) {
	if k.recorder == nil {
		return
	}
	ref := &v1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name,
		UID: pod.UID, ResourceVersion: pod.ResourceVersion, FieldPath: fieldPath}
	k.recorder.Eventf(ref, typ, reason, msgFmt, args...)
}

// killPod stops every container of the pod and its sandboxes: app
// containers together first, then sidecars in reverse order, each after its
// preStop hook; grace seconds, counted from the start, bound it all (then
// SIGKILL).
func (k *Kubelet) killPod(ctx context.Context, uid types.UID, pod *v1.Pod, grace int64) error {
	cs, err := k.cfg.Runtime.ListContainers(ctx, runtime.ContainerFilter{Labels: map[string]string{labelPodUID: string(uid)}})
	if err != nil {
		return err
	}
	deadline := k.clock.Now().Add(time.Duration(grace) * time.Second)
	var apps, sidecars []*runtime.ContainerStatus
	for _, c := range cs {
		if c.State == runtime.ContainerExited {
			continue
		}
		if pod != nil && isSidecarName(pod, c.Labels[labelContainerName]) {
			sidecars = append(sidecars, c)
		} else {
			apps = append(apps, c)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(apps))
	for i, c := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = k.killContainer(ctx, pod, c, deadline, "")
		}()
	}
	wg.Wait()
	// Sidecars stop after the app containers, the last started first.
	slices.SortFunc(sidecars, func(a, b *runtime.ContainerStatus) int {
		return sidecarIndex(pod, b.Labels[labelContainerName]) - sidecarIndex(pod, a.Labels[labelContainerName])
	})
	for _, c := range sidecars {
		errs = append(errs, k.killContainer(ctx, pod, c, deadline, ""))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return k.stopSandboxes(ctx, uid)
}

// killContainer runs the container's preStop hook (when it runs and the pod
// is known), then stops it with what is left until deadline. message is the
// Killing event's text ("" for upstream's "Stopping container NAME").
func (k *Kubelet) killContainer(ctx context.Context, pod *v1.Pod, c *runtime.ContainerStatus, deadline time.Time, message string) error {
	name := c.Labels[labelContainerName]
	if pod != nil && c.State == runtime.ContainerRunning {
		if message == "" {
			message = "Stopping container " + name
		}
		k.event(pod, fieldPath(pod, name), v1.EventTypeNormal, "Killing", "%s", message)
		if spec := containerSpec(pod, name); spec != nil && spec.Lifecycle != nil && spec.Lifecycle.PreStop != nil {
			hctx, cancel := context.WithDeadline(ctx, deadline)
			sb, _ := k.cfg.Runtime.SandboxStatus(ctx, c.SandboxID)
			ip := ""
			if sb != nil {
				ip, _, _ = strings.Cut(sb.Annotations[annotationIPs], ",")
			}
			if err := k.runHook(hctx, pod, spec, c.ID, ip, spec.Lifecycle.PreStop); err != nil {
				k.event(pod, fieldPath(pod, name), v1.EventTypeWarning, "FailedPreStopHook", "%v", err)
			}
			cancel()
		}
	}
	remaining := max(deadline.Sub(k.clock.Now()), 0)
	return k.cfg.Runtime.StopContainer(ctx, c.ID, remaining, stopSignal(c))
}

// containerSpec finds a container (init, app or ephemeral) of pod by name.
func containerSpec(pod *v1.Pod, name string) *v1.Container {
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == name {
			return &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	for i := range pod.Spec.EphemeralContainers {
		if pod.Spec.EphemeralContainers[i].Name == name {
			c := v1.Container(pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
			return &c
		}
	}
	return nil
}

func isSidecarName(pod *v1.Pod, name string) bool { return sidecarIndex(pod, name) >= 0 }

// sidecarIndex is the position of sidecar name among the init containers, or -1.
func sidecarIndex(pod *v1.Pod, name string) int {
	if pod == nil {
		return -1
	}
	for i := range pod.Spec.InitContainers {
		if c := &pod.Spec.InitContainers[i]; c.Name == name && isSidecar(c) {
			return i
		}
	}
	return -1
}

func stopSignal(c *runtime.ContainerStatus) syscall.Signal {
	if s, err := strconv.Atoi(c.Annotations[annotationStopSignal]); err == nil && s > 0 {
		return syscall.Signal(s)
	}
	return syscall.SIGTERM
}

// annotationStopSignal is the image's STOPSIGNAL as a number.
const annotationStopSignal = "peapod.dev/stop-signal"

// stopSandboxes stops the pod's sandboxes and detaches their network.
func (k *Kubelet) stopSandboxes(ctx context.Context, uid types.UID) error {
	sbs, err := k.sandboxes(ctx, uid)
	if err != nil {
		return err
	}
	for _, sb := range sbs {
		if sb.State == runtime.SandboxReady {
			if err := k.cfg.Runtime.StopPodSandbox(ctx, sb.ID); err != nil {
				return err
			}
		}
		if id := sb.Annotations[annotationNetwork]; id != "" {
			if err := k.cfg.Network.Teardown(ctx, id); err != nil {
				return err
			}
		}
	}
	return nil
}

// cleanupPod removes every trace of a stopped pod: sandboxes and containers,
// volumes, per-pod files, logs, cgroup.
func (k *Kubelet) cleanupPod(ctx context.Context, uid types.UID) error {
	sbs, err := k.sandboxes(ctx, uid)
	if err != nil {
		return err
	}
	cs, _ := k.cfg.Runtime.ListContainers(ctx, runtime.ContainerFilter{Labels: map[string]string{labelPodUID: string(uid)}})
	for _, c := range cs {
		k.removeContainer(ctx, c)
	}
	for _, sb := range sbs {
		if err := k.cfg.Runtime.RemovePodSandbox(ctx, sb.ID); err != nil {
			return err
		}
		if sb.CgroupParent != "" {
			_ = k.cfg.Cgroups.Remove(sb.CgroupParent)
		}
	}
	if err := k.cfg.Volumes.Teardown(ctx, uid); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(k.cfg.PodsDir, string(uid)))
	if dirs, _ := filepath.Glob(filepath.Join(k.cfg.LogsDir, "*_"+string(uid))); len(dirs) > 0 {
		for _, d := range dirs {
			_ = os.RemoveAll(d)
		}
	}
	return nil
}

// podCgroup creates the pod's cgroup in the QoS tree under the node's cgroup
// root: ROOT/pod<uid> (Guaranteed) or ROOT/{burstable,besteffort}/pod<uid>.
func (k *Kubelet) podCgroup(pod *v1.Pod) (string, error) {
	p := k.cfg.CgroupRoot
	switch v1qos.GetPodQOS(pod) {
	case v1.PodQOSBurstable:
		p = filepath.Join(p, "burstable")
	case v1.PodQOSBestEffort:
		p = filepath.Join(p, "besteffort")
	}
	p = filepath.Join(p, "pod"+string(pod.UID))
	if err := k.cfg.Cgroups.Create(p); err != nil {
		return "", err
	}
	return p, nil
}

// runtimeHandler resolves the pod's RuntimeClass to its runtime handler.
func (k *Kubelet) runtimeHandler(ctx context.Context, pod *v1.Pod) (string, error) {
	if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName == "" {
		return "", nil
	}
	rc, err := k.client.NodeV1().RuntimeClasses().Get(ctx, *pod.Spec.RuntimeClassName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", fmt.Errorf("RuntimeClass %q not found", *pod.Spec.RuntimeClassName)
	}
	if err != nil {
		return "", err
	}
	return rc.Handler, nil
}
