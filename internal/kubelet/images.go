package kubelet

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/peapod-dev/peapod/internal/image"
)

// ensureImage makes c's image present according to its pull policy and
// returns it. When it is not (yet), it records why in st and returns when to
// try again.
func (k *Kubelet) ensureImage(ctx context.Context, pod *v1.Pod, c *v1.Container, fp string, st *podState) (image.Image, time.Duration, bool) {
	ref := c.Image
	if _, err := image.ParseReference(ref); err != nil {
		msg := fmt.Sprintf("Failed to apply default image tag %q: couldn't parse image name %q: invalid reference format", ref, ref)
		k.event(pod, fp, v1.EventTypeWarning, "InspectFailed", "%s", msg)
		st.waiting[c.Name] = waitingState{"InvalidImageName", msg}
		return image.Image{}, 0, false
	}
	img, err := k.cfg.Images.Get(ctx, ref)
	present := err == nil
	if err != nil && !errors.Is(err, image.ErrNotFound) {
		msg := fmt.Sprintf("Failed to inspect image %q: %v", ref, err)
		k.event(pod, fp, v1.EventTypeWarning, "InspectFailed", "%s", msg)
		st.waiting[c.Name] = waitingState{"ImageInspectError", msg}
		return image.Image{}, 5 * time.Second, false
	}
	switch c.ImagePullPolicy {
	case v1.PullNever:
		if !present {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", ref)
			k.event(pod, fp, v1.EventTypeWarning, "ErrImageNeverPull", "%s", msg)
			st.waiting[c.Name] = waitingState{"ErrImageNeverPull", msg}
			return image.Image{}, 0, false
		}
		return img, 0, true
	case v1.PullAlways:
	default: // IfNotPresent
		if present {
			k.event(pod, fp, v1.EventTypeNormal, "Pulled", "Container image %q already present on machine", ref)
			return img, 0, true
		}
	}
	key := string(pod.UID) + "_" + ref
	now := k.clock.Now()
	if k.pullBackOff.IsInBackOffSinceUpdate(key, now) {
		k.event(pod, fp, v1.EventTypeNormal, "BackOff", "Back-off pulling image %q", ref)
		k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: ImagePullBackOff")
		st.waiting[c.Name] = waitingState{"ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q", ref)}
		return image.Image{}, k.pullBackOff.Get(key), false
	}
	k.event(pod, fp, v1.EventTypeNormal, "Pulling", "Pulling image %q", ref)
	keyring, err := k.pullSecrets(ctx, pod)
	if err == nil {
		img, err = k.cfg.Images.Pull(ctx, ref, keyring)
		if err == nil {
			d := k.clock.Since(now).Round(time.Millisecond)
			k.event(pod, fp, v1.EventTypeNormal, "Pulled",
				"Successfully pulled image %q in %v (%v including waiting). Image size: %d bytes.", ref, d, d, img.Size)
			k.pullBackOff.Reset(key)
			return img, 0, true
		}
	}
	k.pullBackOff.Next(key, now)
	msg := fmt.Sprintf("Failed to pull image %q: %v", ref, err)
	k.event(pod, fp, v1.EventTypeWarning, "Failed", "%s", msg)
	k.event(pod, fp, v1.EventTypeWarning, "Failed", "Error: ErrImagePull")
	st.waiting[c.Name] = waitingState{"ErrImagePull", msg}
	return image.Image{}, k.pullBackOff.Get(key), false
}

// pullSecrets builds the credentials of the pod's imagePullSecrets; missing
// secrets are skipped, as upstream does.
func (k *Kubelet) pullSecrets(ctx context.Context, pod *v1.Pod) (*image.Keyring, error) {
	if len(pod.Spec.ImagePullSecrets) == 0 {
		return nil, nil
	}
	kr := &image.Keyring{}
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := k.client.CoreV1().Secrets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			k.log.Warn("image pull secret", "pod", pod.Name, "secret", ref.Name, "err", err)
			continue
		}
		data, ok := s.Data[v1.DockerConfigJsonKey]
		if !ok {
			continue
		}
		sk, err := image.ParseDockerConfigJSON(data)
		if err != nil {
			return nil, err
		}
		kr.Add(sk)
	}
	return kr, nil
}
