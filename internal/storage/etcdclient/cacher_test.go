package etcdclient

import (
	"context"
	"fmt"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	apistorage "k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/cacher"
	etcdfeature "k8s.io/apiserver/pkg/storage/feature"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/utils/clock"

	"github.com/peapod-dev/peapod/internal/storage/etcdtest"
)

// newCacher returns the kube-apiserver's watch cache over its etcd3 store
// over the in-process client of a fresh bolt store, the way the
// kube-apiserver serves every cached resource, and a compaction callback
// that, like etcd's in the upstream tests, writes a key outside the cache's
// prefix (so only a progress notification tells the cache about the new
// revision) and compacts.
//
// The client is registered with the feature checker (a process-wide
// singleton, as in the kube-apiserver), which enables consistent reads from
// the cache through watch progress requests.
func newCacher(t *testing.T) (*cacher.Cacher, storagetesting.Compaction) {
	t.Helper()
	scheme, codec := etcdtest.Scheme(t)
	codecs := serializer.NewCodecFactory(scheme)
	backend := openStore(t)
	client := newTestClient(t, backend, 0)

	ctx := testCtx(t)
	etcdfeature.DefaultFeatureSupportChecker.CheckClient(ctx, FeatureClient(client), apistorage.RequestWatchProgress)
	for !etcdfeature.DefaultFeatureSupportChecker.Supports(apistorage.RequestWatchProgress) {
		select {
		case <-ctx.Done():
			t.Fatal("the feature checker does not find watch progress requests supported")
		case <-time.After(10 * time.Millisecond):
		}
	}

	versioner := apistorage.APIObjectVersioner{}
	store := etcdtest.Store(codec, client)
	prefix := "/pods"
	c, err := cacher.NewCacherFromConfig(cacher.Config{
		Storage:        store,
		Versioner:      versioner,
		GroupResource:  schema.GroupResource{Resource: "pods"},
		ResourcePrefix: prefix,
		KeyFunc:        func(obj runtime.Object) (string, error) { return apistorage.NamespaceKeyFunc(prefix, obj) },
		GetAttrsFunc:   podAttrs,
		NewFunc:        func() runtime.Object { return &example.Pod{} },
		NewListFunc:    func() runtime.Object { return &example.PodList{} },
		Codec:          codecs.LegacyCodec(examplev1.SchemeGroupVersion),
		Clock:          clock.RealClock{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	if err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	return c, etcdtest.Compactor(backend, false)
}

func podAttrs(obj runtime.Object) (labels.Set, fields.Set, error) {
	pod, ok := obj.(*example.Pod)
	if !ok {
		return nil, nil, fmt.Errorf("not a pod: %T", obj)
	}
	return labels.Set(pod.Labels), fields.Set{
		"metadata.name":      pod.Name,
		"metadata.namespace": pod.Namespace,
		"spec.nodeName":      pod.Spec.NodeName,
	}, nil
}

// TestWatchCache runs upstream storage tests against the kube-apiserver's
// watch cache fed by the in-process client's watch. ConsistentList checks
// that a consistent list served from the cache waits for the cache to
// reach the store's current revision, which it only learns from a
// progress notification requested with RequestProgress.
func TestWatchCache(t *testing.T) {
	tests := []struct {
		name string
		run  func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction)
	}{
		{"ConsistentList", func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction) {
			storagetesting.RunTestConsistentList(ctx, t, s, compact, true, true)
		}},
		{"Watch", func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestWatch(ctx, t, s)
		}},
		{"WatchFromNonZero", func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestWatchFromNonZero(ctx, t, s)
		}},
		{"DeleteTriggerWatch", func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestDeleteTriggerWatch(ctx, t, s)
		}},
		{"GuaranteedUpdateWithConflict", func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestGuaranteedUpdateWithConflict(ctx, t, s)
		}},
		{"Count", func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestCount(ctx, t, s)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, compact := newCacher(t)
			tc.run(context.Background(), t, c, compact)
		})
	}
}
