// Package e2e drives the real bin/peapod with the real kubectl binary, as a user
// would. Every test starts its own server (internal/testutil's harness) on a free
// loopback port in a temporary data dir and stops it by PID when it ends.
package e2e

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/image/busybox"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// Server is a running `peapod server` with the real kubectl to drive it.
type Server = testutil.Server

// StartServer starts a server for t and points its Kubectl methods at the real
// kubectl ($KUBECTL or kubectl from PATH).
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	kubectl := testutil.RequireTool(t, "kubectl", "KUBECTL")
	s := testutil.StartServer(t, extraArgs...)
	s.Kubectl = kubectl
	return s
}

// Eventually retries f until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, f)
}

func tail(s string, n int) string { return testutil.Tail(s, n) }

// StartNode starts a server with its node agent for t (see testutil.StartNode).
func StartNode(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	kubectl := testutil.RequireTool(t, "kubectl", "KUBECTL")
	s := testutil.StartNode(t, BusyboxArchive(t), extraArgs...)
	s.Kubectl = kubectl
	return s
}

var (
	busyboxOnce sync.Once
	busyboxTar  string
	busyboxErr  error
)

// BusyboxArchive returns an OCI archive of the busybox test image (made from
// Debian's busybox-static), made once per test process.
func BusyboxArchive(t testing.TB) string {
	t.Helper()
	busyboxOnce.Do(func() {
		dir, err := os.MkdirTemp("", "peapod-busybox-")
		if err != nil {
			busyboxErr = err
			return
		}
		busyboxTar = filepath.Join(dir, "busybox.tar")
		f, err := os.Create(busyboxTar)
		if err != nil {
			busyboxErr = err
			return
		}
		defer f.Close()
		busyboxErr = busybox.WriteArchive(f, "/bin/busybox")
	})
	if busyboxErr != nil {
		t.Fatalf("busybox image: %v", busyboxErr)
	}
	return busyboxTar
}
