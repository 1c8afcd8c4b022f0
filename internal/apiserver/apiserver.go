// Package apiserver owns the Kubernetes API: it builds upstream's kube-apiserver
// (k8s.io/kubernetes v1.32) in-process, trimmed to the API groups peapod serves,
// over an etcd v3 endpoint (in the default setup, peapod's embedded store served by
// package storage/etcdserver on a unix socket).
//
// Using upstream's handlers, registry strategies, validation, defaulting, printers
// and watch cache is what makes real kubectl and client-go work unchanged: every
// message, column and status code is upstream's own. What this package decides is
// which parts run (API groups, admission plugins, authentication) and how they are
// configured; see docs/ARCHITECTURE.md.
package apiserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	etcdkubernetes "go.etcd.io/etcd/client/v3/kubernetes"
	"k8s.io/apiserver/pkg/endpoints/filters"
	genericapiserver "k8s.io/apiserver/pkg/server"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	"k8s.io/apiserver/pkg/util/notfoundhandler"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/featuregate"
	utilversion "k8s.io/component-base/version"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"k8s.io/apimachinery/pkg/runtime"
	kubeapiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	"k8s.io/kubernetes/pkg/controlplane"
	controlplaneapiserver "k8s.io/kubernetes/pkg/controlplane/apiserver"

	"github.com/peapod-dev/peapod/internal/apiserver/listcache"
	"github.com/peapod-dev/peapod/internal/apiserver/openapi"
	"github.com/peapod-dev/peapod/internal/certs"
)

// Config is what peapod decides about the API server.
type Config struct {
	// BindAddress and Port are where the HTTPS API listens.
	BindAddress string
	Port        int
	// AdvertiseAddress is the address published in the kubernetes Service's
	// Endpoints; empty picks the machine's default address as upstream does.
	AdvertiseAddress string
	// EtcdServers are etcd v3 endpoints (unix:///path or https://host:port).
	EtcdServers []string
	// Etcd, when set, is an etcd v3 client served in this process by the
	// same store as EtcdServers: every resource's registry storage and watch
	// cache use it instead of dialing (see storage.go).
	Etcd *etcdkubernetes.Client
	// EtcdFeatures answers the etcd feature checks for Etcd; required with it.
	EtcdFeatures FeatureChecker
	// ServiceCIDR is the range ClusterIPs are allocated from; its first address
	// is the kubernetes Service.
	ServiceCIDR string
	// NodePortRange is where NodePorts are allocated from, e.g. "30000-32767".
	NodePortRange string
	// Certs locates the CA, serving certificate and service-account keys.
	Certs certs.Paths
	// StateDir receives generated configuration files.
	StateDir string
	// Profiling serves /debug/pprof to authenticated clients.
	Profiling bool
	// PublicHandlers are served on the API port before authentication, by
	// exact path (the node join endpoint, which authenticates on its own).
	PublicHandlers map[string]http.Handler
}

// Server is a built, not yet running, API server.
type Server struct {
	run      func(context.Context) error
	loopback *rest.Config
}

// LoopbackConfig is a client configuration that reaches this server in-process
// with full rights; controllers wired in by the composition root use it.
func (s *Server) LoopbackConfig() *rest.Config { return rest.CopyConfig(s.loopback) }

// Run serves until ctx is cancelled, then shuts down gracefully.
func (s *Server) Run(ctx context.Context) error { return s.run(ctx) }

// watchTerminationGrace is how long a stopping server lets its watches end
// (upstream's --shutdown-watch-termination-grace-period).
const watchTerminationGrace = time.Second

// The encoded pods of protobuf LISTs are kept while LISTs keep using them
// (package listcache): 10,000 pods take about 12.5 MB.
const (
	listCacheIdle  = 5 * time.Minute
	listCacheBytes = 64 << 20
)

// groups are the API group versions peapod serves; everything else is off.
var groups = []string{
	"api/v1",
	"apps/v1",
	"batch/v1",
	"autoscaling/v1",
	"autoscaling/v2",
	"discovery.k8s.io/v1",
	"coordination.k8s.io/v1",
	"events.k8s.io/v1",
	"node.k8s.io/v1",
	"policy/v1",
	"scheduling.k8s.io/v1",
	"authentication.k8s.io/v1",
	"authorization.k8s.io/v1",
}

// disabledAdmission are upstream's default-on admission plugins that need an API
// group peapod does not serve (webhooks, storage classes, certificates, ingress
// classes).
var disabledAdmission = []string{
	"DefaultStorageClass", "StorageObjectInUseProtection", "PersistentVolumeClaimResize",
	"CertificateApproval", "CertificateSigning", "ClusterTrustBundleAttest", "CertificateSubjectRestriction",
	"DefaultIngressClass", "MutatingAdmissionWebhook", "ValidatingAdmissionWebhook", "ValidatingAdmissionPolicy",
}

// anonymousConfig lets unauthenticated clients reach only the health and version
// endpoints, as upstream's default RBAC does; everything else answers 401.
const anonymousConfig = `apiVersion: apiserver.config.k8s.io/v1beta1
kind: AuthenticationConfiguration
anonymous:
  enabled: true
  conditions:
  - path: /healthz
  - path: /livez
  - path: /readyz
  - path: /version
`

// args renders cfg as kube-apiserver flags.
func (cfg Config) args(authnConfigPath string) []string {
	a := []string{
		"--bind-address=" + cfg.BindAddress,
		"--secure-port=" + strconv.Itoa(cfg.Port),
		"--etcd-servers=" + strings.Join(cfg.EtcdServers, ","),
		"--storage-backend=etcd3",
		"--service-cluster-ip-range=" + cfg.ServiceCIDR,
		"--service-node-port-range=" + cfg.NodePortRange,
		"--tls-cert-file=" + cfg.Certs.ServingCert(),
		"--tls-private-key-file=" + cfg.Certs.ServingKey(),
		"--client-ca-file=" + cfg.Certs.CACert(),
		"--service-account-key-file=" + cfg.Certs.ServiceAccountPub(),
		"--service-account-signing-key-file=" + cfg.Certs.ServiceAccountKey(),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--authentication-config=" + authnConfigPath,
		"--authorization-mode=AlwaysAllow",
		"--enable-priority-and-fairness=false",
		// peapod configures no tracing exporter; without the gate the
		// request path skips OpenTelemetry's HTTP and gRPC middleware.
		"--feature-gates=APIServerTracing=false",
		"--runtime-config=api/all=false," + strings.Join(withTrue(groups), ","),
		"--disable-admission-plugins=" + strings.Join(disabledAdmission, ","),
		"--allow-privileged=true",
		"--profiling=" + strconv.FormatBool(cfg.Profiling),
		"--endpoint-reconciler-type=lease",
		// Node agents' kubelet API (logs, exec, attach, port-forward): the API
		// server authenticates with its own client certificate and checks the
		// agent's serving certificate against the cluster CA.
		"--kubelet-client-certificate=" + cfg.Certs.KubeletClientCert(),
		"--kubelet-client-key=" + cfg.Certs.KubeletClientKey(),
		"--kubelet-certificate-authority=" + cfg.Certs.CACert(),
		"--kubelet-preferred-address-types=InternalIP,Hostname,ExternalIP",
	}
	if cfg.AdvertiseAddress != "" {
		a = append(a, "--advertise-address="+cfg.AdvertiseAddress)
	}
	return a
}

// fromLoopback reports whether r came over a loopback connection.
func fromLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func withTrue(gvs []string) []string {
	out := make([]string, len(gvs))
	for i, gv := range gvs {
		out[i] = gv + "=true"
	}
	return out
}

// New builds the API server from cfg. It opens the listener (so a port clash
// fails here) but serves nothing until Run.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Server, error) {
	klog.SetSlogLogger(log.With("component", "kube-apiserver"))
	rest.SetDefaultWarningHandler(rest.NoWarnings{})

	authn := filepath.Join(cfg.StateDir, "authentication-config.yaml")
	if err := certs.WriteFileAtomic(authn, []byte(anonymousConfig), 0o600); err != nil {
		return nil, err
	}

	_, _ = featuregate.DefaultComponentGlobalsRegistry.ComponentGlobalsOrRegister(
		featuregate.DefaultKubeComponent, utilversion.DefaultBuildEffectiveVersion(), utilfeature.DefaultMutableFeatureGate)
	opts := options.NewServerRunOptions()
	fs := pflag.NewFlagSet("kube-apiserver", pflag.ContinueOnError)
	for _, f := range opts.Flags().FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(cfg.args(authn)); err != nil {
		return nil, fmt.Errorf("api server flags: %w", err)
	}
	if err := featuregate.DefaultComponentGlobalsRegistry.Set(); err != nil {
		return nil, fmt.Errorf("feature gates: %w", err)
	}
	completed, err := opts.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("api server options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("api server options: %w", errors.Join(errs...))
	}

	genericConfig, informers, storageFactory, err := controlplaneapiserver.BuildGenericConfig(
		completed.CompletedOptions,
		[]*runtime.Scheme{legacyscheme.Scheme},
		controlplane.DefaultAPIResourceConfigSource(),
		openapi.GetOpenAPIDefinitions,
	)
	if err != nil {
		return nil, fmt.Errorf("api server config: %w", err)
	}
	if cfg.Etcd != nil {
		if cfg.EtcdFeatures == nil {
			return nil, errors.New("api server config: an in-process etcd client needs its feature checker")
		}
		checkFeatures(ctx, cfg.EtcdFeatures)
		genericConfig.RESTOptionsGetter = inProcessStorage{inner: genericConfig.RESTOptionsGetter, client: cfg.Etcd}
	}
	genericConfig.Authentication.Authenticator = newCachedCertAuth(genericConfig.Authentication.Authenticator, time.Now)
	// On shutdown, watches are ended (clients re-establish them elsewhere or
	// after the restart) instead of holding the HTTP server open until its
	// 60 s timeout; requests in flight still drain first.
	genericConfig.ShutdownWatchTerminationGracePeriod = watchTerminationGrace
	inner := genericConfig.BuildHandlerChainFunc
	genericConfig.BuildHandlerChainFunc = func(h http.Handler, c *genericapiserver.Config) http.Handler {
		chain := inner(h, c)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if ph, ok := cfg.PublicHandlers[r.URL.Path]; ok {
				ph.ServeHTTP(w, r)
				return
			}
			if fromLoopback(r) {
				// Compressing a response costs the server more CPU than
				// sending it over loopback saves (a 10,000-pod LIST: 13 MB
				// raw, about 100 ms of gzip): clients on this machine get
				// identity encoding. Remote clients are unaffected.
				r.Header.Del("Accept-Encoding")
			}
			chain.ServeHTTP(w, r)
		})
	}
	// OpenAPI documents are built on first request (installLazyOpenAPI).
	genericConfig.SkipOpenAPIInstallation = true
	kubeAPIs, _, _, err := kubeapiserver.CreateKubeAPIServerConfig(completed, genericConfig, informers, storageFactory)
	if err != nil {
		return nil, fmt.Errorf("api server config: %w", err)
	}
	notFound := notfoundhandler.New(kubeAPIs.ControlPlane.Generic.Serializer, filters.NoMuxAndDiscoveryIncompleteKey)
	lists, err := listcache.New(listcache.Config{
		Convertor: runtime.UnsafeObjectConvertor(legacyscheme.Scheme),
		Lists:     []runtime.Object{&api.PodList{}},
		Clock:     clock.RealClock{},
		Idle:      listCacheIdle,
		MaxBytes:  listCacheBytes,
	})
	if err != nil {
		return nil, err
	}
	gs, err := newInstance(kubeAPIs.Complete(), genericapiserver.NewEmptyDelegateWithCustomHandler(noCustomResources(notFound)), lists)
	if err != nil {
		return nil, fmt.Errorf("build api server: %w", err)
	}
	if err := installLazyOpenAPI(gs, kubeAPIs.ControlPlane.Generic.OpenAPIConfig, kubeAPIs.ControlPlane.Generic.OpenAPIV3Config); err != nil {
		return nil, fmt.Errorf("build api server: openapi: %w", err)
	}
	if err := gs.AddPostStartHook("peapod-system-namespaces", createSystemNamespaces); err != nil {
		return nil, fmt.Errorf("build api server: %w", err)
	}
	prepared := gs.PrepareRun()
	run := func(ctx context.Context) error {
		go lists.Run(ctx)
		return prepared.RunWithContext(ctx)
	}
	return &Server{run: run, loopback: kubeAPIs.ControlPlane.Generic.LoopbackClientConfig}, nil
}
