// Package scheduler binds pending pods to nodes, a client of the API server
// like upstream's kube-scheduler: it watches pods and nodes through shared
// informers, runs upstream's default filters (NodeUnschedulable,
// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit) and scores
// (preferred node affinity, least allocated), binds through pods/binding, and
// reports failures with upstream's FailedScheduling event and PodScheduled
// condition wording. Preemption, volumes, topology spread and inter-pod
// affinity are not implemented.
package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// SchedulerName is the spec.schedulerName this scheduler serves (an empty name means it too).
const SchedulerName = v1.DefaultSchedulerName

// Config wires the scheduler to the API.
type Config struct {
	// Client reaches the API server with rights to read pods and nodes, bind
	// pods, patch pod status and create events.
	Client *rest.Config
	// Clock drives the periodic retry of unschedulable pods; nil is the real clock.
	Clock clock.Clock
	// RetryPeriod is how often unschedulable pods are retried regardless of
	// cluster events; 0 means 30 s.
	RetryPeriod time.Duration
}

type scheduler struct {
	cs       kubernetes.Interface
	log      *slog.Logger
	clock    clock.Clock
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder

	mu            sync.Mutex
	unschedulable map[string]bool   // pod keys parked until something changes
	assumed       map[string]string // pod key -> node, bound but not yet seen bound by the informer
	assumedPods   map[string]*v1.Pod
}

// Run schedules pods until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 30 * time.Second
	}
	rc := rest.CopyConfig(cfg.Client)
	rc.QPS, rc.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("scheduler client: %w", err)
	}
	f := informers.NewSharedInformerFactory(cs, 0)
	podInf, nodeInf := f.Core().V1().Pods(), f.Core().V1().Nodes()

	bc := record.NewBroadcaster(record.WithContext(ctx))
	defer bc.Shutdown()
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})

	s := &scheduler{
		cs: cs, log: log, clock: cfg.Clock,
		pods: podInf.Lister(), nodes: nodeInf.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"}),
		recorder:      bc.NewRecorder(scheme.Scheme, v1.EventSource{Component: SchedulerName}),
		unschedulable: map[string]bool{},
		assumed:       map[string]string{},
		assumedPods:   map[string]*v1.Pod{},
	}
	defer s.queue.ShutDown()

	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podChanged(nil, obj.(*v1.Pod)) },
		UpdateFunc: func(o, n any) { s.podChanged(o.(*v1.Pod), n.(*v1.Pod)) },
		DeleteFunc: s.podDeleted,
	}); err != nil {
		return err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.retryUnschedulable() },
		UpdateFunc: func(o, n any) {
			if nodeChanged(o.(*v1.Node), n.(*v1.Node)) {
				s.retryUnschedulable()
			}
		},
	}); err != nil {
		return err
	}
	f.Start(ctx.Done())
	defer f.Shutdown()
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("scheduler: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	log.Info("scheduler started", "schedulerName", SchedulerName)

	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.clock.After(cfg.RetryPeriod):
				s.retryUnschedulable()
			}
		}
	}()
	go func() { <-ctx.Done(); s.queue.ShutDown() }()
	// One worker: like upstream, pods are scheduled one at a time so each
	// decision sees the previous ones.
	for s.processNext(ctx) {
	}
	return nil
}

func key(p *v1.Pod) string { return p.Namespace + "/" + p.Name }

// responsible reports whether pod is ours and waits for a node.
func responsible(p *v1.Pod) bool {
	return (p.Spec.SchedulerName == "" || p.Spec.SchedulerName == SchedulerName) &&
		p.Spec.NodeName == "" && p.DeletionTimestamp == nil && len(p.Spec.SchedulingGates) == 0 &&
		p.Status.Phase != v1.PodSucceeded && p.Status.Phase != v1.PodFailed
}

func terminated(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

func (s *scheduler) podChanged(old, p *v1.Pod) {
	k := key(p)
	if p.Spec.NodeName != "" {
		s.mu.Lock()
		delete(s.assumed, k)
		delete(s.assumedPods, k)
		s.mu.Unlock()
		// A bound pod that finished, or changed its requests, may free room.
		if old != nil && (terminated(p) && !terminated(old) ||
			!apiequality.Semantic.DeepEqual(old.Spec.Containers, p.Spec.Containers)) {
			s.retryUnschedulable()
		}
		return
	}
	if !responsible(p) {
		return
	}
	// Our own status patches must not requeue a parked pod; spec or label changes do.
	if old != nil && apiequality.Semantic.DeepEqual(old.Spec, p.Spec) && apiequality.Semantic.DeepEqual(old.Labels, p.Labels) {
		return
	}
	s.queue.Add(k)
}

func (s *scheduler) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	k := key(p)
	s.mu.Lock()
	delete(s.assumed, k)
	delete(s.assumedPods, k)
	delete(s.unschedulable, k)
	s.mu.Unlock()
	s.retryUnschedulable()
}

func nodeReady(n *v1.Node) v1.ConditionStatus {
	for _, c := range n.Status.Conditions {
		if c.Type == v1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// nodeChanged reports a change that may make a pod fit (heartbeats don't).
func nodeChanged(o, n *v1.Node) bool {
	return !apiequality.Semantic.DeepEqual(o.Labels, n.Labels) ||
		!apiequality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) ||
		o.Spec.Unschedulable != n.Spec.Unschedulable ||
		!apiequality.Semantic.DeepEqual(o.Status.Allocatable, n.Status.Allocatable) ||
		nodeReady(o) != nodeReady(n)
}

func (s *scheduler) retryUnschedulable() {
	s.mu.Lock()
	keys := make([]string, 0, len(s.unschedulable))
	for k := range s.unschedulable {
		keys = append(keys, k)
	}
	clear(s.unschedulable)
	s.mu.Unlock()
	for _, k := range keys {
		s.queue.Add(k)
	}
}

func (s *scheduler) processNext(ctx context.Context) bool {
	k, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(k)
	if err := s.scheduleOne(ctx, k); err != nil {
		s.log.Warn("scheduling failed, will retry", "pod", k, "err", err)
		s.queue.AddRateLimited(k)
		return true
	}
	s.queue.Forget(k)
	return true
}

// snapshot builds every node with the pods holding resources on it.
func (s *scheduler) snapshot() ([]*NodeInfo, error) {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	pods, err := s.pods.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	byNode := map[string][]*v1.Pod{}
	seen := map[string]bool{}
	for _, p := range pods {
		seen[key(p)] = true
		if p.Spec.NodeName != "" && !terminated(p) {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	s.mu.Lock()
	for k, n := range s.assumed {
		if p := s.assumedPods[k]; p != nil && seen[k] {
			if cur, _ := s.pods.Pods(p.Namespace).Get(p.Name); cur != nil && cur.Spec.NodeName == "" {
				byNode[n] = append(byNode[n], p)
			}
		}
	}
	s.mu.Unlock()
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	out := make([]*NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, &NodeInfo{Node: n, Pods: byNode[n.Name]})
	}
	return out, nil
}

func (s *scheduler) scheduleOne(ctx context.Context, k string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(k)
	if err != nil {
		return nil
	}
	pod, err := s.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	} else if err != nil {
		return err
	}
	s.mu.Lock()
	_, isAssumed := s.assumed[k]
	s.mu.Unlock()
	if !responsible(pod) || isAssumed {
		return nil
	}
	nodes, err := s.snapshot()
	if err != nil {
		return err
	}
	node, fitErr := Schedule(pod, nodes)
	if fitErr != nil {
		msg := fitErr.Error()
		s.log.Info("pod unschedulable", "pod", k, "reason", msg)
		s.mu.Lock()
		s.unschedulable[k] = true
		s.mu.Unlock()
		s.recorder.Event(pod, v1.EventTypeWarning, "FailedScheduling", msg)
		return s.setUnschedulable(ctx, pod, msg)
	}
	binding := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}
	if err := s.cs.CoreV1().Pods(pod.Namespace).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
			// Deleted, or bound by someone else meanwhile: the informer will tell.
			s.log.Info("binding not applied", "pod", k, "node", node, "err", err)
			return nil
		}
		s.recorder.Eventf(pod, v1.EventTypeWarning, "FailedScheduling", "Binding rejected: %v", err)
		return fmt.Errorf("bind %s to %s: %w", k, node, err)
	}
	bound := pod.DeepCopy()
	bound.Spec.NodeName = node
	s.mu.Lock()
	s.assumed[k] = node
	s.assumedPods[k] = bound
	delete(s.unschedulable, k)
	s.mu.Unlock()
	s.log.Info("pod scheduled", "pod", k, "node", node)
	s.recorder.Eventf(pod, v1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, node)
	return nil
}

// setUnschedulable sets PodScheduled=False/Unschedulable with msg, as upstream's
// handleSchedulingFailure does, unless the pod already says so.
func (s *scheduler) setUnschedulable(ctx context.Context, pod *v1.Pod, msg string) error {
	cond := v1.PodCondition{Type: v1.PodScheduled, Status: v1.ConditionFalse, Reason: v1.PodReasonUnschedulable, Message: msg}
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled {
			if c.Status == cond.Status && c.Reason == cond.Reason && c.Message == cond.Message {
				return nil
			}
			if c.Status == cond.Status {
				cond.LastTransitionTime = c.LastTransitionTime
			}
		}
	}
	if cond.LastTransitionTime.IsZero() {
		cond.LastTransitionTime = metav1.NewTime(s.clock.Now())
	}
	patch, err := json.Marshal(map[string]any{"status": map[string]any{"conditions": []v1.PodCondition{cond}}})
	if err != nil {
		return err
	}
	_, err = s.cs.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.StrategicMergePatchType, patch, metav1.PatchOptions{}, "status")
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
