// Package agent is the composition root of a node: it obtains the node's
// credentials (joining the server with its token, or signed in-process by the
// server it runs in), builds the node's components — image store, OCI runtime,
// CNI network, volumes, container log rotation, the kubelet-style HTTPS API —
// and runs the kubelet control loop over them. It wires; it implements none.
//
// Layout of a node's data dir:
//
//	DATA/images          image store (shared with `peapod image --data-dir DATA`)
//	DATA/agent/tls       the node's CA, client and serving certificates
//	DATA/agent/runtime   OCI runtime state (sandboxes, containers, conmon)
//	DATA/agent/network   network namespaces, CNI cache and IPAM
//	DATA/agent/pods      per-pod volumes and files (hosts, resolv.conf, ...)
//	DATA/agent/logs      container logs, NS_NAME_UID/CONTAINER/N.log
package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/peapod-dev/peapod/internal/certs"
	"github.com/peapod-dev/peapod/internal/containerlogs"
	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/join"
	"github.com/peapod-dev/peapod/internal/kubelet"
	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/network"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/volume"
)

// Options are a node agent's settings (`peapod agent` flags).
type Options struct {
	// Server is the API server's URL (https://HOST:6443) and Token its join
	// token.
	Server string
	Token  string
	// Sign, when set, signs the node's certificates in-process (the agent
	// inside `peapod server`) instead of joining with the token.
	Sign     join.Signer
	NodeName string
	// NodeIPs are the node's addresses (default: the address of the
	// interface with the default route).
	NodeIPs  []net.IP
	Hostname string
	DataDir  string
	// BindAddress is where the kubelet API listens (default 0.0.0.0).
	BindAddress string
	KubeletPort int
	// ContainerRuntime is runc, crun or a path to either.
	ContainerRuntime string
	MaxPods          int
	Labels           map[string]string
	ClusterCIDR      string
	ServiceCIDR      string
	ClusterDNS       string
	// RegistriesFile is a registries.yaml used when it exists.
	RegistriesFile string
	// ContainerLogMaxSize and ContainerLogMaxFiles bound each container's
	// log (upstream's kubelet defaults: 10Mi, 5 files).
	ContainerLogMaxSize  int64
	ContainerLogMaxFiles int
	// RestartBackOff and MaxRestartBackOff override the restart back-off
	// (10 s doubling to 300 s) for tests.
	RestartBackOff    time.Duration
	MaxRestartBackOff time.Duration
	Clock             clock.WithTicker
}

// DefaultOptions are upstream-like defaults.
func DefaultOptions() Options {
	return Options{
		DataDir:              "/var/lib/peapod",
		BindAddress:          "0.0.0.0",
		KubeletPort:          10250,
		ContainerRuntime:     "runc",
		MaxPods:              110,
		ClusterCIDR:          "10.42.0.0/16",
		ServiceCIDR:          "10.43.0.0/16",
		ClusterDNS:           "10.43.0.10",
		RegistriesFile:       "/etc/peapod/registries.yaml",
		ContainerLogMaxSize:  10 << 20,
		ContainerLogMaxFiles: 5,
	}
}

func (o *Options) complete() error {
	if o.Server == "" {
		return errors.New("--server is required")
	}
	if o.Sign == nil && o.Token == "" {
		return errors.New("--token is required")
	}
	if o.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		o.Hostname = h
	}
	if o.NodeName == "" {
		o.NodeName = strings.ToLower(o.Hostname)
	}
	if len(o.NodeIPs) == 0 {
		ip, err := defaultIP()
		if err != nil {
			return fmt.Errorf("--node-ip: %w", err)
		}
		o.NodeIPs = []net.IP{ip}
	}
	if o.Clock == nil {
		o.Clock = clock.RealClock{}
	}
	abs, err := filepath.Abs(o.DataDir)
	if err != nil {
		return err
	}
	o.DataDir = abs
	return nil
}

// defaultIP is the source address of the default route's interface.
func defaultIP() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || strings.HasPrefix(ifc.Name, "pp-") ||
			strings.HasPrefix(ifc.Name, "veth") || strings.HasPrefix(ifc.Name, "cni") {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return n.IP, nil
			}
		}
	}
	return nil, errors.New("no address found; pass --node-ip")
}

// Dirs are a node's state directories inside its data dir.
type Dirs struct{ Data string }

func (d Dirs) Images() string  { return filepath.Join(d.Data, "images") }
func (d Dirs) TLS() string     { return filepath.Join(d.Data, "agent", "tls") }
func (d Dirs) Runtime() string { return filepath.Join(d.Data, "agent", "runtime") }
func (d Dirs) Network() string { return filepath.Join(d.Data, "agent", "network") }
func (d Dirs) Pods() string    { return filepath.Join(d.Data, "agent", "pods") }
func (d Dirs) Logs() string    { return filepath.Join(d.Data, "agent", "logs") }

// Run runs the node until ctx is cancelled. Pods keep running after it
// returns.
func Run(ctx context.Context, o Options, log *slog.Logger) error {
	if err := o.complete(); err != nil {
		return err
	}
	dirs := Dirs{Data: o.DataDir}
	for _, d := range []string{dirs.Runtime(), dirs.Network(), dirs.Pods(), dirs.Logs()} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return err
		}
	}
	cgBase, err := cgroupBase()
	if err != nil {
		return err
	}
	// Each node has its own cgroup root, so that several agents can share a
	// machine (and a cgroup) and a reset removes only its own node's.
	cgRoot := filepath.Join(cgBase, "kubepods-"+o.NodeName)
	rec := nodeRecord{NodeName: o.NodeName, ClusterCIDR: o.ClusterCIDR, ServiceCIDR: o.ServiceCIDR, CgroupRoot: cgRoot}
	if old, err := readRecord(dirs); err == nil {
		rec.PodCIDR = old.PodCIDR
	}
	if err := writeRecord(dirs, rec); err != nil {
		return err
	}
	if o.Sign == nil {
		if err := WritePID(o.DataDir); err != nil {
			return err
		}
	}
	id, err := ensureIdentity(ctx, dirs.TLS(), &o, o.Clock.Now())
	if err != nil {
		return fmt.Errorf("node credentials: %w", err)
	}
	client, err := kubernetes.NewForConfig(id.restConfig(o.Server))
	if err != nil {
		return err
	}

	var registries *image.RegistriesConfig
	if o.RegistriesFile != "" {
		if _, err := os.Stat(o.RegistriesFile); err == nil {
			if registries, err = image.LoadRegistriesFile(o.RegistriesFile); err != nil {
				return err
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	images, err := image.Open(image.Options{Root: dirs.Images(), Registries: registries})
	if err != nil {
		return err
	}
	cg, err := cgroups.LoadHost()
	if err != nil {
		return err
	}
	// RuntimeClass handlers: every OCI runtime installed here, by name.
	handlers := map[string]string{}
	for _, name := range []string{"runc", "crun"} {
		if p, err := exec.LookPath(name); err == nil {
			handlers[name] = p
		}
	}
	rt, err := oci.New(oci.Config{StateDir: dirs.Runtime(), Runtime: o.ContainerRuntime, Handlers: handlers, Cgroups: cg, Logger: log.With("component", "runtime")})
	if err != nil {
		return err
	}
	vols, err := volume.New(volume.Config{PodsDir: dirs.Pods(), Source: apiSource{client}, Logger: log.With("component", "volumes")})
	if err != nil {
		return err
	}
	netw := &lazyNetwork{cfg: network.Config{
		NodeName: o.NodeName, ClusterCIDR: o.ClusterCIDR, ServiceCIDR: o.ServiceCIDR,
		StateDir: dirs.Network(), Logger: log.With("component", "network"),
	}, onReady: func(podCIDR string) error {
		rec.PodCIDR = podCIDR
		return writeRecord(dirs, rec)
	}}
	k, err := kubelet.New(kubelet.Config{
		Client:            client,
		NodeName:          o.NodeName,
		NodeIPs:           o.NodeIPs,
		Hostname:          o.Hostname,
		Labels:            o.Labels,
		MaxPods:           o.MaxPods,
		KubeletPort:       int32(o.KubeletPort),
		ClusterDNS:        net.ParseIP(o.ClusterDNS),
		PodsDir:           dirs.Pods(),
		LogsDir:           dirs.Logs(),
		DataDir:           o.DataDir,
		Runtime:           rt,
		RuntimeVersion:    runtimeVersion(o.ContainerRuntime),
		Images:            images,
		Network:           netw,
		Volumes:           vols,
		Cgroups:           cg,
		CgroupRoot:        cgRoot,
		Clock:             o.Clock,
		Logger:            log.With("component", "kubelet"),
		RestartBackOff:    o.RestartBackOff,
		MaxRestartBackOff: o.MaxRestartBackOff,
	})
	if err != nil {
		return err
	}

	tlsCfg, _, err := id.servingTLS()
	if err != nil {
		return err
	}
	api, err := kubeletapi.New(kubeletapi.Config{
		Addr:      net.JoinHostPort(o.BindAddress, strconv.Itoa(o.KubeletPort)),
		TLS:       tlsCfg,
		Authorize: kubeletapi.AllowCommonNames(certs.KubeletClientCN),
		Runtime:   rt,
		Pods:      k,
		Logger:    log.With("component", "kubelet-api"),
	})
	if err != nil {
		return err
	}
	if err := api.Start(ctx); err != nil {
		return fmt.Errorf("kubelet API: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = api.Shutdown(sctx)
	}()

	logs, err := containerlogs.New(containerlogs.Config{Runtime: rt, Clock: o.Clock,
		MaxSize: o.ContainerLogMaxSize, MaxFiles: o.ContainerLogMaxFiles, Logger: log.With("component", "container-logs")})
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); logs.Run(ctx, 10*time.Second) }()
	defer wg.Wait()
	return k.Run(ctx)
}

// runtimeVersion is "NAME://VERSION" of the OCI runtime, as nodes report it.
func runtimeVersion(rt string) string {
	out, err := exec.Command(rt, "--version").Output()
	if err != nil {
		return filepath.Base(rt) + "://unknown"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	f := strings.Fields(first) // "runc version 1.1.5", "crun version 1.8.1"
	if len(f) >= 3 {
		return f[0] + "://" + f[2]
	}
	return filepath.Base(rt) + "://unknown"
}

// apiSource serves volume contents from the API with the node's client.
type apiSource struct{ c kubernetes.Interface }

func (s apiSource) GetConfigMap(ctx context.Context, ns, name string) (*v1.ConfigMap, error) {
	return s.c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiSource) GetSecret(ctx context.Context, ns, name string) (*v1.Secret, error) {
	return s.c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s apiSource) CreateToken(ctx context.Context, ns, sa string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return s.c.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, req, metav1.CreateOptions{})
}

// lazyNetwork builds the CNI network once the node knows its pod CIDR.
type lazyNetwork struct {
	cfg network.Config
	// onReady records the pod CIDR (for reset) before the host changes.
	onReady func(podCIDR string) error
	mu      sync.Mutex
	m       *network.Manager
}

func (n *lazyNetwork) EnsureHost(ctx context.Context, podCIDR string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		cfg := n.cfg
		cfg.PodCIDR = podCIDR
		if err := n.onReady(podCIDR); err != nil {
			return err
		}
		m, err := network.New(cfg)
		if err != nil {
			return err
		}
		n.m = m
	}
	return n.m.EnsureHost(ctx)
}

func (n *lazyNetwork) manager() (*network.Manager, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil {
		return nil, errors.New("agent: the pod network is not ready yet")
	}
	return n.m, nil
}

func (n *lazyNetwork) Setup(ctx context.Context, pod network.PodRef, ports []network.PortMapping) (*network.Attachment, error) {
	m, err := n.manager()
	if err != nil {
		return nil, err
	}
	return m.Setup(ctx, pod, ports)
}

func (n *lazyNetwork) Teardown(ctx context.Context, sandboxID string) error {
	m, err := n.manager()
	if err != nil {
		return err
	}
	return m.Teardown(ctx, sandboxID)
}

func (n *lazyNetwork) List() ([]string, error) {
	m, err := n.manager()
	if err != nil {
		return nil, err
	}
	return m.List()
}

// cgroupBase is this process's own cgroup, under which pods are nested.
func cgroupBase() (string, error) {
	cg, err := cgroups.LoadHost()
	if err != nil {
		return "", err
	}
	return cg.Base()
}
