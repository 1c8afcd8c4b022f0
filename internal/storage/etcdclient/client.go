package etcdclient

import (
	"context"
	"errors"
	"log/slog"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"

	"github.com/peapod-dev/peapod/internal/storage"
)

const (
	// EmulatedVersion is the etcd version the Status call reports, the same
	// as package etcdserver's. The kube-apiserver only uses watch progress
	// requests with etcd 3.5.13 or newer.
	EmulatedVersion = "3.5.16"
	// Endpoint is the one endpoint FeatureClient reports.
	Endpoint = "peapod-inprocess"
	// notifyInterval is how often watches made WithProgressNotify get a
	// progress notification while idle (kine's and etcdserver's 5 s).
	notifyInterval = 5 * time.Second
	// healthKey is written by New, as etcdserver writes it when serving
	// starts, so the revision is never 0 (the kube-apiserver rejects 0).
	healthKey = "/registry/health"
)

// New returns an etcd v3 client whose KV, Watcher, Lease, Maintenance and
// Kubernetes interfaces are served in-process from b, with the semantics
// the kube-apiserver gets from kine's gRPC server over b (package
// etcdserver). Cluster and Auth fail with ErrNotSupported.
//
// New writes the health key if it is missing, as etcdserver's Serve does,
// so the store's revision is never 0 (a failure is logged: the client
// still works). Closing the returned client ends its watches and waits for
// their goroutines; its Close returns context.Canceled, as every client
// made by clientv3.NewCtxClient does. Watches also end when ctx is done.
// The client's Endpoints is empty: see FeatureClient. b is not closed by
// the client. A nil logger discards logs.
func New(ctx context.Context, b storage.Backend, log *slog.Logger) *kubernetes.Client {
	return newClient(ctx, b, log, notifyInterval)
}

func newClient(ctx context.Context, b storage.Backend, log *slog.Logger, interval time.Duration) *kubernetes.Client {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if _, err := b.Create(ctx, healthKey, []byte(`{"health":"true"}`), 0); err != nil && !errors.Is(err, storage.ErrKeyExists) {
		log.Error("create etcd health key", "key", healthKey, "error", err)
	}
	c := clientv3.NewCtxClient(ctx)
	s := kv{b: b}
	c.KV = clientv3.NewKVFromKVClient(kvClient{s}, c)
	c.Watcher = newWatcher(c.Ctx(), b, log, interval)
	c.Lease = lease{}
	c.Maintenance = maintenance{b: b}
	c.Cluster = unsupportedService{}
	c.Auth = unsupportedService{}
	return &kubernetes.Client{Client: c, Kubernetes: k8sKV{s}}
}

// FeatureCheckClient is the view of a client that
// k8s.io/apiserver/pkg/storage/feature's checker needs.
type FeatureCheckClient struct {
	c *kubernetes.Client
}

// FeatureClient returns c as the client to pass to
// etcdfeature.DefaultFeatureSupportChecker.CheckClient (package
// k8s.io/apiserver/pkg/storage/feature). The checker asks each of the
// client's endpoints for its etcd version to decide whether the
// kube-apiserver may request watch progress (consistent reads from the
// watch cache), but a client made by New has no endpoints; this view
// reports one, Endpoint, whose Status is c's.
func FeatureClient(c *kubernetes.Client) FeatureCheckClient {
	return FeatureCheckClient{c: c}
}

// Endpoints returns []string{Endpoint}.
func (f FeatureCheckClient) Endpoints() []string { return []string{Endpoint} }

// Status returns the client's Maintenance.Status.
func (f FeatureCheckClient) Status(ctx context.Context, endpoint string) (*clientv3.StatusResponse, error) {
	return f.c.Maintenance.Status(ctx, endpoint)
}
