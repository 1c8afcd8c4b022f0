package kubelet

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	v1qos "k8s.io/kubernetes/pkg/apis/core/v1/helper/qos"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// containerIDPrefix is the runtime type in container IDs ("TYPE://ID").
const containerIDPrefix = "peapod://"

// maxTerminationMessage is upstream's limit on a termination message.
const maxTerminationMessage = 4096

// writeStatus computes the pod's status from what st found and writes it when
// it changed.
func (k *Kubelet) writeStatus(ctx context.Context, pod *v1.Pod, st *podState) error {
	status := k.podStatus(ctx, pod, st)
	if apiequality.Semantic.DeepEqual(status, &pod.Status) {
		return nil
	}
	p := pod.DeepCopy()
	p.Status = *status
	_, err := k.client.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // a newer object is on its way through the informer
	}
	return err
}

func (k *Kubelet) podStatus(ctx context.Context, pod *v1.Pod, st *podState) *v1.PodStatus {
	s := pod.Status.DeepCopy()
	s.HostIP, s.HostIPs = "", nil
	for i, ip := range k.cfg.NodeIPs {
		if i == 0 {
			s.HostIP = ip.String()
		}
		s.HostIPs = append(s.HostIPs, v1.HostIP{IP: ip.String()})
	}
	if st.sandbox != nil {
		s.PodIP, s.PodIPs = "", nil
		for i, ip := range strings.Split(st.sandbox.Annotations[annotationIPs], ",") {
			if ip == "" {
				continue
			}
			if i == 0 {
				s.PodIP = ip
			}
			s.PodIPs = append(s.PodIPs, v1.PodIP{IP: ip})
		}
	}
	// The pod started on this node when its first sandbox was made.
	if s.StartTime == nil && st.sandbox != nil {
		s.StartTime = &metav1.Time{Time: st.sandbox.CreatedAt}
	}
	s.QOSClass = v1qos.GetPodQOS(pod)

	initDone := true
	s.InitContainerStatuses = nil
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := k.containerStatus(ctx, pod, c, st, true, true)
		s.InitContainerStatuses = append(s.InitContainerStatuses, cs)
		if !isSidecar(c) && (cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0) {
			initDone = false
		}
	}
	s.ContainerStatuses = nil
	for i := range pod.Spec.Containers {
		s.ContainerStatuses = append(s.ContainerStatuses, k.containerStatus(ctx, pod, &pod.Spec.Containers[i], st, false, initDone))
	}
	s.EphemeralContainerStatuses = nil
	for i := range pod.Spec.EphemeralContainers {
		c := v1.Container(pod.Spec.EphemeralContainers[i].EphemeralContainerCommon)
		cs := k.containerStatus(ctx, pod, &c, st, false, true)
		cs.Ready, cs.Started = false, nil
		if cs.State.Running != nil {
			cs.Started = ptrTo(true)
		}
		s.EphemeralContainerStatuses = append(s.EphemeralContainerStatuses, cs)
	}
	s.Phase = phase(pod, s.InitContainerStatuses, s.ContainerStatuses)
	k.setConditions(pod, s, st)
	return s
}

func isSidecar(c *v1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
}

func (k *Kubelet) containerStatus(ctx context.Context, pod *v1.Pod, c *v1.Container, st *podState, init, initDone bool) v1.ContainerStatus {
	cs := v1.ContainerStatus{Name: c.Name, Image: c.Image}
	in := st.containers[c.Name]
	var cur *runtime.ContainerStatus
	if len(in) > 0 {
		cur = in[len(in)-1]
		cs.ImageID = cur.Annotations[annotationImageID]
		cs.RestartCount = int32(cur.Attempt)
		cs.ContainerID = containerIDPrefix + cur.ID
		switch cur.State {
		case runtime.ContainerRunning:
			cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.StartedAt)}
			started := k.prober.Started(pod.UID, c.Name)
			cs.Started = ptrTo(started)
			cs.Ready = started && k.prober.Ready(pod.UID, c.Name)
		case runtime.ContainerCreated:
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: "ContainerCreating"}
			cs.Started = ptrTo(false)
		case runtime.ContainerExited:
			cs.State.Terminated = k.terminated(pod, c, cur)
			cs.Started = ptrTo(false)
		}
		if len(in) > 1 {
			cs.LastTerminationState.Terminated = k.terminated(pod, c, in[len(in)-2])
		}
	}
	if w, ok := st.waiting[c.Name]; ok {
		if cur != nil && cur.State == runtime.ContainerExited {
			cs.LastTerminationState.Terminated = cs.State.Terminated
		}
		cs.State = v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: w.reason, Message: w.message}}
		cs.Ready = false
	} else if cur == nil {
		reason := "ContainerCreating"
		if init || !initDone {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason}
		cs.Started = ptrTo(false)
	}
	return cs
}

func ptrTo[T any](v T) *T { return &v }

func (k *Kubelet) terminated(pod *v1.Pod, c *v1.Container, in *runtime.ContainerStatus) *v1.ContainerStateTerminated {
	t := &v1.ContainerStateTerminated{
		ExitCode:    in.ExitCode,
		Reason:      in.Reason,
		Message:     in.Message,
		StartedAt:   metav1.NewTime(in.StartedAt),
		FinishedAt:  metav1.NewTime(in.FinishedAt),
		ContainerID: containerIDPrefix + in.ID,
	}
	if msg := readLimited(terminationLogPath(k.cfg.PodsDir, pod, c.Name, in.Attempt)); msg != "" {
		t.Message = msg
	} else if c.TerminationMessagePolicy == v1.TerminationMessageFallbackToLogsOnError && in.ExitCode != 0 {
		t.Message = logTail(in.LogPath, 80, 2048)
	}
	return t
}

func readLimited(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, maxTerminationMessage)
	n, _ := f.Read(b)
	return string(b[:n])
}

// logTail returns the last lines (at most maxBytes) of a CRI-format log.
func logTail(path string, lines, maxBytes int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var out []string
	for _, l := range bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n")) {
		// TIMESTAMP STREAM TAG CONTENT
		f := bytes.SplitN(l, []byte(" "), 4)
		if len(f) != 4 {
			continue
		}
		if bytes.Equal(f[2], []byte("P")) && len(out) > 0 {
			out[len(out)-1] += string(f[3])
			continue
		}
		out = append(out, string(f[3]))
	}
	if len(out) > lines {
		out = out[len(out)-lines:]
	}
	s := strings.Join(out, "\n")
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
	}
	return s
}

// phase is upstream's pod phase from container statuses (seed 000's
// definitions): Pending until every container started, Running while one
// runs or will restart, Succeeded when all ended with 0 and none restarts,
// Failed when all ended and one failed.
func phase(pod *v1.Pod, initStatuses, statuses []v1.ContainerStatus) v1.PodPhase {
	pendingInit, failedInit := 0, 0
	for i, c := range pod.Spec.InitContainers {
		if isSidecar(&c) {
			continue
		}
		cs := initStatuses[i]
		switch {
		case cs.State.Running != nil:
			pendingInit++
		case cs.State.Terminated != nil:
			if cs.State.Terminated.ExitCode != 0 {
				failedInit++
			}
		case cs.State.Waiting != nil:
			if t := cs.LastTerminationState.Terminated; t != nil {
				if t.ExitCode != 0 {
					failedInit++
				}
			} else {
				pendingInit++
			}
		default:
			pendingInit++
		}
	}
	unknown, running, waiting, stopped, succeeded := 0, 0, 0, 0, 0
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil:
			if cs.LastTerminationState.Terminated != nil {
				stopped++
			} else {
				waiting++
			}
		default:
			unknown++
		}
	}
	if failedInit > 0 && pod.Spec.RestartPolicy == v1.RestartPolicyNever {
		return v1.PodFailed
	}
	switch {
	case pendingInit > 0, waiting > 0:
		return v1.PodPending
	case running > 0 && unknown == 0:
		return v1.PodRunning
	case running == 0 && stopped > 0 && unknown == 0:
		if pod.Spec.RestartPolicy == v1.RestartPolicyAlways {
			return v1.PodRunning
		}
		if stopped == succeeded {
			return v1.PodSucceeded
		}
		if pod.Spec.RestartPolicy == v1.RestartPolicyNever {
			return v1.PodFailed
		}
		return v1.PodRunning
	default:
		return v1.PodPending
	}
}

// setConditions sets PodReadyToStartContainers, Initialized, ContainersReady
// and Ready with upstream's reasons and messages; others (PodScheduled) stay.
func (k *Kubelet) setConditions(pod *v1.Pod, s *v1.PodStatus, st *podState) {
	now := metav1.NewTime(k.clock.Now())
	set := func(c v1.PodCondition) {
		for i := range s.Conditions {
			if s.Conditions[i].Type == c.Type {
				if s.Conditions[i].Status == c.Status {
					c.LastTransitionTime = s.Conditions[i].LastTransitionTime
				} else {
					c.LastTransitionTime = now
				}
				s.Conditions[i] = c
				return
			}
		}
		c.LastTransitionTime = now
		s.Conditions = append(s.Conditions, c)
	}
	sandboxReady := st.sandbox != nil && st.sandbox.State == runtime.SandboxReady
	set(v1.PodCondition{Type: v1.PodReadyToStartContainers, Status: boolCond(sandboxReady)})

	completed := s.Phase == v1.PodSucceeded
	var notInit []string
	for i, c := range pod.Spec.InitContainers {
		cs := s.InitContainerStatuses[i]
		if isSidecar(&c) {
			if cs.State.Running == nil && cs.State.Terminated == nil && cs.LastTerminationState.Terminated == nil {
				notInit = append(notInit, c.Name)
			}
			continue
		}
		if cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0 {
			notInit = append(notInit, c.Name)
		}
	}
	switch {
	case completed:
		set(v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue, Reason: "PodCompleted"})
	case len(notInit) > 0:
		set(v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionFalse, Reason: "ContainersNotInitialized",
			Message: fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(notInit, " "))})
	default:
		set(v1.PodCondition{Type: v1.PodInitialized, Status: v1.ConditionTrue})
	}
	var unready []string
	for i, c := range pod.Spec.InitContainers {
		if isSidecar(&c) && !s.InitContainerStatuses[i].Ready {
			unready = append(unready, c.Name)
		}
	}
	for _, cs := range s.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	var ready v1.PodCondition
	switch {
	case completed:
		ready = v1.PodCondition{Status: v1.ConditionFalse, Reason: "PodCompleted"}
	case s.Phase == v1.PodFailed:
		ready = v1.PodCondition{Status: v1.ConditionFalse, Reason: "PodFailed"}
	case len(unready) > 0:
		ready = v1.PodCondition{Status: v1.ConditionFalse, Reason: "ContainersNotReady",
			Message: fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))}
	default:
		ready = v1.PodCondition{Status: v1.ConditionTrue}
	}
	cr := ready
	cr.Type = v1.ContainersReady
	set(cr)
	r := ready
	r.Type = v1.PodReady
	if r.Status == v1.ConditionTrue {
		var gates []string
		for _, g := range pod.Spec.ReadinessGates {
			ok := slices.ContainsFunc(s.Conditions, func(c v1.PodCondition) bool {
				return c.Type == g.ConditionType && c.Status == v1.ConditionTrue
			})
			if !ok {
				gates = append(gates, string(g.ConditionType))
			}
		}
		if len(gates) > 0 {
			r = v1.PodCondition{Type: v1.PodReady, Status: v1.ConditionFalse, Reason: "ReadinessGatesNotReady",
				Message: fmt.Sprintf("corresponding condition of pod readiness gate %q does not exist.", gates[0])}
		}
	}
	set(r)
}

func boolCond(b bool) v1.ConditionStatus {
	if b {
		return v1.ConditionTrue
	}
	return v1.ConditionFalse
}
