package etcdserver

import (
	"testing"

	"go.etcd.io/etcd/client/v3/kubernetes"

	"github.com/peapod-dev/peapod/internal/storage"
	"github.com/peapod-dev/peapod/internal/storage/etcdtest"
)

// TestAPIServerStorage runs the kube-apiserver's storage conformance tests
// (package etcdtest) against peapod's etcd API served by kine's gRPC server.
func TestAPIServerStorage(t *testing.T) {
	etcdtest.Run(t, func(t *testing.T) (*kubernetes.Client, storage.Backend) {
		client, backend := startServer(t)
		return client, backend
	})
}
