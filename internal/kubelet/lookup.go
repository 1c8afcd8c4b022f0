package kubelet

import (
	"context"
	"fmt"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/runtime"
)

var _ kubeletapi.Pods = (*Kubelet)(nil)

func (k *Kubelet) lookupPod(namespace, name string, uid types.UID) (*v1.Pod, error) {
	if k.podLister == nil {
		return nil, fmt.Errorf("pod %q: %w", name, kubeletapi.ErrPodNotFound)
	}
	pod, err := k.podLister.Pods(namespace).Get(name)
	if err != nil || (uid != "" && pod.UID != uid) {
		return nil, fmt.Errorf("pod %q in namespace %q: %w", name, namespace, kubeletapi.ErrPodNotFound)
	}
	return pod, nil
}

// Container implements kubeletapi.Pods.
func (k *Kubelet) Container(namespace, name string, uid types.UID, container string, previous bool) (kubeletapi.ContainerRef, error) {
	pod, err := k.lookupPod(namespace, name, uid)
	if err != nil {
		return kubeletapi.ContainerRef{}, err
	}
	var spec *v1.Container
	for _, c := range allContainers(pod) {
		if c.Name == container {
			spec = &c
		}
	}
	for _, c := range pod.Spec.EphemeralContainers {
		if c.Name == container {
			ec := v1.Container(c.EphemeralContainerCommon)
			spec = &ec
		}
	}
	if spec == nil {
		return kubeletapi.ContainerRef{}, fmt.Errorf("container %q in pod %q: %w", container, name, kubeletapi.ErrContainerNotFound)
	}
	cs, err := k.cfg.Runtime.ListContainers(context.Background(), runtime.ContainerFilter{
		Labels: map[string]string{labelPodUID: string(pod.UID), labelContainerName: container},
	})
	if err != nil {
		return kubeletapi.ContainerRef{}, err
	}
	var newest, prev *runtime.ContainerStatus
	for _, c := range cs {
		if newest == nil || c.Attempt > newest.Attempt {
			prev, newest = newest, c
		} else if prev == nil || c.Attempt > prev.Attempt {
			prev = c
		}
	}
	pick := newest
	if previous {
		pick = prev
	}
	if pick == nil {
		if !previous {
			for _, s := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
				if s.Name == container && s.State.Waiting != nil {
					return kubeletapi.ContainerRef{}, &kubeletapi.WaitingError{Reason: s.State.Waiting.Reason}
				}
			}
		}
		return kubeletapi.ContainerRef{}, fmt.Errorf("container %q in pod %q: %w", container, name, kubeletapi.ErrNoInstance)
	}
	return kubeletapi.ContainerRef{ID: pick.ID, TTY: spec.TTY}, nil
}

// Sandbox implements kubeletapi.Pods.
func (k *Kubelet) Sandbox(namespace, name string, uid types.UID) (kubeletapi.SandboxRef, error) {
	pod, err := k.lookupPod(namespace, name, uid)
	if err != nil {
		return kubeletapi.SandboxRef{}, err
	}
	sbs, err := k.sandboxes(context.Background(), pod.UID)
	if err != nil {
		return kubeletapi.SandboxRef{}, err
	}
	for _, sb := range sbs {
		if sb.State == runtime.SandboxReady {
			return kubeletapi.SandboxRef{ID: sb.ID, NetNSPath: sb.NetNSPath}, nil
		}
	}
	return kubeletapi.SandboxRef{}, fmt.Errorf("pod %q sandbox: %w", strings.TrimSpace(name), kubeletapi.ErrNoInstance)
}
