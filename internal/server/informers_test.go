package server

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestTrimForCache(t *testing.T) {
	always := v1.ContainerRestartPolicyAlways
	resources := v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("100m")}}
	full := func() *v1.Pod {
		return &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{
				Name: "p", Namespace: "ns", Labels: map[string]string{"app": "a"},
				Annotations:   map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{}"},
				ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
			},
			Spec: v1.PodSpec{
				NodeName:        "n1",
				NodeSelector:    map[string]string{"disk": "ssd"},
				Tolerations:     []v1.Toleration{{Key: "k", Operator: v1.TolerationOpExists}},
				SchedulerName:   "default-scheduler",
				Volumes:         []v1.Volume{{Name: "v", VolumeSource: v1.VolumeSource{EmptyDir: &v1.EmptyDirVolumeSource{}}}},
				SecurityContext: &v1.PodSecurityContext{},
				HostAliases:     []v1.HostAlias{{IP: "127.0.0.1", Hostnames: []string{"h"}}},
				InitContainers: []v1.Container{{
					Name: "sidecar", Image: "busybox", RestartPolicy: &always, Resources: resources,
					Command: []string{"sleep"}, Env: []v1.EnvVar{{Name: "A", Value: "1"}},
				}},
				Containers: []v1.Container{{
					Name: "c", Image: "busybox", ImagePullPolicy: v1.PullIfNotPresent, Resources: resources,
					Ports:   []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}},
					Command: []string{"httpd"}, Args: []string{"-f"},
					VolumeMounts:   []v1.VolumeMount{{Name: "v", MountPath: "/v"}},
					LivenessProbe:  &v1.Probe{},
					ReadinessProbe: &v1.Probe{},
				}},
			},
			Status: v1.PodStatus{
				Phase:             v1.PodRunning,
				Conditions:        []v1.PodCondition{{Type: v1.PodReady, Status: v1.ConditionTrue}},
				ContainerStatuses: []v1.ContainerStatus{{Name: "c", Ready: true}},
			},
		}
	}

	pod := full()
	out, err := trimForCache(pod)
	if err != nil {
		t.Fatal(err)
	}
	got := out.(*v1.Pod)

	want := full()
	want.ManagedFields = nil
	want.Spec.Volumes, want.Spec.SecurityContext, want.Spec.HostAliases = nil, nil, nil
	want.Spec.InitContainers[0] = v1.Container{Name: "sidecar", Image: "busybox", RestartPolicy: &always, Resources: resources}
	want.Spec.Containers[0] = v1.Container{
		Name: "c", Image: "busybox", ImagePullPolicy: v1.PullIfNotPresent, Resources: resources,
		Ports: []v1.ContainerPort{{ContainerPort: 80, HostPort: 8080}},
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Errorf("trimmed pod:\n got %+v\nwant %+v", got, want)
	}
	// Metadata and status come back whole: a status update sent from the
	// cache carries them.
	if !equality.Semantic.DeepEqual(got.Status, full().Status) || got.Annotations["kubectl.kubernetes.io/last-applied-configuration"] != "{}" {
		t.Errorf("status or metadata trimmed: %+v %+v", got.Status, got.ObjectMeta)
	}

	cm := &v1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "c", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}},
		Data:       map[string]string{"k": "v"},
	}
	out, err = trimForCache(cm)
	if err != nil {
		t.Fatal(err)
	}
	if c := out.(*v1.ConfigMap); c.ManagedFields != nil || c.Data["k"] != "v" {
		t.Errorf("trimmed configmap = %+v, want only managedFields dropped", c)
	}
}
