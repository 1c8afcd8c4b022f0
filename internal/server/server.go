// Package server is peapod's composition root for `peapod server`: it prepares the
// data dir, opens the store, serves it as an etcd v3 endpoint on a unix socket,
// builds the API server over it, starts the controllers, reports readiness and
// shuts everything down in order. It wires components; it implements none.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	netutils "k8s.io/utils/net"

	"github.com/peapod-dev/peapod/internal/agent"
	"github.com/peapod-dev/peapod/internal/apiserver"
	"github.com/peapod-dev/peapod/internal/certs"
	"github.com/peapod-dev/peapod/internal/controllers"
	"github.com/peapod-dev/peapod/internal/join"
	"github.com/peapod-dev/peapod/internal/scheduler"
	"github.com/peapod-dev/peapod/internal/storage/bolt"
	"github.com/peapod-dev/peapod/internal/storage/etcdclient"
	"github.com/peapod-dev/peapod/internal/storage/etcdserver"
)

const (
	// DefaultDataDir is where a server keeps its state unless told otherwise.
	DefaultDataDir = "/var/lib/peapod"
	// AdminKubeconfigName is the admin kubeconfig's file name in the data dir.
	AdminKubeconfigName = "admin.kubeconfig"
)

// Options are `peapod server`'s settings.
type Options struct {
	DataDir      string
	HTTPSPort    int
	BindAddress  string
	DisableAgent bool
	// DisableScheduler runs no scheduler in this process (another one binds
	// pods).
	DisableScheduler  bool
	DatastoreEndpoint string
	Token             string
	ClusterCIDR       string
	ServiceCIDR       string
	// Profiling serves /debug/pprof on the API port (admin credentials needed).
	Profiling bool
	// Agent configures the node agent run in-process unless DisableAgent
	// (its server, token and data dir come from the server's).
	Agent agent.Options
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultOptions are upstream-like defaults (k3s' addresses).
func DefaultOptions() Options {
	return Options{
		DataDir:     DefaultDataDir,
		HTTPSPort:   6443,
		BindAddress: "0.0.0.0",
		ClusterCIDR: "10.42.0.0/16",
		ServiceCIDR: "10.43.0.0/16",
		Agent:       agent.DefaultOptions(),
	}
}

func (o Options) validate() error {
	if o.DatastoreEndpoint != "" {
		if strings.HasPrefix(o.DatastoreEndpoint, "etcd://") {
			return fmt.Errorf("--datastore-endpoint %q: the etcd backend is not available in this version of peapod yet; leave --datastore-endpoint empty for the embedded store", o.DatastoreEndpoint)
		}
		return fmt.Errorf("--datastore-endpoint %q: unsupported; leave it empty for the embedded store (etcd://host:port[,...] is reserved for the etcd backend)", o.DatastoreEndpoint)
	}
	if o.HTTPSPort <= 0 || o.HTTPSPort > 65535 {
		return fmt.Errorf("--https-listen-port %d: must be between 1 and 65535", o.HTTPSPort)
	}
	if net.ParseIP(o.BindAddress) == nil {
		return fmt.Errorf("--bind-address %q: not an IP address", o.BindAddress)
	}
	for flag, c := range map[string]string{"--cluster-cidr": o.ClusterCIDR, "--service-cidr": o.ServiceCIDR} {
		if _, _, err := net.ParseCIDR(c); err != nil {
			return fmt.Errorf("%s %q: %w", flag, c, err)
		}
	}
	return nil
}

// Run runs the server until ctx is cancelled.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	start := now()
	// The API server's heap is mostly its watch cache and decoding garbage; a
	// tighter GC target than Go's default keeps RSS a third lower with 10,000
	// pods for about the same throughput (docs/BENCHMARKS.md). GOGC overrides.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	if err := o.validate(); err != nil {
		return err
	}
	dataDir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	// `peapod reset` finds the process of a data dir here.
	if err := agent.WritePID(dataDir); err != nil {
		return err
	}

	// Identity: CA, serving and admin certificates, join token, kubeconfig.
	_, svcNet, _ := net.ParseCIDR(o.ServiceCIDR)
	kubernetesIP, err := netutils.GetIndexedIP(svcNet, 1)
	if err != nil {
		return fmt.Errorf("--service-cidr: %w", err)
	}
	pki := certs.Paths{Dir: filepath.Join(dataDir, "tls")}
	if err := certs.Ensure(pki, certs.DefaultServingSANs(kubernetesIP), now()); err != nil {
		return err
	}
	token, err := certs.EnsureToken(filepath.Join(dataDir, "token"), o.Token)
	if err != nil {
		return err
	}
	signNode := func(req certs.NodeRequest) (*certs.NodeCredentials, error) {
		return certs.SignNode(pki, req, now())
	}
	kubeconfig := filepath.Join(dataDir, AdminKubeconfigName)
	if err := certs.WriteAdminKubeconfig(kubeconfig, "https://"+net.JoinHostPort(clientHost(o.BindAddress), strconv.Itoa(o.HTTPSPort)), pki); err != nil {
		return err
	}

	// Store, served as etcd v3 on a unix socket only this process uses.
	dbDir := filepath.Join(dataDir, "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		return fmt.Errorf("create store dir: %w", err)
	}
	store, err := bolt.Open(filepath.Join(dbDir, "state.db"), log.With("component", "store"), bolt.Options{})
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing store", "err", err)
		}
	}()
	sock := filepath.Join(dbDir, "etcd.sock")
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	etcd := etcdserver.New(store, log.With("component", "etcd-api"))
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	var storeDone sync.WaitGroup
	storeDone.Add(1)
	go func() {
		defer storeDone.Done()
		if err := etcd.Serve(storeCtx, lis); err != nil {
			log.Error("etcd api stopped", "err", err)
		}
	}()
	// The API server must be gone before the store it writes to.
	defer func() { stopStore(); storeDone.Wait() }()

	// The API server's registries reach the store in-process; the socket
	// stays for the parts of kube-apiserver that dial it themselves.
	inProcess := etcdclient.New(storeCtx, store, log.With("component", "etcd-client"))
	defer inProcess.Close()

	apiCfg := apiserver.Config{
		BindAddress:   o.BindAddress,
		Port:          o.HTTPSPort,
		EtcdServers:   []string{"unix://" + sock},
		Etcd:          inProcess,
		EtcdFeatures:  etcdclient.FeatureClient(inProcess),
		ServiceCIDR:   o.ServiceCIDR,
		NodePortRange: "30000-32767",
		Certs:         pki,
		StateDir:      dataDir,
		Profiling:     o.Profiling,
		PublicHandlers: map[string]http.Handler{
			join.Path: join.Handler(token, signNode, log.With("component", "join")),
		},
	}
	api, err := apiserver.New(ctx, apiCfg, log)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(pki.CACert())
	if err != nil {
		return fmt.Errorf("read CA: %w", err)
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	_, clusterNet, _ := net.ParseCIDR(o.ClusterCIDR)
	apiURL := "https://" + net.JoinHostPort(clientHost(o.BindAddress), strconv.Itoa(o.HTTPSPort))
	errc := make(chan error, 4)
	apiDone := make(chan error, 1)
	go func() { apiDone <- api.Run(runCtx) }()
	go func() {
		if err := waitReady(runCtx, api.LoopbackConfig()); err != nil {
			return
		}
		// Building the API (OpenAPI models, type converters) leaves a lot of
		// garbage behind; hand it back to the OS now rather than minutes later.
		debug.FreeOSMemory()
		log.Info("peapod server ready", "startup", now().Sub(start).Round(time.Millisecond).String(),
			"kubeconfig", kubeconfig, "api", "https://"+net.JoinHostPort(clientHost(o.BindAddress), strconv.Itoa(o.HTTPSPort)))
		// One informer cache of each resource for the control-plane
		// components in this process (upstream runs one per binary), without
		// managedFields, which no controller reads (as upstream's
		// kube-controller-manager and kube-scheduler trim them). Every
		// component registers before the factory starts.
		shared, err := sharedInformers(api.LoopbackConfig())
		if err != nil {
			errc <- err
			return
		}
		defer shared.Shutdown()
		ctrls, err := controllers.New(runCtx, controllers.Config{
			Client: api.LoopbackConfig(), Informers: shared, RootCA: ca, ClusterCIDR: clusterNet, ServiceCIDR: svcNet,
		}, log.With("component", "controllers"))
		if err != nil {
			errc <- err
			return
		}
		if !o.DisableScheduler {
			sched, err := scheduler.New(runCtx, scheduler.Config{Client: api.LoopbackConfig(), Informers: shared}, log.With("component", "scheduler"))
			if err != nil {
				errc <- err
				return
			}
			go func() { errc <- sched.Run(runCtx) }()
		}
		if !o.DisableAgent {
			ao := o.Agent
			ao.Server, ao.Token, ao.Sign, ao.DataDir = apiURL, token, signNode, dataDir
			ao.ClusterCIDR, ao.ServiceCIDR = o.ClusterCIDR, o.ServiceCIDR
			// Cluster DNS is the service range's tenth address (10.43.0.10).
			if dns, err := netutils.GetIndexedIP(svcNet, 10); err == nil {
				ao.ClusterDNS = dns.String()
			}
			ao.Labels = maps.Clone(ao.Labels)
			if ao.Labels == nil {
				ao.Labels = map[string]string{}
			}
			ao.Labels["node-role.kubernetes.io/control-plane"] = "true"
			go func() { errc <- agent.Run(runCtx, ao, log.With("component", "agent")) }()
		}
		ctrls.Run(runCtx)
		errc <- nil
	}()
	select {
	case err = <-errc:
	case err = <-apiDone:
		apiDone = nil
	}
	cancel()
	// The API server drains the requests in flight when it stops; the store
	// stays open until it has, so that each of them gets its real answer
	// rather than an error from a closed store.
	if apiDone != nil {
		select {
		case <-apiDone:
		case <-time.After(apiDrainTimeout):
			log.Warn("API server still stopping; closing the store under it", "after", apiDrainTimeout)
		}
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	log.Info("peapod server stopped")
	return nil
}

// apiDrainTimeout bounds how long a stopping server waits for the API server
// to drain the requests in flight and end its watches. A request still running
// after it (a log stream to a remote node) is cut off.
const apiDrainTimeout = 15 * time.Second

// clientHost is the host a local client should dial for a server bound to bind.
func clientHost(bind string) string {
	ip := net.ParseIP(bind)
	if ip == nil || ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return bind
}

// waitReady polls /readyz through the loopback client until it answers ok.
func waitReady(ctx context.Context, cfg *rest.Config) error {
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: rt, Timeout: 2 * time.Second}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.Host, "/")+"/readyz", nil)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
