package kubelet

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/network"
	"github.com/peapod-dev/peapod/internal/runtime"
)

// Images is the node's image store.
type Images interface {
	// Get returns the stored image ref names; an absent image is an error
	// wrapping image.ErrNotFound.
	Get(ctx context.Context, ref string) (image.Image, error)
	// Pull fetches ref with the given credentials (nil: anonymous or the
	// store's configured ones) and stores it.
	Pull(ctx context.Context, ref string, keyring *image.Keyring) (image.Image, error)
	// Acquire pins ref's layers for holder and returns them (topmost first)
	// with the image's config; Release unpins everything holder pinned.
	Acquire(ctx context.Context, holder, ref string) ([]string, image.ImageConfig, error)
	Release(holder string) error
}

// Network gives pod sandboxes their network.
type Network interface {
	// EnsureHost prepares the node for pods in podCIDR (bridge
	// configuration, unreachable routes for the cluster and service ranges);
	// it is called once the node has its pod CIDR, before any other method.
	EnsureHost(ctx context.Context, podCIDR string) error
	// Setup creates the sandbox's network namespace and attaches it; calling
	// it again for an attached sandbox returns the existing attachment. On
	// error nothing is left behind.
	Setup(ctx context.Context, pod network.PodRef, ports []network.PortMapping) (*network.Attachment, error)
	// Teardown detaches and removes the sandbox's namespace; a sandbox that
	// is not attached is nil.
	Teardown(ctx context.Context, sandboxID string) error
	// List returns the sandboxes that are attached.
	List() ([]string, error)
}

// Volumes prepares pods' volumes on the node.
type Volumes interface {
	// Setup prepares (or refreshes) every volume of pod; idempotent.
	Setup(ctx context.Context, pod *v1.Pod) error
	// Mounts returns container c's bind mounts; env is its environment for
	// subPathExpr.
	Mounts(pod *v1.Pod, c *v1.Container, env map[string]string) ([]runtime.Mount, error)
	// Teardown removes every volume of the pod; idempotent.
	Teardown(ctx context.Context, podUID types.UID) error
	// PodUIDs lists the pods that have volumes here.
	PodUIDs() ([]types.UID, error)
}

// Cgroups makes the pods' cgroups, nested under the agent's own cgroup.
type Cgroups interface {
	// Create makes the cgroup path p (absolute, as in an OCI cgroupsPath) in
	// every hierarchy; Remove removes it when it holds no processes.
	Create(p string) error
	Remove(p string) error
}
