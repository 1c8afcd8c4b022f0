package kubelet

import (
	"net"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func running() v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Running: &v1.ContainerStateRunning{}}}
}

func exited(code int32) v1.ContainerStatus {
	return v1.ContainerStatus{State: v1.ContainerState{Terminated: &v1.ContainerStateTerminated{ExitCode: code}}}
}

func waiting(lastExit *int32) v1.ContainerStatus {
	s := v1.ContainerStatus{State: v1.ContainerState{Waiting: &v1.ContainerStateWaiting{Reason: "X"}}}
	if lastExit != nil {
		s.LastTerminationState.Terminated = &v1.ContainerStateTerminated{ExitCode: *lastExit}
	}
	return s
}

// The phases of seed 000: Pending until started, Running while one runs or
// will restart, Succeeded when all ended 0 and none restarts, Failed when all
// ended and one failed.
func TestPhase(t *testing.T) {
	one := int32(1)
	pod := func(policy v1.RestartPolicy, inits, apps int) *v1.Pod {
		p := &v1.Pod{Spec: v1.PodSpec{RestartPolicy: policy}}
		for range inits {
			p.Spec.InitContainers = append(p.Spec.InitContainers, v1.Container{})
		}
		for range apps {
			p.Spec.Containers = append(p.Spec.Containers, v1.Container{})
		}
		return p
	}
	for _, tc := range []struct {
		name        string
		pod         *v1.Pod
		inits, apps []v1.ContainerStatus
		want        v1.PodPhase
	}{
		{"not started", pod(v1.RestartPolicyAlways, 0, 2), nil, []v1.ContainerStatus{waiting(nil), waiting(nil)}, v1.PodPending},
		{"one running one waiting", pod(v1.RestartPolicyAlways, 0, 2), nil, []v1.ContainerStatus{running(), waiting(nil)}, v1.PodPending},
		{"all running", pod(v1.RestartPolicyAlways, 0, 2), nil, []v1.ContainerStatus{running(), running()}, v1.PodRunning},
		{"all done, Never", pod(v1.RestartPolicyNever, 0, 2), nil, []v1.ContainerStatus{exited(0), exited(0)}, v1.PodSucceeded},
		{"one failed, Never", pod(v1.RestartPolicyNever, 0, 2), nil, []v1.ContainerStatus{exited(0), exited(2)}, v1.PodFailed},
		{"one failed, OnFailure", pod(v1.RestartPolicyOnFailure, 0, 2), nil, []v1.ContainerStatus{exited(0), exited(2)}, v1.PodRunning},
		{"all done, Always", pod(v1.RestartPolicyAlways, 0, 1), nil, []v1.ContainerStatus{exited(0)}, v1.PodRunning},
		{"crash looping", pod(v1.RestartPolicyAlways, 0, 1), nil, []v1.ContainerStatus{waiting(&one)}, v1.PodRunning},
		{"init running", pod(v1.RestartPolicyAlways, 1, 1), []v1.ContainerStatus{running()}, []v1.ContainerStatus{waiting(nil)}, v1.PodPending},
		{"init failed, Never", pod(v1.RestartPolicyNever, 1, 1), []v1.ContainerStatus{exited(1)}, []v1.ContainerStatus{waiting(nil)}, v1.PodFailed},
		{"init failed, Always", pod(v1.RestartPolicyAlways, 1, 1), []v1.ContainerStatus{waiting(&one)}, []v1.ContainerStatus{waiting(nil)}, v1.PodPending},
	} {
		if got := phase(tc.pod, tc.inits, tc.apps); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestResources(t *testing.T) {
	k := &Kubelet{}
	c := &v1.Container{Resources: v1.ResourceRequirements{
		Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("250m"), v1.ResourceMemory: resource.MustParse("64Mi")},
		Limits:   v1.ResourceList{v1.ResourceCPU: resource.MustParse("500m"), v1.ResourceMemory: resource.MustParse("128Mi")},
	}}
	pod := &v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{*c}}}
	r := k.resources(pod, c)
	if r.CPUShares != 256 || r.CPUQuota != 50000 || r.CPUPeriod != 100000 || r.MemoryLimit != 128<<20 {
		t.Errorf("resources %+v", r)
	}
	if *r.OOMScoreAdj < 2 || *r.OOMScoreAdj > 999 {
		t.Errorf("burstable oom_score_adj %d", *r.OOMScoreAdj)
	}
	be := &v1.Container{}
	r = k.resources(&v1.Pod{Spec: v1.PodSpec{Containers: []v1.Container{*be}}}, be)
	if r.CPUShares != 2 || r.CPUQuota != 0 || r.MemoryLimit != 0 || *r.OOMScoreAdj != 1000 {
		t.Errorf("best effort %+v", r)
	}
}

func TestPodFiles(t *testing.T) {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop"},
		Spec: v1.PodSpec{Hostname: "web-0", Subdomain: "web", DNSPolicy: v1.DNSClusterFirst,
			HostAliases: []v1.HostAlias{{IP: "10.1.2.3", Hostnames: []string{"foo.local", "bar.local"}}}},
	}
	hosts := hostsFile(pod, []string{"10.42.0.7"}, "cluster.local")
	for _, want := range []string{"# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n", "10.42.0.7\tweb-0.web.shop.svc.cluster.local\tweb-0\n",
		"# Entries added by HostAliases.\n10.1.2.3\tfoo.local\tbar.local\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts file lacks %q:\n%s", want, hosts)
		}
	}
	k := &Kubelet{cfg: Config{ClusterDNS: net.ParseIP("10.43.0.10"), ClusterDomain: "cluster.local"}}
	rc := k.resolvConf(pod)
	if !strings.HasPrefix(rc, "search shop.svc.cluster.local svc.cluster.local cluster.local") ||
		!strings.Contains(rc, "nameserver 10.43.0.10\n") || !strings.Contains(rc, "options ndots:5\n") {
		t.Errorf("ClusterFirst resolv.conf:\n%s", rc)
	}
	pod.Spec.DNSPolicy = v1.DNSNone
	ndots := "2"
	pod.Spec.DNSConfig = &v1.PodDNSConfig{Nameservers: []string{"1.2.3.4"}, Searches: []string{"a.b"}, Options: []v1.PodDNSConfigOption{{Name: "ndots", Value: &ndots}}}
	if rc := k.resolvConf(pod); rc != "search a.b\nnameserver 1.2.3.4\noptions ndots:2\n" {
		t.Errorf("None resolv.conf: %q", rc)
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=image"}, []v1.EnvVar{{Name: "A", Value: "pod"}, {Name: "B", Value: "b"}})
	if strings.Join(got, " ") != "PATH=/bin A=pod B=b" {
		t.Errorf("merged env %v", got)
	}
}
