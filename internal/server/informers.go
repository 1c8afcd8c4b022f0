package server

import (
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// sharedInformers is the informer factory the control-plane components in
// this process share (upstream runs one per binary). Its caches hold
// objects trimmed by trimForCache.
func sharedInformers(cfg *rest.Config) (informers.SharedInformerFactory, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("informers client: %w", err)
	}
	return informers.NewSharedInformerFactoryWithOptions(cs, 12*time.Hour, informers.WithTransform(trimForCache)), nil
}

// trimForCache drops what no component sharing the informers reads, so that
// every cached object costs less memory:
//   - managedFields of every object (upstream's kube-controller-manager and
//     kube-scheduler drop them too). An update sent with none keeps the
//     stored ones.
//   - from pods, the parts of the spec that only the node agent reads (it has
//     informers of its own): volumes, and each container's command, args,
//     env, mounts, probes, lifecycle hooks and security context. What the
//     scheduler and the node lifecycle controller read stays: names, images,
//     ports, resources and restart policies of the containers, node name,
//     selectors, affinity, tolerations, priority, overhead and scheduling
//     gates. Metadata and status stay whole, because a status update sent from
//     the cache carries them back (a pod's status update ignores its spec).
//
// A component that needs a dropped field must keep it here, or it will read
// an empty value.
func trimForCache(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil && a.GetManagedFields() != nil {
		a.SetManagedFields(nil)
	}
	if pod, ok := obj.(*v1.Pod); ok {
		trimPodSpec(&pod.Spec)
	}
	return obj, nil
}

func trimPodSpec(s *v1.PodSpec) {
	s.Volumes = nil
	s.EphemeralContainers = nil
	s.SecurityContext = nil
	s.HostAliases = nil
	s.DNSConfig = nil
	for i := range s.InitContainers {
		trimContainer(&s.InitContainers[i])
	}
	for i := range s.Containers {
		trimContainer(&s.Containers[i])
	}
}

func trimContainer(c *v1.Container) {
	*c = v1.Container{
		Name:            c.Name,
		Image:           c.Image,
		ImagePullPolicy: c.ImagePullPolicy,
		Ports:           c.Ports,
		Resources:       c.Resources,
		ResizePolicy:    c.ResizePolicy,
		RestartPolicy:   c.RestartPolicy,
	}
}
