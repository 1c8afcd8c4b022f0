package kubelet

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	"k8s.io/kubernetes/pkg/printers"
	printersinternal "k8s.io/kubernetes/pkg/printers/internalversion"
)

// The STATUS kubectl prints (upstream's server-side printer) for the states
// the kubelet reports, one row per combination.
func TestPrintedStatus(t *testing.T) {
	one := int32(1)
	waitingC := func(reason string) v1.ContainerStatus {
		return v1.ContainerStatus{Name: "c", State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: reason}}}
	}
	term := func(reason string, code int32) v1.ContainerStatus {
		return v1.ContainerStatus{Name: "c", State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{Reason: reason, ExitCode: code}}}
	}
	run := v1.ContainerStatus{Name: "c", Ready: true, State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}
	for _, tc := range []struct {
		name  string
		phase v1.PodPhase
		inits []v1.ContainerStatus
		apps  []v1.ContainerStatus
		want  string
	}{
		{"creating", v1.PodPending, nil, []v1.ContainerStatus{waitingC("ContainerCreating")}, "ContainerCreating"},
		{"running", v1.PodRunning, nil, []v1.ContainerStatus{run}, "Running"},
		{"crash loop", v1.PodRunning, nil, []v1.ContainerStatus{func() v1.ContainerStatus {
			c := waitingC("CrashLoopBackOff")
			c.RestartCount = one
			return c
		}()}, "CrashLoopBackOff"},
		{"completed", v1.PodSucceeded, nil, []v1.ContainerStatus{term("Completed", 0)}, "Completed"},
		{"error", v1.PodFailed, nil, []v1.ContainerStatus{term("Error", 2)}, "Error"},
		{"oom", v1.PodFailed, nil, []v1.ContainerStatus{term("OOMKilled", 137)}, "OOMKilled"},
		{"pull backoff", v1.PodPending, nil, []v1.ContainerStatus{waitingC("ImagePullBackOff")}, "ImagePullBackOff"},
		{"never pull", v1.PodPending, nil, []v1.ContainerStatus{waitingC("ErrImageNeverPull")}, "ErrImageNeverPull"},
		{"config error", v1.PodPending, nil, []v1.ContainerStatus{waitingC("CreateContainerConfigError")}, "CreateContainerConfigError"},
		{"init running", v1.PodPending, []v1.ContainerStatus{term("Completed", 0), {Name: "i2", State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}, waitingC("PodInitializing")},
			[]v1.ContainerStatus{waitingC("PodInitializing")}, "Init:1/3"},
		{"init error", v1.PodFailed, []v1.ContainerStatus{term("Error", 2)}, []v1.ContainerStatus{waitingC("PodInitializing")}, "Init:Error"},
		{"init crash loop", v1.PodPending, []v1.ContainerStatus{waitingC("CrashLoopBackOff")}, []v1.ContainerStatus{waitingC("PodInitializing")}, "Init:CrashLoopBackOff"},
		{"initialized", v1.PodPending, []v1.ContainerStatus{term("Completed", 0)}, []v1.ContainerStatus{waitingC("PodInitializing")}, "PodInitializing"},
	} {
		pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}, Status: v1.PodStatus{Phase: tc.phase,
			InitContainerStatuses: tc.inits, ContainerStatuses: tc.apps}}
		for range tc.inits {
			pod.Spec.InitContainers = append(pod.Spec.InitContainers, v1.Container{Name: "i"})
		}
		pod.Spec.Containers = []v1.Container{{Name: "c"}}
		var internal api.Pod
		if err := legacyscheme.Scheme.Convert(pod, &internal, nil); err != nil {
			t.Fatal(err)
		}
		h := printers.NewTableGenerator().With(printersinternal.AddHandlers)
		table, err := h.GenerateTable(&internal, printers.GenerateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := table.Rows[0].Cells[2]; got != tc.want {
			t.Errorf("%s: STATUS %v, want %s", tc.name, got, tc.want)
		}
	}
}
