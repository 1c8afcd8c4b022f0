package kubeletapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod-dev/peapod/internal/runtime"
)

var (
	// ErrPodNotFound is returned (wrapped) by Pods when no pod with the
	// namespace and name (and UID, when one is given) runs on this node.
	ErrPodNotFound = errors.New("pod not found")
	// ErrContainerNotFound is returned (wrapped) by Pods.Container when the
	// pod has no container (init, regular or ephemeral) of that name.
	ErrContainerNotFound = errors.New("container not found")
	// ErrNoInstance is returned (wrapped) by Pods when the container or the
	// sandbox exists in the pod's spec but has no instance that fits the
	// request: the container never started (a *WaitingError says why when
	// known), or with previous it has no terminated instance; the pod's
	// sandbox is not running.
	ErrNoInstance = errors.New("no instance")
)

// WaitingError is returned by Pods.Container for a container that waits to
// start; Reason is the container status' waiting reason (ContainerCreating,
// CrashLoopBackOff, ErrImagePull, ...). It matches ErrNoInstance.
type WaitingError struct {
	Reason string
}

func (e *WaitingError) Error() string { return "waiting to start: " + e.Reason }

// Is makes a WaitingError match ErrNoInstance.
func (e *WaitingError) Is(target error) bool { return target == ErrNoInstance }

// ContainerRef is one instance of a pod's container in the runtime.
type ContainerRef struct {
	// ID is the runtime's container ID.
	ID string
	// TTY is the container spec's tty. Attach uses it rather than the
	// request's, as upstream's kubelet does: whether the main process has a
	// terminal cannot change after it started.
	TTY bool
}

// SandboxRef is a pod's sandbox in the runtime.
type SandboxRef struct {
	// ID is the runtime's sandbox ID.
	ID string
	// NetNSPath is the sandbox's network namespace; empty means the node's
	// own (a host-network pod).
	NetNSPath string
}

// Pods resolves the API's names to runtime objects on this node (the agent
// implements it). A uid that is not empty must match the pod's UID, else the
// pod is not found. Methods are called concurrently.
type Pods interface {
	// Container returns the named container (init, regular or ephemeral) of
	// the pod. Without previous: its current instance, or while it waits to
	// restart its last terminated one (as upstream's kubelet serves logs of
	// a crash-looping container). With previous: the last terminated
	// instance before the current one. Errors wrap ErrPodNotFound,
	// ErrContainerNotFound or ErrNoInstance (a *WaitingError when the
	// container waits to start and has never run).
	Container(namespace, pod string, uid types.UID, container string, previous bool) (ContainerRef, error)
	// Sandbox returns the pod's sandbox. Errors wrap ErrPodNotFound, or
	// ErrNoInstance when the pod has no running sandbox.
	Sandbox(namespace, pod string, uid types.UID) (SandboxRef, error)
}

// Runtime is what the server asks of the node's container runtime (a subset
// of runtime.Runtime; the contracts are runtime's).
type Runtime interface {
	// ContainerStatus reports one container; an unknown ID is
	// runtime.ErrNotFound. The server reads State and LogPath.
	ContainerStatus(ctx context.Context, id string) (*runtime.ContainerStatus, error)
	// Exec runs a command in the running container id and returns its exit
	// code once it exited and its output was copied; cancelling ctx kills
	// it.
	Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error)
	// Attach connects streams to the main process of the running container
	// id and returns when the process exits, the streams end or ctx is
	// cancelled.
	Attach(ctx context.Context, id string, opts runtime.AttachOptions) error
}

// logsError words a Pods.Container error for a logs request as upstream's
// kubelet does (server.go getContainerLogs and kubelet_pods.go
// validateContainerLogStatus) and picks the HTTP status.
func logsError(err error, pod, container string, previous bool) (int, string) {
	var waiting *WaitingError
	switch {
	case errors.Is(err, ErrPodNotFound):
		return http.StatusNotFound, fmt.Sprintf("pod %q does not exist", pod)
	case errors.Is(err, ErrContainerNotFound):
		return http.StatusNotFound, fmt.Sprintf("container %q not found in pod %q", container, pod)
	case previous && errors.Is(err, ErrNoInstance):
		return http.StatusBadRequest, fmt.Sprintf("previous terminated container %q in pod %q not found", container, pod)
	case errors.As(err, &waiting):
		switch waiting.Reason {
		case "ErrImagePull":
			return http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start: image can't be pulled", container, pod)
		case "ImagePullBackOff":
			return http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start: trying and failing to pull image", container, pod)
		case "":
			return http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start - no logs yet", container, pod)
		}
		return http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is waiting to start: %v", container, pod, waiting.Reason)
	case errors.Is(err, ErrNoInstance):
		return http.StatusBadRequest, fmt.Sprintf("container %q in pod %q is not available", container, pod)
	}
	return http.StatusInternalServerError, err.Error()
}
