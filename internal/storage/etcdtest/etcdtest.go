// Package etcdtest is the conformance suite of peapod's etcd v3 API: the
// kube-apiserver's own storage tests (the ones its etcd3 store runs against a
// real etcd), run through the apiserver's unmodified etcd3 store over an etcd
// client backed by a storage.Backend. Both ways peapod serves that API run
// it: kine's gRPC server (package etcdserver) and the in-process client
// (package etcdclient).
//
// Left out: tests needing the etcd3 package's internal prefix-transformer
// wrapper, TTL tests (the lease manager rounds TTLs up), and RunTestList,
// which passes except for two cases that list from a hand-made continue
// token naming an existing key: kine lists strictly after a continue key
// with its trailing NUL stripped, so such a token skips its key. Tokens made
// by the apiserver always end in NUL and work.
package etcdtest

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apimachinery/pkg/api/apitesting"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/apis/example"
	examplev1 "k8s.io/apiserver/pkg/apis/example/v1"
	apistorage "k8s.io/apiserver/pkg/storage"
	"k8s.io/apiserver/pkg/storage/etcd3"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
	"k8s.io/apiserver/pkg/storage/value/encrypt/identity"

	"github.com/peapod-dev/peapod/internal/storage"
)

// Case is one upstream storage test.
type Case struct {
	Name string
	Run  func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction)
	// Strict compaction: etcd loses the previous value of the first event
	// after its compact revision, so the test expects a watch from just
	// before it to fail, while the backend keeps it.
	Strict bool
}

// Scheme returns a scheme with the apiserver's example types and a codec
// for examplev1.
func Scheme(t testing.TB) (*runtime.Scheme, runtime.Codec) {
	scheme := runtime.NewScheme()
	metav1.AddToGroupVersion(scheme, metav1.SchemeGroupVersion)
	if err := example.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := examplev1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	return scheme, apitesting.TestCodec(serializer.NewCodecFactory(scheme), examplev1.SchemeGroupVersion)
}

// Store returns the kube-apiserver's own etcd3 storage.Interface for the
// example Pod type over client.
func Store(codec runtime.Codec, client *kubernetes.Client) apistorage.Interface {
	versioner := apistorage.APIObjectVersioner{}
	lease := etcd3.NewDefaultLeaseManagerConfig()
	lease.ReuseDurationSeconds = 1
	return etcd3.New(client, codec,
		func() runtime.Object { return &example.Pod{} },
		func() runtime.Object { return &example.PodList{} },
		"", "/pods", schema.GroupResource{Resource: "pods"},
		identity.NewEncryptCheckTransformer(), lease, etcd3.NewDefaultDecoder(codec, versioner), versioner)
}

// Compactor is the upstream tests' compaction against etcd, done on
// backend: bump the revision by writing a hidden key, then compact. etcd's
// compaction at R keeps R readable; the backend's keeps R+1 on, hence R-1
// unless strict (where compacting at R also makes R unreadable).
func Compactor(backend storage.Backend, strict bool) storagetesting.Compaction {
	return func(ctx context.Context, t *testing.T, resourceVersion string) {
		rv, err := strconv.ParseInt(resourceVersion, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := backend.Delete(ctx, "compact_rev_key", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := backend.Create(ctx, "compact_rev_key", []byte(resourceVersion), 0); err != nil {
			t.Fatal(err)
		}
		if !strict {
			rv--
		}
		if _, err := backend.Compact(ctx, rv); err != nil && !errors.Is(err, storage.ErrCompacted) {
			t.Fatalf("compact to %d: %v", rv, err)
		}
	}
}

// Run runs the suite, and extra, each case on a fresh client and backend
// from open.
func Run(t *testing.T, open func(t *testing.T) (*kubernetes.Client, storage.Backend), extra ...Case) {
	_, codec := Scheme(t)
	for _, tc := range append(Cases(), extra...) {
		t.Run(tc.Name, func(t *testing.T) {
			client, backend := open(t)
			tc.Run(context.Background(), t, Store(codec, client), Compactor(backend, tc.Strict))
		})
	}
}

// plain is a case for an upstream test that needs only the store.
func plain(name string, run func(context.Context, *testing.T, apistorage.Interface)) Case {
	return Case{Name: name, Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
		run(ctx, t, s)
	}}
}

// Cases are the upstream storage tests every implementation passes.
func Cases() []Case {
	noKeyCheck := func(context.Context, *testing.T, string) {}
	noCallsCheck := func(*testing.T, uint64, uint64) {}
	cases := []Case{
		{Name: "Create", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestCreate(ctx, t, s, noKeyCheck)
		}},
		plain("CreateWithKeyExist", storagetesting.RunTestCreateWithKeyExist),
		plain("Get", storagetesting.RunTestGet),
		plain("UnconditionalDelete", storagetesting.RunTestUnconditionalDelete),
		plain("ConditionalDelete", storagetesting.RunTestConditionalDelete),
		plain("DeleteWithSuggestionAndConflict", storagetesting.RunTestDeleteWithSuggestionAndConflict),
		plain("DeleteWithSuggestionOfDeletedObject", storagetesting.RunTestDeleteWithSuggestionOfDeletedObject),
		plain("DeleteWithConflict", storagetesting.RunTestDeleteWithConflict),
		plain("PreconditionalDeleteWithSuggestion", storagetesting.RunTestPreconditionalDeleteWithSuggestion),
		plain("GuaranteedUpdateWithConflict", storagetesting.RunTestGuaranteedUpdateWithConflict),
		plain("GuaranteedUpdateWithSuggestionAndConflict", storagetesting.RunTestGuaranteedUpdateWithSuggestionAndConflict),
		plain("ListPaging", storagetesting.RunTestListPaging),
		{Name: "GetListNonRecursive", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction) {
			storagetesting.RunTestGetListNonRecursive(ctx, t, compact, s)
		}},
		plain("GetListRecursivePrefix", storagetesting.RunTestGetListRecursivePrefix),
		{Name: "ListContinuation", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestListContinuation(ctx, t, s, noCallsCheck)
		}},
		{Name: "ListPaginationRareObject", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestListPaginationRareObject(ctx, t, s, noCallsCheck)
		}},
		{Name: "ListContinuationWithFilter", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, _ storagetesting.Compaction) {
			storagetesting.RunTestListContinuationWithFilter(ctx, t, s, noCallsCheck)
		}},
		{Name: "ListInconsistentContinuation", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction) {
			storagetesting.RunTestListInconsistentContinuation(ctx, t, s, compact)
		}},
		plain("NamespaceScopedList", storagetesting.RunTestNamespaceScopedList),
		plain("Count", storagetesting.RunTestCount),
		plain("Watch", storagetesting.RunTestWatch),
		plain("ClusterScopedWatch", storagetesting.RunTestClusterScopedWatch),
		plain("NamespaceScopedWatch", storagetesting.RunTestNamespaceScopedWatch),
		plain("DeleteTriggerWatch", storagetesting.RunTestDeleteTriggerWatch),
		{Name: "WatchFromZero", Run: func(ctx context.Context, t *testing.T, s apistorage.Interface, compact storagetesting.Compaction) {
			storagetesting.RunTestWatchFromZero(ctx, t, s, compact)
		}, Strict: true},
		plain("WatchFromNonZero", storagetesting.RunTestWatchFromNonZero),
		plain("DelayedWatchDelivery", storagetesting.RunTestDelayedWatchDelivery),
		plain("WatchContextCancel", storagetesting.RunTestWatchContextCancel),
		plain("WatcherTimeout", storagetesting.RunTestWatcherTimeout),
		plain("WatchDeleteEventObjectHaveLatestRV", storagetesting.RunTestWatchDeleteEventObjectHaveLatestRV),
		plain("WatchInitializationSignal", storagetesting.RunTestWatchInitializationSignal),
		plain("WatchSemantics", storagetesting.RunWatchSemantics),
	}
	return cases
}
