package etcdclient

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"

	"github.com/peapod-dev/peapod/internal/storage"
	"github.com/peapod-dev/peapod/internal/storage/bolt"
	"github.com/peapod-dev/peapod/internal/storage/etcdserver"
)

const waitTimeout = 10 * time.Second

// openStore opens a fresh bolt store in a temporary directory, closed at
// the end of the test.
func openStore(t testing.TB) *bolt.Store {
	t.Helper()
	store, err := bolt.Open(filepath.Join(t.TempDir(), "peapod.db"), nil, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := store.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return store
}

// newTestClient returns an in-process client of b with the given progress
// notify interval (0: the default), closed at the end of the test (before
// b, which was opened earlier).
func newTestClient(t *testing.T, b storage.Backend, interval time.Duration) *kubernetes.Client {
	t.Helper()
	if interval == 0 {
		interval = notifyInterval
	}
	c := newClient(context.Background(), b, nil, interval)
	t.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("client Close: %v", err)
		}
	})
	return c
}

// startGRPC serves b with package etcdserver (kine's gRPC server) on a unix
// socket and returns a gRPC client of the kind the kube-apiserver uses
// today. Everything is stopped at the end of the test, before b is closed.
func startGRPC(t testing.TB, b storage.Backend) *kubernetes.Client {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "etcd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- etcdserver.Serve(ctx, b, lis, nil) }()
	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{"unix://" + sock},
		DialTimeout: waitTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Serve did not return after cancel")
		}
	})
	// Serve writes the health key before serving; wait for it so both
	// kinds of client start from the same revision.
	if _, err := client.Kubernetes.Get(testCtx(t), healthKey, kubernetes.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	return client
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// next returns the next response of a watch, failing the test after
// waitTimeout.
func next(t *testing.T, ch clientv3.WatchChan) (clientv3.WatchResponse, bool) {
	t.Helper()
	select {
	case resp, ok := <-ch:
		return resp, ok
	case <-time.After(waitTimeout):
		t.Fatal("no watch response")
		return clientv3.WatchResponse{}, false
	}
}
