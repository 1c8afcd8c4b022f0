package volume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	goruntime "runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/kubernetes/pkg/volume/util/hostutil"
	"k8s.io/kubernetes/pkg/volume/util/subpath"
	"k8s.io/mount-utils"
	"k8s.io/utils/clock"
)

// Source is where volume contents come from (the agent implements it with
// client-go; tests with a fake).
type Source interface {
	// GetConfigMap returns the configMap; an absent one is an error for
	// which apierrors.IsNotFound is true.
	GetConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error)
	// GetSecret returns the secret; an absent one is an error for which
	// apierrors.IsNotFound is true.
	GetSecret(ctx context.Context, namespace, name string) (*v1.Secret, error)
	// CreateToken issues a service account token (the TokenRequest API,
	// serviceaccounts/token) for the pod named in req's bound object
	// reference, for projected serviceAccountToken sources.
	CreateToken(ctx context.Context, namespace, serviceAccount string, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error)
}

// Config configures a Manager.
type Config struct {
	// PodsDir is the absolute directory that holds one directory per pod
	// (e.g. <data-dir>/agent/pods); it is created if missing.
	PodsDir string
	// Source serves configMaps, secrets and tokens. Required.
	Source Source
	// Allocatable is the node's allocatable resources: the value of a
	// downwardAPI resourceFieldRef of a limit the container does not set,
	// and the upper bound of memory-backed volumes. Empty: the host's CPU
	// count and memory.
	Allocatable v1.ResourceList
	// Logger receives what the Manager does; nil discards.
	Logger *slog.Logger
	// Clock tells token ages; nil is the real clock.
	Clock clock.PassiveClock
}

// VolumeError is one volume's Setup failure. Its text is the kubelet's
// FailedMount event message; it wraps the cause.
type VolumeError struct {
	// Volume is the pod's volume name.
	Volume string
	Err    error
}

func (e *VolumeError) Error() string {
	return fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", e.Volume, e.Err)
}

func (e *VolumeError) Unwrap() error { return e.Err }

// Manager owns the volumes of the pods of one node.
type Manager struct {
	podsDir     string
	src         Source
	allocatable v1.ResourceList
	log         *slog.Logger
	clock       clock.PassiveClock
	hu          hostutil.HostUtils
	subpather   subpath.Interface
	// tmpfs is false only in unit tests run without root: memory-backed
	// volumes are then plain directories.
	tmpfs bool
	// noswapUnsupported is set once the kernel refused tmpfs' noswap.
	noswapUnsupported atomic.Bool

	mu   sync.Mutex
	pods map[types.UID]*podState
}

// podState is what the Manager remembers of a pod between calls; its mutex
// serializes the calls for the pod.
type podState struct {
	mu sync.Mutex
	// tokens are the service account tokens issued for the pod, by request.
	tokens map[string]*cachedToken
	// hostPaths are the hostPath volumes that passed their type check.
	hostPaths map[string]bool
}

// New returns a Manager for the pods under cfg.PodsDir.
func New(cfg Config) (*Manager, error) {
	if cfg.PodsDir == "" || !filepath.IsAbs(cfg.PodsDir) {
		return nil, fmt.Errorf("volume: PodsDir %q must be an absolute path", cfg.PodsDir)
	}
	if cfg.Source == nil {
		return nil, errors.New("volume: a Source is required")
	}
	if err := os.MkdirAll(cfg.PodsDir, 0o750); err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	m := &Manager{
		podsDir:     filepath.Clean(cfg.PodsDir),
		src:         cfg.Source,
		allocatable: cfg.Allocatable,
		log:         cfg.Logger,
		clock:       cfg.Clock,
		hu:          hostutil.NewHostUtil(),
		subpather:   subpath.New(mount.New("")),
		tmpfs:       true,
		pods:        map[types.UID]*podState{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.clock == nil {
		m.clock = clock.RealClock{}
	}
	if len(m.allocatable) == 0 {
		m.allocatable = hostCapacity()
	}
	return m, nil
}

// hostCapacity is the host's CPU count and memory.
func hostCapacity() v1.ResourceList {
	rl := v1.ResourceList{
		v1.ResourceCPU: *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
	}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		rl[v1.ResourceMemory] = *resource.NewQuantity(int64(si.Totalram)*int64(si.Unit), resource.BinarySI)
	}
	return rl
}

// lock returns the pod's state, locked; the caller unlocks st.mu.
func (m *Manager) lock(uid types.UID) *podState {
	m.mu.Lock()
	st, ok := m.pods[uid]
	if !ok {
		st = &podState{tokens: map[string]*cachedToken{}, hostPaths: map[string]bool{}}
		m.pods[uid] = st
	}
	m.mu.Unlock()
	st.mu.Lock()
	return st
}

// forget drops the pod's state (the caller holds st.mu).
func (m *Manager) forget(uid types.UID, st *podState) {
	m.mu.Lock()
	if m.pods[uid] == st {
		delete(m.pods, uid)
	}
	m.mu.Unlock()
}

// checkUID refuses UIDs that are not a single path element.
func checkUID(uid types.UID) error {
	s := string(uid)
	if s == "" || s == "." || s == ".." || filepath.Base(s) != s {
		return fmt.Errorf("volume: invalid pod UID %q", s)
	}
	return nil
}

func (m *Manager) podDir(uid types.UID) string { return filepath.Join(m.podsDir, string(uid)) }

func (m *Manager) volumeDir(uid types.UID, plugin, name string) string {
	return filepath.Join(m.podsDir, string(uid), "volumes", plugin, name)
}

// The kubelet's (escaped) plugin names, which name the volume directories.
const (
	pluginEmptyDir    = "kubernetes.io~empty-dir"
	pluginConfigMap   = "kubernetes.io~configmap"
	pluginSecret      = "kubernetes.io~secret"
	pluginDownwardAPI = "kubernetes.io~downward-api"
	pluginProjected   = "kubernetes.io~projected"
)

// Setup prepares every volume of pod under PodsDir/<uid>/volumes/<plugin>/<name>
// (see the package documentation for each kind). It is idempotent; a later
// call refreshes the contents of configMap, secret, downwardAPI and
// projected volumes in place (atomically) and renews service account tokens
// before they expire. Volumes are independent: each failing one adds a
// *VolumeError to the returned error (errors.Join) and leaves nothing
// half-written, and the others are still set up. Setup must not run for a
// pod after its Teardown started.
func (m *Manager) Setup(ctx context.Context, pod *v1.Pod) error {
	if err := checkUID(pod.UID); err != nil {
		return err
	}
	st := m.lock(pod.UID)
	defer st.mu.Unlock()
	var errs []error
	for i := range pod.Spec.Volumes {
		vol := &pod.Spec.Volumes[i]
		if err := m.setupVolume(ctx, st, pod, vol); err != nil {
			m.log.Warn("volume setup failed", "pod", pod.Namespace+"/"+pod.Name, "volume", vol.Name, "err", err)
			errs = append(errs, &VolumeError{Volume: vol.Name, Err: err})
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) setupVolume(ctx context.Context, st *podState, pod *v1.Pod, vol *v1.Volume) error {
	switch {
	case vol.EmptyDir != nil:
		return m.setupEmptyDir(pod, vol)
	case vol.HostPath != nil:
		if st.hostPaths[vol.Name] {
			return nil
		}
		if err := setupHostPath(m.hu, vol.HostPath); err != nil {
			return err
		}
		st.hostPaths[vol.Name] = true
		return nil
	case vol.ConfigMap != nil:
		payload, err := m.configMapPayload(ctx, pod.Namespace, vol.ConfigMap)
		if err != nil {
			return err
		}
		return m.writeVolume(pod, vol.Name, pluginConfigMap, false, payload)
	case vol.Secret != nil:
		payload, err := m.secretPayload(ctx, pod.Namespace, vol.Secret)
		if err != nil {
			return err
		}
		return m.writeVolume(pod, vol.Name, pluginSecret, true, payload)
	case vol.DownwardAPI != nil:
		payload, err := m.downwardAPIPayload(pod, vol.DownwardAPI.Items, vol.DownwardAPI.DefaultMode)
		if err != nil {
			return err
		}
		return m.writeVolume(pod, vol.Name, pluginDownwardAPI, true, payload)
	case vol.Projected != nil:
		payload, err := m.projectedPayload(ctx, st, pod, vol.Projected)
		if err != nil {
			return err
		}
		return m.writeVolume(pod, vol.Name, pluginProjected, true, payload)
	default:
		return fmt.Errorf("volume type %s is not supported by this node", volumeKind(vol))
	}
}

// volumeKind names the volume source set in vol (its JSON field name).
func volumeKind(vol *v1.Volume) string {
	s := vol.VolumeSource
	switch {
	case s.PersistentVolumeClaim != nil:
		return "persistentVolumeClaim"
	case s.Ephemeral != nil:
		return "ephemeral"
	case s.Image != nil:
		return "image"
	case s.CSI != nil:
		return "csi"
	case s.GitRepo != nil:
		return "gitRepo"
	case s.NFS != nil:
		return "nfs"
	case s.ISCSI != nil:
		return "iscsi"
	case s.FC != nil:
		return "fc"
	default:
		return "(unknown)"
	}
}

// PodUIDs lists the pods that have a directory under PodsDir (to clean up
// orphans after a crash).
func (m *Manager) PodUIDs() ([]types.UID, error) {
	entries, err := os.ReadDir(m.podsDir)
	if err != nil {
		return nil, fmt.Errorf("volume: %w", err)
	}
	var uids []types.UID
	for _, e := range entries {
		if e.IsDir() {
			uids = append(uids, types.UID(e.Name()))
		}
	}
	return uids, nil
}

// Teardown unmounts everything under PodsDir/<uid> (tmpfs volumes, subPath
// bind mounts, mounts propagated back from containers) and removes the
// directory entirely, once no mount is left below it. It is idempotent; the
// pod's containers must be gone.
func (m *Manager) Teardown(ctx context.Context, podUID types.UID) error {
	if err := checkUID(podUID); err != nil {
		return err
	}
	st := m.lock(podUID)
	defer st.mu.Unlock()
	dir := m.podDir(podUID)
	if _, err := os.Lstat(dir); errors.Is(err, os.ErrNotExist) {
		m.forget(podUID, st)
		return nil
	}
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("volume: tear down pod %s: %w", podUID, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("volume: tear down pod %s: %w", podUID, err)
	}
	m.forget(podUID, st)
	m.log.Debug("pod volumes removed", "podUID", podUID)
	return nil
}
