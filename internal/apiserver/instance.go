package apiserver

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/registry/generic"
	genericapiserver "k8s.io/apiserver/pkg/server"
	serverstorage "k8s.io/apiserver/pkg/server/storage"
	"k8s.io/client-go/kubernetes"
	schedulingapiv1 "k8s.io/kubernetes/pkg/apis/scheduling/v1"
	"k8s.io/kubernetes/pkg/controlplane"
	controlplaneapiserver "k8s.io/kubernetes/pkg/controlplane/apiserver"
	"k8s.io/kubernetes/pkg/controlplane/controller/kubernetesservice"
	schedulingrest "k8s.io/kubernetes/pkg/registry/scheduling/rest"

	"github.com/peapod-dev/peapod/internal/apiserver/listcache"
)

// newInstance is upstream's controlplane.CompletedConfig.New with two changes:
// the system PriorityClasses are created by a hook that tries at once, where
// upstream's waits a full second before its first attempt (and so holds /readyz
// back by a second on every start); and the core group's protobuf LISTs of
// pods take unchanged items from lists (package listcache).
func newInstance(c controlplane.CompletedConfig, delegate genericapiserver.DelegationTarget, lists *listcache.Cache) (*genericapiserver.GenericAPIServer, error) {
	cp, err := c.ControlPlane.New(controlplane.KubeAPIServer, delegate)
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(c.ControlPlane.Generic.LoopbackClientConfig)
	if err != nil {
		return nil, err
	}
	providers, err := c.StorageProviders(client.Discovery())
	if err != nil {
		return nil, err
	}
	for i, p := range providers {
		if _, ok := p.(schedulingrest.RESTStorageProvider); ok {
			providers[i] = withoutPostStartHook{p}
		}
		if p.GroupName() == "" {
			hooks, ok := p.(genericapiserver.PostStartHookProvider)
			if !ok {
				return nil, fmt.Errorf("the core API group's storage provider %T has no post-start hook", p)
			}
			providers[i] = withListCache{RESTStorageProvider: p, PostStartHookProvider: hooks, lists: lists}
		}
	}
	if err := cp.InstallAPIs(providers...); err != nil {
		return nil, err
	}
	gs := cp.GenericAPIServer
	if err := gs.AddPostStartHook("peapod-system-priority-classes", createSystemPriorityClasses); err != nil {
		return nil, err
	}

	_, publicServicePort, err := c.ControlPlane.Generic.SecureServing.HostPort()
	if err != nil {
		return nil, fmt.Errorf("failed to get listener address: %w", err)
	}
	svc := kubernetesservice.New(kubernetesservice.Config{
		PublicIP:                  c.ControlPlane.Generic.PublicAddress,
		EndpointReconciler:        c.Extra.EndpointReconcilerConfig.Reconciler,
		EndpointInterval:          c.Extra.EndpointReconcilerConfig.Interval,
		ServiceIP:                 c.Extra.APIServerServiceIP,
		ServicePort:               c.Extra.APIServerServicePort,
		PublicServicePort:         publicServicePort,
		KubernetesServiceNodePort: c.Extra.KubernetesServiceNodePort,
	}, client, c.ControlPlane.Extra.VersionedInformers.Core().V1().Services())
	if err := gs.AddPostStartHook("bootstrap-controller", func(hc genericapiserver.PostStartHookContext) error {
		svc.Start(hc.Done())
		return nil
	}); err != nil {
		return nil, err
	}
	if err := gs.AddPreShutdownHook("stop-kubernetes-service-controller", func() error {
		svc.Stop()
		return nil
	}); err != nil {
		return nil, err
	}
	return gs, nil
}

// withoutPostStartHook hides a storage provider's post-start hook.
type withoutPostStartHook struct {
	controlplaneapiserver.RESTStorageProvider
}

// withListCache serves the core group through lists' serializer. It keeps
// the provider's post-start hook (the ClusterIP and NodePort repair loops).
type withListCache struct {
	controlplaneapiserver.RESTStorageProvider
	genericapiserver.PostStartHookProvider
	lists *listcache.Cache
}

func (p withListCache) NewRESTStorage(resources serverstorage.APIResourceConfigSource, options generic.RESTOptionsGetter) (genericapiserver.APIGroupInfo, error) {
	info, err := p.RESTStorageProvider.NewRESTStorage(resources, options)
	if err != nil {
		return info, err
	}
	info.NegotiatedSerializer = p.lists.NegotiatedSerializer(info.NegotiatedSerializer)
	return info, nil
}

// createSystemPriorityClasses creates system-node-critical and
// system-cluster-critical, retrying quickly while the API is still starting.
func createSystemPriorityClasses(hc genericapiserver.PostStartHookContext) error {
	return createUntilServed(hc, "system priority classes", func(ctx context.Context, cs kubernetes.Interface) error {
		for _, pc := range schedulingapiv1.SystemPriorityClasses() {
			_, err := cs.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
		}
		return nil
	})
}
