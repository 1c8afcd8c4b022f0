package e2e

// LISTs of pods in protobuf and JSON are served from the API server's cache
// of encoded items (internal/apiserver/listcache). Whatever the cache holds,
// a client must read the same pods it reads through upstream's own encoders:
// GETs of each pod, in the same encoding, which the cache does not touch.

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

func TestPodListEncoding(t *testing.T) {
	s := StartServer(t)
	pbCfg := s.RESTConfig()
	pbCfg.ContentType = "application/vnd.kubernetes.protobuf"
	pbCfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf"
	pb := kubernetes.NewForConfigOrDie(pbCfg)
	jsCfg := s.RESTConfig()
	jsCfg.ContentType = "application/json"
	jsCfg.AcceptContentTypes = "application/json"
	js := kubernetes.NewForConfigOrDie(jsCfg)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ns := "list-encoding"
	if _, err := js.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	const n = 30
	for i := 0; i < n; i++ {
		p := richPod(i)
		// The ServiceAccount admission plugin refuses pods until the
		// namespace's default ServiceAccount exists.
		Eventually(t, 30*time.Second, func() error {
			_, err := js.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
			return err
		})
	}

	// The scheduler marks each pod unschedulable (this server has no
	// node) once; after that nothing writes to them but this test.
	settled := func() {
		t.Helper()
		Eventually(t, 30*time.Second, func() error {
			l, err := js.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			for _, p := range l.Items {
				if len(p.Status.Conditions) == 0 {
					return fmt.Errorf("pod %s has no PodScheduled condition yet", p.Name)
				}
			}
			return nil
		})
	}
	settled()

	same := func(what string, opts metav1.ListOptions, want int) *corev1.PodList {
		t.Helper()
		got, err := pb.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			t.Fatalf("%s: protobuf LIST: %v", what, err)
		}
		inJSON, err := js.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			t.Fatalf("%s: JSON LIST: %v", what, err)
		}
		if len(got.Items) != want || len(inJSON.Items) != want {
			t.Fatalf("%s: protobuf LIST has %d pods, JSON LIST %d, want %d", what, len(got.Items), len(inJSON.Items), want)
		}
		for i := range got.Items {
			if !apiequality.Semantic.DeepEqual(got.Items[i], inJSON.Items[i]) {
				t.Fatalf("%s: pod %s differs between the protobuf and the JSON LIST:\nprotobuf: %+v\nJSON:     %+v", what, got.Items[i].Name, got.Items[i], inJSON.Items[i])
			}
			for _, c := range []struct {
				encoding string
				client   kubernetes.Interface
				listed   corev1.Pod
			}{{"protobuf", pb, got.Items[i]}, {"JSON", js, inJSON.Items[i]}} {
				one, err := c.client.CoreV1().Pods(ns).Get(ctx, c.listed.Name, metav1.GetOptions{})
				if err != nil {
					t.Fatalf("%s: GET %s: %v", what, c.listed.Name, err)
				}
				one.TypeMeta = metav1.TypeMeta{}
				if !reflect.DeepEqual(*one, c.listed) {
					t.Fatalf("%s: pod %s in the %s LIST differs from its %s GET:\nLIST: %+v\nGET:  %+v", what, one.Name, c.encoding, c.encoding, c.listed, *one)
				}
			}
		}
		return got
	}

	// The first LIST encodes every pod and fills the cache; the second
	// takes every pod from it.
	same("first LIST", metav1.ListOptions{}, n)
	first := same("second LIST", metav1.ListOptions{}, n)

	// A changed pod (new labels, then new status) must be listed as it now
	// is, not as the cache last encoded it.
	target := first.Items[3].Name
	if _, err := js.CoreV1().Pods(ns).Patch(ctx, target, types.MergePatchType, []byte(`{"metadata":{"labels":{"changed":"yes"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	after := same("LIST after a label change", metav1.ListOptions{}, n)
	if after.Items[3].Labels["changed"] != "yes" || after.Items[3].ResourceVersion == first.Items[3].ResourceVersion {
		t.Fatalf("LIST after a label change shows pod %s with labels %v at resourceVersion %s (before: %s)", target, after.Items[3].Labels, after.Items[3].ResourceVersion, first.Items[3].ResourceVersion)
	}
	st := after.Items[3].DeepCopy()
	st.Status.Message = "status written by the test"
	if _, err := js.CoreV1().Pods(ns).UpdateStatus(ctx, st, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	after = same("LIST after a status change", metav1.ListOptions{}, n)
	if after.Items[3].Status.Message != "status written by the test" {
		t.Fatalf("LIST after a status change shows pod %s with status message %q", target, after.Items[3].Status.Message)
	}

	// A pod deleted and created again under the same name is a new object.
	victim := after.Items[5].Name
	if err := js.CoreV1().Pods(ns).Delete(ctx, victim, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	same("LIST after a delete", metav1.ListOptions{}, n-1)
	again := richPod(5)
	again.Labels["again"] = "yes"
	if _, err := js.CoreV1().Pods(ns).Create(ctx, again, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	settled()
	recreated := same("LIST after the pod was created again", metav1.ListOptions{}, n)
	if recreated.Items[5].UID == after.Items[5].UID || recreated.Items[5].Labels["again"] != "yes" {
		t.Fatalf("the recreated pod %s is listed with UID %s (old %s) and labels %v", victim, recreated.Items[5].UID, after.Items[5].UID, recreated.Items[5].Labels)
	}

	// Selectors, resourceVersion=0 and paging go through the same encoder.
	same("label selector", metav1.ListOptions{LabelSelector: "parity=even"}, n/2)
	same("field selector", metav1.ListOptions{FieldSelector: "metadata.name=" + target}, 1)
	rv0, err := pb.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil || len(rv0.Items) != n {
		t.Fatalf("protobuf LIST at resourceVersion 0: %d pods, %v", len(rv0.Items), err)
	}
	var paged []corev1.Pod
	opts := metav1.ListOptions{Limit: 7}
	for {
		page, err := pb.CoreV1().Pods(ns).List(ctx, opts)
		if err != nil {
			t.Fatalf("protobuf LIST page: %v", err)
		}
		paged = append(paged, page.Items...)
		if page.Continue == "" {
			break
		}
		opts.Continue = page.Continue
	}
	if !apiequality.Semantic.DeepEqual(paged, recreated.Items) {
		t.Fatalf("paging through the pods 7 at a time gave %d pods that differ from the full LIST's %d", len(paged), len(recreated.Items))
	}
}

// richPod is a pod that uses much of the pod spec, so that its encoding
// covers more than names and labels.
func richPod(i int) *corev1.Pod {
	parity := "odd"
	if i%2 == 0 {
		parity = "even"
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("rich-%02d", i),
			Labels:      map[string]string{"app": "rich", "parity": parity},
			Annotations: map[string]string{"note": fmt.Sprintf("pod number %d", i)},
		},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox:1.36", Command: []string{"true"}}},
			Containers: []corev1.Container{{
				Name:    "main",
				Image:   "busybox:1.36",
				Command: []string{"sh", "-c", "sleep 3600"},
				Env: []corev1.EnvVar{
					{Name: "A", Value: fmt.Sprint(i)},
					{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
				},
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}},
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
					Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("http")}}, PeriodSeconds: 5},
				VolumeMounts:   []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}},
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false),
					Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
			Volumes:      []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}},
			Tolerations:  []corev1.Toleration{{Key: "example.com/slow", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
			NodeSelector: map[string]string{"kubernetes.io/os": "linux"},
		},
	}
}
