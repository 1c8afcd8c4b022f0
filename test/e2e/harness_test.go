// Package e2e drives the real bin/peapod with the real kubectl binary, as a user
// would. Every test starts its own server (internal/testutil's harness) on a free
// loopback port in a temporary data dir and stops it by PID when it ends.
package e2e

import (
	"testing"
	"time"

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
	s := testutil.StartNode(t, extraArgs...)
	s.Kubectl = kubectl
	return s
}
