package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// startServer runs bin/peapod server in a fresh data dir (stopped when the
// test ends) and returns its admin config.
func startServer(t *testing.T) *rest.Config {
	t.Helper()
	// The test runs its own scheduler.
	return testutil.StartServer(t, "--disable-scheduler").RESTConfig()
}

func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	testutil.Eventually(t, timeout, f)
}

func createNode(t *testing.T, ctx context.Context, cs kubernetes.Interface, name, cpu string, taints ...v1.Taint) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Create(ctx, &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Spec:       v1.NodeSpec{Taints: taints},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create node %s: %v", name, err)
	}
	rl := v1.ResourceList{
		v1.ResourceCPU: resource.MustParse(cpu), v1.ResourceMemory: resource.MustParse("8Gi"),
		v1.ResourcePods: resource.MustParse("110"), v1.ResourceEphemeralStorage: resource.MustParse("20Gi"),
	}
	var got *v1.Node
	// The server's node IPAM controller writes the new node's pod CIDR at the
	// same time: retry on conflict, as a kubelet would.
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if n, err = cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{}); err != nil {
			return err
		}
		n.Status.Capacity, n.Status.Allocatable = rl, rl
		n.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady",
			LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
		got, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatalf("node %s status: %v", name, err)
	}
	if len(got.Status.Conditions) != 1 || got.Status.Allocatable.Cpu().Cmp(resource.MustParse(cpu)) != 0 {
		t.Fatalf("node %s status not stored: %+v", name, got.Status)
	}
	// The TaintNodesByCondition admission plugin taints new nodes
	// node.kubernetes.io/not-ready; the server's node lifecycle controller
	// lifts it once the node is Ready.
	eventually(t, 30*time.Second, func() error {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, tn := range n.Spec.Taints {
			if tn.Key == taintNodeNotReady {
				return fmt.Errorf("node %s still tainted %s", name, tn.Key)
			}
		}
		return nil
	})
}

func TestSchedulerAgainstServer(t *testing.T) {
	cfg := startServer(t)
	cs := kubernetes.NewForConfigOrDie(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const ns = "sched"
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, func() error {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	createNode(t, ctx, cs, "node-a", "2")
	createNode(t, ctx, cs, "node-b", "4", v1.Taint{Key: "dedicated", Value: "gpu", Effect: v1.TaintEffectNoSchedule})

	schedCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	schedLog := &testutil.SyncBuffer{}
	go func() {
		runErr <- Run(schedCtx, Config{Client: cfg, RetryPeriod: time.Hour}, slog.New(slog.NewTextHandler(schedLog, nil)))
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("scheduler log:\n%s", schedLog.String())
		}
		stop()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})

	newPod := func(t *testing.T, name, cpu string, mut ...func(*v1.Pod)) {
		t.Helper()
		p := &v1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Image: "busybox",
				Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse(cpu)}}}}},
		}
		for _, m := range mut {
			m(p)
		}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
	}
	waitBound := func(t *testing.T, name, node string) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Spec.NodeName != node {
				return fmt.Errorf("pod %s on %q, want %q", name, p.Spec.NodeName, node)
			}
			return nil
		})
	}
	waitEvent := func(t *testing.T, name, reason, msg string) {
		t.Helper()
		eventually(t, 30*time.Second, func() error {
			evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			var seen []string
			for _, e := range evs.Items {
				if e.InvolvedObject.Name != name || e.Reason != reason {
					continue
				}
				if e.Message == msg && e.Source.Component == "default-scheduler" && e.InvolvedObject.Kind == "Pod" {
					return nil
				}
				seen = append(seen, e.Message)
			}
			return fmt.Errorf("no %s event %q for %s (saw %q)", reason, msg, name, seen)
		})
	}
	waitUnschedulable := func(t *testing.T, name, msg string) {
		t.Helper()
		waitEvent(t, name, "FailedScheduling", msg)
		eventually(t, 30*time.Second, func() error {
			p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if p.Spec.NodeName != "" {
				return fmt.Errorf("pod %s unexpectedly bound to %s", name, p.Spec.NodeName)
			}
			for _, c := range p.Status.Conditions {
				if c.Type == v1.PodScheduled && c.Status == v1.ConditionFalse && c.Reason == v1.PodReasonUnschedulable && c.Message == msg {
					return nil
				}
			}
			return fmt.Errorf("pod %s conditions %+v", name, p.Status.Conditions)
		})
	}

	t.Run("binds to the fitting untainted node", func(t *testing.T) {
		newPod(t, "plain", "500m")
		waitBound(t, "plain", "node-a")
		waitEvent(t, "plain", "Scheduled", "Successfully assigned sched/plain to node-a")
	})

	t.Run("tainted node used only when tolerated", func(t *testing.T) {
		newPod(t, "tolerant", "3", func(p *v1.Pod) {
			p.Spec.Tolerations = []v1.Toleration{{Key: "dedicated", Operator: v1.TolerationOpEqual, Value: "gpu", Effect: v1.TaintEffectNoSchedule}}
		})
		waitBound(t, "tolerant", "node-b")
		waitEvent(t, "tolerant", "Scheduled", "Successfully assigned sched/tolerant to node-b")
	})

	t.Run("more cpu than any node stays pending", func(t *testing.T) {
		newPod(t, "huge", "16")
		waitUnschedulable(t, "huge", "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. "+
			"preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.")
	})

	t.Run("nodeSelector waits for a matching label", func(t *testing.T) {
		newPod(t, "ssd", "100m", func(p *v1.Pod) { p.Spec.NodeSelector = map[string]string{"disktype": "ssd"} })
		waitUnschedulable(t, "ssd", "0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}. "+
			"preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
		if _, err := cs.CoreV1().Nodes().Patch(ctx, "node-a", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"disktype":"ssd"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitBound(t, "ssd", "node-a")
		waitEvent(t, "ssd", "Scheduled", "Successfully assigned sched/ssd to node-a")
	})

	t.Run("resources of bound pods are counted", func(t *testing.T) {
		// node-a has 2 cpu, 600m used by plain+ssd: 1500m no longer fits there.
		newPod(t, "second", "1500m")
		waitUnschedulable(t, "second", "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}. "+
			"preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling.")
		// Deleting a bound pod frees room and retries it.
		if err := cs.CoreV1().Pods(ns).Delete(ctx, "plain", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
			t.Fatal(err)
		}
		waitBound(t, "second", "node-a")
	})
}
