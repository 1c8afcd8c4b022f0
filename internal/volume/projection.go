package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/kubernetes/pkg/api/v1/resource"
	"k8s.io/kubernetes/pkg/fieldpath"
	"k8s.io/kubernetes/pkg/volume"
	"k8s.io/kubernetes/pkg/volume/configmap"
	"k8s.io/kubernetes/pkg/volume/secret"
	volumeutil "k8s.io/kubernetes/pkg/volume/util"
)

// defaultFileMode is the API's default for defaultMode (0644).
const defaultFileMode int32 = 0o644

// payload is what AtomicWriter writes: relative path -> content and mode.
type payload = map[string]volumeutil.FileProjection

func orDefaultMode(mode *int32) *int32 {
	if mode != nil {
		return mode
	}
	m := defaultFileMode
	return &m
}

// notFoundError is a NotFound from the Source reworded as the kubelet's
// configMap and secret managers word it (`configmap "x" not found`); it
// wraps the API error, so apierrors.IsNotFound holds.
type notFoundError struct {
	kind, name string
	err        error
}

func (e *notFoundError) Error() string { return fmt.Sprintf("%s %q not found", e.kind, e.name) }
func (e *notFoundError) Unwrap() error { return e.err }

func (m *Manager) getConfigMap(ctx context.Context, namespace, name string) (*v1.ConfigMap, error) {
	cm, err := m.src.GetConfigMap(ctx, namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &notFoundError{kind: "configmap", name: name, err: err}
		}
		return nil, err
	}
	return cm, nil
}

func (m *Manager) getSecret(ctx context.Context, namespace, name string) (*v1.Secret, error) {
	s, err := m.src.GetSecret(ctx, namespace, name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &notFoundError{kind: "secret", name: name, err: err}
		}
		return nil, err
	}
	return s, nil
}

// configMapPayload is the content of a configMap volume or projection: an
// optional configMap that is absent is empty; a key named in items that the
// configMap lacks is an error unless optional.
func (m *Manager) configMapPayload(ctx context.Context, namespace string, src *v1.ConfigMapVolumeSource) (payload, error) {
	return m.configMapItems(ctx, namespace, src.Name, src.Items, src.Optional, src.DefaultMode)
}

func (m *Manager) configMapItems(ctx context.Context, namespace, name string, items []v1.KeyToPath, opt *bool, defaultMode *int32) (payload, error) {
	optional := opt != nil && *opt
	cm, err := m.getConfigMap(ctx, namespace, name)
	if err != nil {
		if !(apierrors.IsNotFound(err) && optional) {
			return nil, err
		}
		cm = &v1.ConfigMap{}
	}
	return configmap.MakePayload(items, cm, orDefaultMode(defaultMode), optional)
}

// secretPayload is configMapPayload for secrets.
func (m *Manager) secretPayload(ctx context.Context, namespace string, src *v1.SecretVolumeSource) (payload, error) {
	return m.secretItems(ctx, namespace, src.SecretName, src.Items, src.Optional, src.DefaultMode)
}

func (m *Manager) secretItems(ctx context.Context, namespace, name string, items []v1.KeyToPath, opt *bool, defaultMode *int32) (payload, error) {
	optional := opt != nil && *opt
	s, err := m.getSecret(ctx, namespace, name)
	if err != nil {
		if !(apierrors.IsNotFound(err) && optional) {
			return nil, err
		}
		s = &v1.Secret{}
	}
	return secret.MakePayload(items, s, orDefaultMode(defaultMode), optional)
}

// downwardAPIPayload is the content of a downwardAPI volume or projection,
// as the kubelet's CollectData: fieldRefs through fieldpath (labels and
// annotations as sorted k="v" lines), resourceFieldRefs of the named
// container with the divisor applied and unset limits taken from the node's
// allocatable resources.
func (m *Manager) downwardAPIPayload(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, defaultMode *int32) (payload, error) {
	mode := orDefaultMode(defaultMode)
	var errs []error
	data := payload{}
	for _, item := range items {
		var fp volumeutil.FileProjection
		fp.Mode = *mode
		if item.Mode != nil {
			fp.Mode = *item.Mode
		}
		switch {
		case item.FieldRef != nil:
			v, err := fieldpath.ExtractFieldPathAsString(pod, item.FieldRef.FieldPath)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fp.Data = []byte(v)
		case item.ResourceFieldRef != nil:
			v, err := resource.ExtractResourceValueByContainerNameAndNodeAllocatable(item.ResourceFieldRef, pod, item.ResourceFieldRef.ContainerName, m.allocatable)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			fp.Data = []byte(v)
		}
		data[filepath.Clean(item.Path)] = fp
	}
	if err := aggregate(errs); err != nil {
		return nil, err
	}
	return data, nil
}

// projectedPayload merges the projected sources in order (a later source
// wins a path). Every source is tried; the errors are aggregated.
func (m *Manager) projectedPayload(ctx context.Context, st *podState, pod *v1.Pod, src *v1.ProjectedVolumeSource) (payload, error) {
	defaultMode := orDefaultMode(src.DefaultMode)
	fsUser, group := volumeutil.FsUserFrom(pod), fsGroup(pod)
	var errs []error
	data := payload{}
	merge := func(p payload, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for k, v := range p {
			data[k] = v
		}
	}
	for _, s := range src.Sources {
		switch {
		case s.Secret != nil:
			merge(m.secretItems(ctx, pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, defaultMode))
		case s.ConfigMap != nil:
			merge(m.configMapItems(ctx, pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, defaultMode))
		case s.DownwardAPI != nil:
			merge(m.downwardAPIPayload(pod, s.DownwardAPI.Items, defaultMode))
		case s.ServiceAccountToken != nil:
			token, err := m.serviceAccountToken(ctx, st, pod, s.ServiceAccountToken)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			// With an fsGroup, SetVolumeOwnership turns 0600 into 0640.
			mode := *defaultMode
			if fsUser != nil || group != nil {
				mode = 0o600
			}
			data[s.ServiceAccountToken.Path] = volumeutil.FileProjection{Data: []byte(token), Mode: mode, FsUser: fsUser}
		case s.ClusterTrustBundle != nil:
			errs = append(errs, errors.New("clusterTrustBundle projections are not supported by this node"))
		}
	}
	if err := aggregate(errs); err != nil {
		return nil, err
	}
	return data, nil
}

// writeVolume writes p into the volume directory with AtomicWriter, making
// the directory first (a tmpfs on it when onTmpfs) if needed. With a pod
// fsGroup, everything written gets the group and g+r. A volume made by this
// call that fails is removed again; one that existed keeps its content.
func (m *Manager) writeVolume(pod *v1.Pod, name, plugin string, onTmpfs bool, p payload) (err error) {
	dir := m.volumeDir(pod.UID, plugin, name)
	created, err := makeDir(dir)
	if err != nil {
		return err
	}
	if !created {
		// A directory without ..data was never written completely (a crash
		// during the first Setup): treat it as new.
		if _, lerr := os.Lstat(filepath.Join(dir, "..data")); errors.Is(lerr, os.ErrNotExist) {
			created = true
		}
	}
	defer func() {
		if err != nil && created {
			if rerr := removeVolume(dir); rerr != nil {
				m.log.Error("cleaning up a failed volume", "dir", dir, "err", rerr)
			}
		}
	}()
	if onTmpfs {
		if err := m.mountTmpfs(dir, m.memoryVolumeSize(pod, nil)); err != nil {
			return err
		}
	}
	if err := volumeutil.MakeNestedMountpoints(name, dir, *pod); err != nil {
		return err
	}
	w, err := volumeutil.NewAtomicWriter(dir, fmt.Sprintf("pod %v/%v volume %v", pod.Namespace, pod.Name, name))
	if err != nil {
		return err
	}
	group := fsGroup(pod)
	setPerms := func(string) error {
		// As the kubelet's plugins: the whole volume, not only the new
		// timestamped directory (the first write creates files beside it).
		return volume.SetVolumeOwnership(ownershipMounter{readOnly: true}, dir, group, nil, nil)
	}
	if err := w.Write(p, setPerms); err != nil {
		return err
	}
	return nil
}

// aggregate is nil for no errors, the error itself for one, and for more an
// error worded as utilerrors.NewAggregate ("[a, b]") that unwraps to all of
// them (so errors.Is and apierrors.IsNotFound see through it).
func aggregate(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return aggregateError(errs)
}

type aggregateError []error

func (a aggregateError) Error() string {
	seen := map[string]bool{}
	var msgs []string
	for _, e := range a {
		if s := e.Error(); !seen[s] {
			seen[s] = true
			msgs = append(msgs, s)
		}
	}
	if len(msgs) == 1 {
		return msgs[0]
	}
	return "[" + strings.Join(msgs, ", ") + "]"
}

func (a aggregateError) Unwrap() []error { return a }
