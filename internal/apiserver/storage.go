package apiserver

import (
	"context"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"
	etcdkubernetes "go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/storage"
	cacherstorage "k8s.io/apiserver/pkg/storage/cacher"
	"k8s.io/apiserver/pkg/storage/etcd3"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	"k8s.io/apiserver/pkg/storage/storagebackend"
	"k8s.io/apiserver/pkg/storage/storagebackend/factory"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"
	"k8s.io/client-go/tools/cache"
)

// inProcessStorage gives every resource's registry a storage that reaches the
// store through client, an etcd v3 client served in this process, instead of
// dialing the store's gRPC endpoint: the same upstream etcd3 store and watch
// cache (storage.Interface semantics unchanged), without a gRPC round trip,
// its encoding and a connection per resource.
//
// Upstream builds these in genericregistry.StorageWithCacher over
// generic.NewRawStorage, which always dials; this is that decorator with the
// raw storage built on client. Parts of kube-apiserver that open storage
// directly (the endpoint lease reconciler, the ClusterIP and NodePort
// allocators, health checks, the compactor) still use the gRPC endpoint.
type inProcessStorage struct {
	inner  generic.RESTOptionsGetter
	client *etcdkubernetes.Client
}

func (g inProcessStorage) GetRESTOptions(resource schema.GroupResource, example runtime.Object) (generic.RESTOptions, error) {
	o, err := g.inner.GetRESTOptions(resource, example)
	if err != nil {
		return o, err
	}
	// peapod sets no --watch-cache-sizes and keeps the watch cache on, so
	// every resource is cached (what upstream's getter decided).
	o.Decorator = g.withCacher
	return o, nil
}

// rawStorage is generic.NewRawStorage (factory.Create for etcd3) on g.client.
func (g inProcessStorage) rawStorage(c *storagebackend.ConfigForResource, newFunc, newListFunc func() runtime.Object, resourcePrefix string) storage.Interface {
	transformer := c.Transformer
	if transformer == nil {
		transformer = identity.NewEncryptCheckTransformer()
	}
	versioner := storage.APIObjectVersioner{}
	decoder := etcd3.NewDefaultDecoder(c.Codec, versioner)
	return etcd3.New(g.client, c.Codec, newFunc, newListFunc, c.Prefix, resourcePrefix, c.GroupResource,
		transformer, c.LeaseManagerConfig, decoder, versioner)
}

// withCacher is genericregistry.StorageWithCacher with rawStorage.
func (g inProcessStorage) withCacher(
	storageConfig *storagebackend.ConfigForResource,
	resourcePrefix string,
	keyFunc func(obj runtime.Object) (string, error),
	newFunc func() runtime.Object,
	newListFunc func() runtime.Object,
	getAttrsFunc storage.AttrFunc,
	triggerFuncs storage.IndexerFuncs,
	indexers *cache.Indexers) (storage.Interface, factory.DestroyFunc, error) {

	s := g.rawStorage(storageConfig, newFunc, newListFunc, resourcePrefix)
	cacher, err := cacherstorage.NewCacherFromConfig(cacherstorage.Config{
		Storage:        s,
		Versioner:      storage.APIObjectVersioner{},
		GroupResource:  storageConfig.GroupResource,
		ResourcePrefix: resourcePrefix,
		KeyFunc:        keyFunc,
		NewFunc:        newFunc,
		NewListFunc:    newListFunc,
		GetAttrsFunc:   getAttrsFunc,
		IndexerFuncs:   triggerFuncs,
		Indexers:       indexers,
		Codec:          storageConfig.Codec,
	})
	if err != nil {
		return nil, func() {}, err
	}
	var once sync.Once
	return cacher, func() { once.Do(cacher.Stop) }, nil
}

// FeatureChecker answers the API server's etcd feature checks, which ask
// every endpoint of a client for its etcd version (to decide whether
// consistent LISTs may be served from the watch cache). A client served in
// this process has no endpoints of its own; its FeatureChecker names one.
type FeatureChecker interface {
	Endpoints() []string
	Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error)
}

// checkFeatures runs the API server's etcd feature checks on the in-process
// client, as etcd3.New does for a dialed one.
func checkFeatures(ctx context.Context, f FeatureChecker) {
	etcdfeature.DefaultFeatureSupportChecker.CheckClient(ctx, f, storage.RequestWatchProgress)
}
