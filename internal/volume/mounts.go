package volume

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/kubernetes/pkg/volume/util/subpath"
	"k8s.io/kubernetes/pkg/volume/validation"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// Mounts returns the bind mounts for container c (an init, app or ephemeral
// container; for an ephemeral one pass its EphemeralContainerCommon as a
// v1.Container) of a pod that was Setup, in the order of c.VolumeMounts.
// env is the container's resolved environment, for subPathExpr ($(VAR)
// references, expanded as the kubelet does; an unset or empty variable is an
// error). A subPath that does not exist in the volume is created in it; one
// that is absolute, has "..", or leads out of the volume through a symlink
// is refused. The subPath is bind-mounted under the pod's volume-subpaths
// directory (kept until Teardown, reused when the container starts again)
// and that mount is returned, so the container gets what was checked.
// configMap, secret, downwardAPI and projected volumes are always read-only.
// The errors carry the kubelet's wording and are meant for the container's
// waiting message (CreateContainerConfigError).
func (m *Manager) Mounts(pod *v1.Pod, c *v1.Container, env map[string]string) ([]runtime.Mount, error) {
	if err := checkUID(pod.UID); err != nil {
		return nil, err
	}
	st := m.lock(pod.UID)
	defer st.mu.Unlock()

	vols := make(map[string]*v1.Volume, len(pod.Spec.Volumes))
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	var mounts []runtime.Mount
	for i, vm := range c.VolumeMounts {
		vol, ok := vols[vm.Name]
		if !ok {
			return nil, fmt.Errorf("cannot find volume %q to mount into container %q", vm.Name, c.Name)
		}
		hostPath, mustRO, err := m.volumePath(pod, vol)
		if err != nil {
			return nil, fmt.Errorf("cannot find volume %q to mount into container %q: %w", vm.Name, c.Name, err)
		}

		subPath := vm.SubPath
		if vm.SubPathExpr != "" {
			if subPath, err = expandSubPath(vm.SubPathExpr, env); err != nil {
				return nil, err
			}
		}
		if subPath != "" {
			if hostPath, err = m.prepareSubPath(pod, c, i, vol.Name, hostPath, subPath); err != nil {
				return nil, err
			}
		}

		propagation, err := propagation(vm.MountPropagation)
		if err != nil {
			return nil, err
		}
		if err := checkRecursiveReadOnly(vm); err != nil {
			return nil, fmt.Errorf("failed to resolve recursive read-only mode: %w", err)
		}
		dest := vm.MountPath
		if !filepath.IsAbs(dest) {
			dest = "/" + dest
		}
		mounts = append(mounts, runtime.Mount{
			Source:      hostPath,
			Destination: dest,
			ReadOnly:    vm.ReadOnly || mustRO,
			Propagation: propagation,
		})
	}
	return mounts, nil
}

// volumePath is where vol is on the host and whether it must be mounted
// read-only; a volume that was not set up is an error.
func (m *Manager) volumePath(pod *v1.Pod, vol *v1.Volume) (string, bool, error) {
	var plugin string
	readOnly := true
	switch {
	case vol.HostPath != nil:
		return vol.HostPath.Path, false, nil
	case vol.EmptyDir != nil:
		plugin, readOnly = pluginEmptyDir, false
	case vol.ConfigMap != nil:
		plugin = pluginConfigMap
	case vol.Secret != nil:
		plugin = pluginSecret
	case vol.DownwardAPI != nil:
		plugin = pluginDownwardAPI
	case vol.Projected != nil:
		plugin = pluginProjected
	default:
		return "", false, fmt.Errorf("volume type %s is not supported by this node", volumeKind(vol))
	}
	dir := m.volumeDir(pod.UID, plugin, vol.Name)
	if _, err := os.Stat(dir); err != nil {
		return "", false, fmt.Errorf("volume is not set up: %w", err)
	}
	return dir, readOnly, nil
}

// expandSubPath expands subPathExpr from env as the kubelet's
// ExpandContainerVolumeMounts.
func expandSubPath(expr string, env map[string]string) (string, error) {
	missing := sets.New[string]()
	expanded := expansion.Expand(expr, func(key string) string {
		v, ok := env[key]
		if !ok || v == "" {
			missing.Insert(key)
		}
		return v
	})
	if missing.Len() > 0 {
		return "", fmt.Errorf("missing value for %s", strings.Join(sets.List(missing), ", "))
	}
	return expanded, nil
}

// prepareSubPath checks subPath, creates it in the volume when missing and
// bind-mounts it safely, as the kubelet's makeMounts; it returns the path to
// give the runtime.
func (m *Manager) prepareSubPath(pod *v1.Pod, c *v1.Container, index int, volName, volumePath, subPath string) (string, error) {
	if filepath.IsAbs(subPath) {
		return "", fmt.Errorf("error SubPath `%s` must not be an absolute path", subPath)
	}
	if err := validation.ValidatePathNoBacksteps(subPath); err != nil {
		return "", fmt.Errorf("unable to provision SubPath `%s`: %w", subPath, err)
	}
	hostPath := filepath.Join(volumePath, subPath)
	if exists, err := m.hu.PathExists(hostPath); err != nil {
		m.log.Warn("could not tell whether a subPath exists", "path", hostPath, "err", err)
	} else if !exists {
		// Created now with the volume's mode (with an fsGroup it must be
		// g+rwx), never following a symlink out of the volume.
		perm, err := m.hu.GetMode(volumePath)
		if err != nil {
			return "", err
		}
		if err := m.subpather.SafeMakeDir(subPath, volumePath, perm); err != nil {
			m.log.Warn("failed to create a subPath directory", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "volume", volName, "err", err)
			return "", fmt.Errorf("failed to create subPath directory for volumeMount %q of container %q", volName, c.Name)
		}
	}
	path, _, err := m.subpather.PrepareSafeSubpath(subpath.Subpath{
		VolumeMountIndex: index,
		Path:             hostPath,
		VolumeName:       volName,
		VolumePath:       volumePath,
		PodDir:           m.podDir(pod.UID),
		ContainerName:    c.Name,
	})
	if err != nil {
		// As the kubelet: no details about the host in the message.
		m.log.Warn("failed to prepare a subPath", "pod", pod.Namespace+"/"+pod.Name, "container", c.Name, "volume", volName, "err", err)
		return "", fmt.Errorf("failed to prepare subPath for volumeMount %q of container %q", volName, c.Name)
	}
	return path, nil
}

// propagation maps a volumeMount's mountPropagation to runtime.Mount's.
func propagation(mode *v1.MountPropagationMode) (string, error) {
	switch {
	case mode == nil, *mode == v1.MountPropagationNone:
		return "private", nil
	case *mode == v1.MountPropagationHostToContainer:
		return "rslave", nil
	case *mode == v1.MountPropagationBidirectional:
		return "rshared", nil
	default:
		return "", fmt.Errorf("invalid MountPropagation mode: %q", *mode)
	}
}

// checkRecursiveReadOnly refuses what the kubelet refuses when the runtime
// does not support recursive read-only mounts (runtime.Mount has none):
// IfPossible is then a plain read-only mount, Enabled an error.
func checkRecursiveReadOnly(vm v1.VolumeMount) error {
	if vm.RecursiveReadOnly == nil || *vm.RecursiveReadOnly == v1.RecursiveReadOnlyDisabled {
		return nil
	}
	if !vm.ReadOnly {
		return fmt.Errorf("volume %q requested recursive read-only mode, but it is not read-only", vm.Name)
	}
	if vm.MountPropagation != nil && *vm.MountPropagation != v1.MountPropagationNone {
		return fmt.Errorf("volume %q requested recursive read-only mode, but it is not compatible with propagation %q", vm.Name, *vm.MountPropagation)
	}
	switch *vm.RecursiveReadOnly {
	case v1.RecursiveReadOnlyIfPossible:
		return nil
	case v1.RecursiveReadOnlyEnabled:
		return fmt.Errorf("volume %q requested recursive read-only mode, but it is not supported by the runtime", vm.Name)
	default:
		return fmt.Errorf("unknown recursive read-only mode %q", *vm.RecursiveReadOnly)
	}
}
