package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
	"k8s.io/kubernetes/pkg/volume"
)

// setupEmptyDir makes an emptyDir volume: a directory, or a tmpfs for medium
// Memory. A ready marker (as the kubelet's, under plugins/) makes later calls
// do nothing, except remounting a memory volume whose tmpfs is gone.
func (m *Manager) setupEmptyDir(pod *v1.Pod, vol *v1.Volume) (err error) {
	medium := vol.EmptyDir.Medium
	switch {
	case medium == v1.StorageMediumDefault, medium == v1.StorageMediumMemory:
	case strings.HasPrefix(string(medium), string(v1.StorageMediumHugePages)):
		return fmt.Errorf("emptyDir medium %q is not supported by this node", medium)
	default:
		return fmt.Errorf("unknown storage medium %q", medium)
	}
	dir := m.volumeDir(pod.UID, pluginEmptyDir, vol.Name)
	ready := filepath.Join(m.podDir(pod.UID), "plugins", pluginEmptyDir, vol.Name, "ready")
	if _, err := os.Stat(ready); err == nil {
		if _, err := os.Stat(dir); err == nil {
			if medium == v1.StorageMediumDefault {
				return nil
			}
			if ok, err := isTmpfs(dir); err != nil || ok || !m.tmpfs {
				return err
			}
		} else if err := os.Remove(ready); err != nil {
			return err
		}
	}

	created, err := makeDir(dir)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && created {
			if rerr := removeVolume(dir); rerr != nil {
				m.log.Error("cleaning up a failed volume", "dir", dir, "err", rerr)
			}
		}
	}()
	if medium == v1.StorageMediumMemory {
		if err := m.mountTmpfs(dir, m.memoryVolumeSize(pod, vol.EmptyDir.SizeLimit)); err != nil {
			return err
		}
	}
	var policy *v1.PodFSGroupChangePolicy
	if sc := pod.Spec.SecurityContext; sc != nil {
		policy = sc.FSGroupChangePolicy
	}
	if err := volume.SetVolumeOwnership(ownershipMounter{readOnly: false}, dir, fsGroup(pod), policy, nil); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(ready), 0o750); err != nil {
		return err
	}
	return os.WriteFile(ready, nil, 0o600)
}

// memoryVolumeSize is the size of a memory-backed volume, as the kubelet
// computes it: the node's allocatable memory, lowered to the pod's memory
// limit when every container has one, lowered to sizeLimit when it is
// positive and smaller. 0 leaves the kernel's default.
func (m *Manager) memoryVolumeSize(pod *v1.Pod, sizeLimit *resource.Quantity) int64 {
	var size int64
	if q, ok := m.allocatable[v1.ResourceMemory]; ok {
		size = q.Value()
	}
	lower := func(v int64) {
		if v > 0 && (size <= 0 || v <= size) {
			size = v
		}
	}
	if allContainersLimitMemory(pod) {
		if q, ok := resourcehelper.PodLimits(pod, resourcehelper.PodResourcesOptions{})[v1.ResourceMemory]; ok {
			lower(q.Value())
		}
	}
	if sizeLimit != nil {
		lower(sizeLimit.Value())
	}
	return size
}

// allContainersLimitMemory reports whether every container and init
// container sets a memory limit (else the pod has no memory limit).
func allContainersLimitMemory(pod *v1.Pod) bool {
	for _, cs := range [][]v1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for i := range cs {
			if cs[i].Resources.Limits.Memory().IsZero() {
				return false
			}
		}
	}
	return len(pod.Spec.Containers) > 0
}

// fsGroup is the pod's fsGroup, nil when it has none.
func fsGroup(pod *v1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.FSGroup
	}
	return nil
}

// ownershipMounter is the volume.Mounter that SetVolumeOwnership reads the
// attributes of (only GetAttributes is used); readOnly volumes get g+r,
// others g+rw.
type ownershipMounter struct {
	*volume.MetricsNil
	readOnly bool
}

var errNotAVolume = errors.New("volume: not a real mounter")

func (o ownershipMounter) GetPath() string                          { return "" }
func (o ownershipMounter) SetUp(volume.MounterArgs) error           { return errNotAVolume }
func (o ownershipMounter) SetUpAt(string, volume.MounterArgs) error { return errNotAVolume }
func (o ownershipMounter) GetAttributes() volume.Attributes {
	return volume.Attributes{ReadOnly: o.readOnly, Managed: true}
}
