package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/cni/pkg/version"
)

var (
	// ErrNotFound is returned by Status when the sandbox has no network here.
	ErrNotFound = errors.New("network: not found")
	// ErrInvalid is returned when an argument (sandbox ID, port mapping) is
	// malformed.
	ErrInvalid = errors.New("network: invalid argument")
)

// PodRef names a pod's sandbox. SandboxID is required (it names the
// namespace and is the CNI container ID); the others go to the plugins as
// K8S_POD_* arguments.
type PodRef struct {
	Namespace, Name, UID, SandboxID string
}

// PortMapping is a host port forwarded to a pod port. Protocol is tcp, udp or
// sctp in any case (empty is tcp); an empty HostIP means every host address.
type PortMapping struct {
	HostPort, ContainerPort int32
	Protocol                string
	HostIP                  string
}

// Attachment is a sandbox's network: the bind-mounted network namespace the
// sandbox's containers join, and the pod's addresses.
type Attachment struct {
	NetNSPath string
	IPs       []net.IP
}

// Manager owns the pod network of one node. Its methods are safe for
// concurrent use; calls for the same sandbox are serialized, Reset excludes
// everything else.
type Manager struct {
	s    *settings
	log  *slog.Logger
	list *libcni.NetworkConfigList
	cni  *libcni.CNIConfig

	mu    sync.RWMutex // Reset holds it exclusively, everything else shared
	locks keyedMutex

	nsDirMu    sync.Mutex
	nsDirReady bool
}

// New validates cfg and returns a Manager; it changes nothing on the host.
func New(cfg Config) (*Manager, error) {
	s, err := parseConfig(cfg)
	if err != nil {
		return nil, err
	}
	list, err := libcni.NetworkConfFromBytes(s.conflist())
	if err != nil {
		return nil, fmt.Errorf("network: parse generated conflist: %w", err)
	}
	log := s.Logger.With("network", s.name)
	// An explicit exec: libcni's lazily made default is not safe for
	// concurrent use.
	exec := &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: stderrLog{log}},
		PluginDecoder: version.PluginDecoder{},
	}
	return &Manager{
		s:    s,
		log:  log,
		list: list,
		cni:  libcni.NewCNIConfigWithCacheDir(s.PluginDirs, s.cacheDir(), exec),
	}, nil
}

// stderrLog logs what the plugins write to stderr (they only do on trouble).
type stderrLog struct{ log *slog.Logger }

func (w stderrLog) Write(p []byte) (int, error) {
	if s := strings.TrimSpace(string(p)); s != "" {
		w.log.Warn("CNI plugin stderr", "text", s)
	}
	return len(p), nil
}

// Name is the node's bridge and CNI network name (BridgeName(NodeName)).
func (m *Manager) Name() string { return m.s.name }

// Gateway is the pods' gateway, the bridge's address.
func (m *Manager) Gateway() net.IP { return slices.Clone(m.s.gateway) }

func (m *Manager) netnsPath(id string) string { return filepath.Join(m.s.netnsDir(), id) }

func validateID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty sandbox ID", ErrInvalid)
	}
	if e := utils.ValidateContainerID(id); e != nil {
		return fmt.Errorf("%w: sandbox ID %q: %s", ErrInvalid, id, e.Msg)
	}
	return nil
}

// Setup gives the sandbox its network: a new network namespace bind-mounted
// at StateDir/netns/<SandboxID>, then CNI ADD (bridge with host-local IPAM,
// portmap with the ports that have a host port, loopback). For a sandbox that
// is set up already it returns the existing attachment from libcni's cache
// (ports are not compared), so an agent can call it again after a restart.
// Leftovers of an interrupted earlier Setup are torn down first. On error
// nothing of the sandbox is left: the plugins are asked to undo (each one,
// even when another fails), the firewall rules are swept and the namespace
// is removed.
func (m *Manager) Setup(ctx context.Context, pod PodRef, ports []PortMapping) (*Attachment, error) {
	id := pod.SandboxID
	if err := validateID(id); err != nil {
		return nil, err
	}
	pm, err := portMappings(ports)
	if err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	defer m.locks.lock(id)()

	if att, err := m.status(id); err == nil {
		return att, nil
	}
	if err := m.teardown(ctx, id); err != nil {
		return nil, fmt.Errorf("network: clean up an earlier setup of sandbox %s: %w", id, err)
	}
	if err := m.ensureNetnsDir(); err != nil {
		return nil, err
	}
	path := m.netnsPath(id)
	if err := createNetNS(path); err != nil {
		return nil, fmt.Errorf("network: sandbox %s: %w", id, err)
	}
	rt := m.runtimeConf(pod, path, pm)
	start := time.Now()
	res, err := m.cni.AddNetworkList(ctx, m.list, rt)
	var att *Attachment
	if err == nil {
		att, err = m.attachment(id, res)
	}
	if err != nil {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		undo := errors.Join(m.delete(cctx, m.list, rt), sweepFirewall(cctx, m.s.name, id), removeNetNS(path))
		if undo != nil {
			m.log.Warn("undoing a failed network setup", "sandbox", id, "err", undo)
		}
		return nil, fmt.Errorf("network: set up sandbox %s: %w", id, err)
	}
	m.log.Debug("sandbox network set up", "sandbox", id, "pod", pod.Namespace+"/"+pod.Name,
		"ips", att.IPs, "ports", len(pm), "took", time.Since(start))
	return att, nil
}

// Status returns the attachment of a sandbox that is set up, from libcni's
// cache, so it works after an agent restart. A sandbox without a cached
// result or whose namespace is gone (after a reboot) is ErrNotFound; Setup
// then makes it anew.
func (m *Manager) Status(ctx context.Context, sandboxID string) (*Attachment, error) {
	if err := validateID(sandboxID); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	defer m.locks.lock(sandboxID)()
	return m.status(sandboxID)
}

func (m *Manager) status(id string) (*Attachment, error) {
	res, err := m.cni.GetNetworkListCachedResult(m.list, &libcni.RuntimeConf{ContainerID: id, IfName: ifName})
	if err != nil {
		return nil, fmt.Errorf("network: cached result of sandbox %s: %w", id, err)
	}
	if res == nil {
		return nil, fmt.Errorf("%w: sandbox %s has no network", ErrNotFound, id)
	}
	if _, live := nsState(m.netnsPath(id)); !live {
		return nil, fmt.Errorf("%w: the network namespace of sandbox %s is gone", ErrNotFound, id)
	}
	return m.attachment(id, res)
}

// Teardown runs CNI DEL with the configuration and port mappings cached at
// Setup (so it works after a restart and after a config change), sweeps the
// sandbox's firewall rules when the plugins could not see them, and removes
// the namespace. It is idempotent: an unknown sandbox is nil. When DEL fails
// the namespace is kept, so that List still reports the sandbox and a later
// Teardown can retry.
func (m *Manager) Teardown(ctx context.Context, sandboxID string) error {
	if err := validateID(sandboxID); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	defer m.locks.lock(sandboxID)()
	return m.teardown(ctx, sandboxID)
}

func (m *Manager) teardown(ctx context.Context, id string) error {
	path := m.netnsPath(id)
	exists, live := nsState(path)
	list, rt := m.list, &libcni.RuntimeConf{ContainerID: id, IfName: ifName}
	cached := false
	if b, crt, err := m.cni.GetNetworkListCachedConfig(m.list, rt); err != nil {
		m.log.Warn("ignoring an unreadable CNI cache entry", "sandbox", id, "err", err)
	} else if b != nil {
		if l, err := libcni.NetworkConfFromBytes(b); err != nil {
			m.log.Warn("ignoring an unparsable cached CNI config", "sandbox", id, "err", err)
		} else {
			list, rt, cached = l, crt, true
		}
	}
	if !exists && !cached {
		return nil
	}
	rt.NetNS = ""
	if live {
		rt.NetNS = path
	}
	if err := m.delete(ctx, list, rt); err != nil {
		return fmt.Errorf("network: tear down sandbox %s: %w", id, err)
	}
	if !live || !cached {
		if err := sweepFirewall(ctx, m.s.name, id); err != nil {
			return fmt.Errorf("network: tear down sandbox %s: %w", id, err)
		}
	}
	if err := removeNetNS(path); err != nil {
		return fmt.Errorf("network: tear down sandbox %s: %w", id, err)
	}
	m.log.Debug("sandbox network torn down", "sandbox", id)
	return nil
}

// delete runs CNI DEL for the list. DEL stops at the first plugin that
// fails; then every plugin gets its own DEL, so that one broken plugin does
// not strand the others' state (the pod's address above all).
func (m *Manager) delete(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	err := m.cni.DelNetworkList(ctx, list, rt)
	if err == nil {
		return nil
	}
	m.log.Warn("CNI DEL failed; retrying plugin by plugin", "sandbox", rt.ContainerID, "err", err)
	var errs []error
	for i := len(list.Plugins) - 1; i >= 0; i-- {
		p, err := libcni.InjectConf(list.Plugins[i], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
		if err == nil {
			err = m.cni.DelNetwork(ctx, p, rt)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("plugin %s (delete): %w", list.Plugins[i].Network.Type, err))
		}
	}
	return errors.Join(errs...)
}

// List returns the IDs of the sandboxes that have a namespace or a cached
// network here, sorted: after a crash, those the caller no longer knows are
// to be torn down.
func (m *Manager) List() ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.listIDs()
}

func (m *Manager) listIDs() ([]string, error) {
	var ids []string
	entries, err := os.ReadDir(m.s.netnsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("network: %w", err)
	}
	for _, e := range entries {
		if validateID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("network: read CNI cache: %w", err)
	}
	for _, a := range atts {
		if a.Network == m.s.name && validateID(a.ContainerID) == nil {
			ids = append(ids, a.ContainerID)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// Reset removes everything of this node's network: it tears down every
// sandbox (removing the namespaces even when a teardown fails), sweeps the
// network's firewall rules, deletes the bridge and StateDir (with host-local's
// allocations and libcni's cache), and deletes the cluster and service
// unreachable routes only when no other peapod bridge remains on the machine;
// then also portmap's chains shared by every CNI user (CNI-HOSTPORT-*), if
// none of them has host ports. Other nodes' networks are left alone. Reset is idempotent; the Manager can be
// used again after EnsureHost.
func (m *Manager) Reset(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	ids, err := m.listIDs()
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range ids {
		if err := m.teardown(ctx, id); err != nil {
			errs = append(errs, err)
			if err := removeNetNS(m.netnsPath(id)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := sweepFirewall(ctx, m.s.name, ""); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if err := m.removeHostState(ctx); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	m.nsDirMu.Lock()
	if err := unmountDir(m.s.netnsDir()); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	} else {
		m.nsDirReady = false
	}
	m.nsDirMu.Unlock()
	if err := os.RemoveAll(m.s.StateDir); err != nil {
		errs = append(errs, fmt.Errorf("network: %w", err))
	}
	if len(errs) == 0 {
		m.log.Info("node network reset", "sandboxes", len(ids))
	}
	return errors.Join(errs...)
}

func (m *Manager) runtimeConf(pod PodRef, path string, pm []portMapEntry) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: pod.SandboxID,
		NetNS:       path,
		IfName:      ifName,
		// What the kubelet passes; IgnoreUnknown because the plugins reject
		// arguments they do not know otherwise.
		Args: [][2]string{{"IgnoreUnknown", "1"}},
	}
	for _, a := range [][2]string{
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.SandboxID},
		{"K8S_POD_UID", pod.UID},
	} {
		if a[1] != "" {
			rt.Args = append(rt.Args, a)
		}
	}
	if len(pm) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	return rt
}

// attachment picks the pod's addresses out of a CNI result: those on the
// interface inside the sandbox (not the bridge's or the host end of the veth).
func (m *Manager) attachment(id string, r types.Result) (*Attachment, error) {
	res, err := current.NewResultFromResult(r)
	if err != nil {
		return nil, fmt.Errorf("network: CNI result of sandbox %s: %w", id, err)
	}
	att := &Attachment{NetNSPath: m.netnsPath(id)}
	for _, ipc := range res.IPs {
		if ipc.Interface != nil && *ipc.Interface >= 0 && *ipc.Interface < len(res.Interfaces) &&
			res.Interfaces[*ipc.Interface].Sandbox == "" {
			continue
		}
		if ipc.Address.IP.IsLoopback() {
			continue
		}
		att.IPs = append(att.IPs, ipc.Address.IP)
	}
	if len(att.IPs) == 0 {
		return nil, fmt.Errorf("network: the CNI result of sandbox %s has no pod address", id)
	}
	return att, nil
}

// cleanupContext outlives the caller's cancellation, so an undo runs to the
// end, within a bound.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
}

// keyedMutex serializes work per key.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	sync.Mutex
	refs int
}

// lock locks key and returns its unlock.
func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.refs++
	k.mu.Unlock()
	e.Lock()
	return func() {
		e.Unlock()
		k.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
