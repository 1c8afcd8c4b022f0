// Package etcdserver serves a storage.Backend over the etcd v3 gRPC API, so
// an unmodified kube-apiserver can use it as its etcd. It uses kine's
// server package, which implements exactly the subset of the etcd API that
// the kube-apiserver's etcd3 store uses (the KV txn shapes, ranges, watches,
// and kine-style leases whose ID is their TTL), on top of adapter.
package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"time"

	"github.com/k3s-io/kine/pkg/server"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/peapod-dev/peapod/internal/storage"
)

const (
	// EmulatedVersion is the etcd version reported by the Status call.
	EmulatedVersion = "3.5.16"
	// notifyInterval is how often watchers that asked for progress notifies
	// get one.
	notifyInterval = 5 * time.Second
	// maxRecvMsgSize bounds one request. etcd's own limit is 1.5 MiB of
	// request plus gRPC overhead; objects are far smaller than this.
	maxRecvMsgSize = 8 << 20
	// stopGrace is how long Serve waits for in-flight calls on shutdown
	// before closing the remaining ones. Watch streams never end by
	// themselves, so every shutdown waits this long; the composition root
	// stops this server only after the API server has drained its requests,
	// so a short grace loses nothing.
	stopGrace = 200 * time.Millisecond
	// healthKey is written when serving starts, as kine does, so the
	// revision is never 0. (The kube-apiserver's health check reads it.)
	healthKey = "/registry/health"
)

// Server serves the etcd v3 API for one storage.Backend.
type Server struct {
	grpc    *grpc.Server
	backend storage.Backend
	log     *slog.Logger
}

// New returns a Server for backend. It does not own backend: closing the
// backend after Serve has returned is the caller's job. A nil logger
// discards logs.
func New(backend storage.Backend, logger *slog.Logger) *Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gs := grpc.NewServer(
		// The same keepalive policy as etcd and kine.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             5 * time.Second,
			PermitWithoutStream: false,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    2 * time.Hour,
			Timeout: 20 * time.Second,
		}),
		grpc.MaxRecvMsgSize(maxRecvMsgSize),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
	)
	server.New(adapter{b: backend}, "peapod", notifyInterval, EmulatedVersion).Register(gs)
	return &Server{grpc: gs, backend: backend, log: logger}
}

// Serve serves on lis until ctx is cancelled, then stops: it lets in-flight
// calls finish for a short grace period and closes the rest. It returns nil
// after a stop caused by ctx, and the serving error otherwise. A Server
// serves once.
func (s *Server) Serve(ctx context.Context, lis net.Listener) error {
	// Like kine, make sure the store has a revision: etcd never reports
	// revision 0, and the kube-apiserver rejects it.
	if _, err := s.backend.Create(ctx, healthKey, []byte(`{"health":"true"}`), 0); err != nil && !errors.Is(err, storage.ErrKeyExists) {
		if ctx.Err() != nil {
			// Stopped before serving began: a clean stop, as after serving.
			_ = lis.Close()
			return nil
		}
		return fmt.Errorf("serve etcd API: create %s: %w", healthKey, err)
	}
	s.log.Info("serving etcd API", "address", lis.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(lis) }()
	select {
	case err := <-errc:
		if err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve etcd API on %s: %w", lis.Addr(), err)
		}
		return nil
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		s.grpc.Stop()
		<-stopped
	}
	<-errc
	s.log.Info("stopped etcd API", "address", lis.Addr().String())
	return nil
}

// Serve serves backend's etcd v3 API on lis until ctx is cancelled.
func Serve(ctx context.Context, backend storage.Backend, lis net.Listener, logger *slog.Logger) error {
	return New(backend, logger).Serve(ctx, lis)
}
