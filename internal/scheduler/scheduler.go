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
	// Informers is the shared informer factory the scheduler's pod and node
	// informers come from (the composition root shares one across components
	// and starts it); nil makes a private one. Its objects may have their
	// managedFields stripped.
	Informers informers.SharedInformerFactory
	// RetryPeriod is how often the parked unschedulable pods are checked;
	// 0 means 30 s.
	RetryPeriod time.Duration
	// MaxUnschedulable is how long a pod stays parked as unschedulable when no
	// cluster event (a node change, a bound pod going away) retries it sooner,
	// upstream's podMaxInUnschedulablePodsDuration; 0 means 5 minutes.
	MaxUnschedulable time.Duration
}

// Scheduler binds pods; New registers it with its informers, Run runs it.
type Scheduler struct {
	f           informers.SharedInformerFactory
	ownFactory  bool
	bc          record.EventBroadcaster
	retryPeriod time.Duration
	maxParked   time.Duration

	cs       kubernetes.Interface
	log      *slog.Logger
	clock    clock.Clock
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder

	mu            sync.Mutex
	unschedulable map[string]time.Time // pod keys parked until something changes, and since when
	assumed       map[string]string    // pod key -> node, bound but not yet seen bound by the informer
	assumedPods   map[string]*v1.Pod
	// bound holds, per node, the pods the informer has seen bound to it and
	// not finished, so that a scheduling cycle costs what is on the nodes,
	// not every pod in the cluster (pending pods included).
	bound  map[string]map[string]*v1.Pod
	nodeOf map[string]string // pod key -> the node it is in bound under
}

// Run schedules pods until ctx is done.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	s, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New builds a scheduler and registers its event handlers with the informers
// of cfg.Informers; the factory must not be started before every component
// sharing it has registered (an informer takes no new indexers once started).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Scheduler, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = 30 * time.Second
	}
	if cfg.MaxUnschedulable == 0 {
		cfg.MaxUnschedulable = 5 * time.Minute
	}
	rc := rest.CopyConfig(cfg.Client)
	rc.QPS, rc.Burst = 100, 200
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("scheduler client: %w", err)
	}
	f, own := cfg.Informers, cfg.Informers == nil
	if own {
		f = informers.NewSharedInformerFactory(cs, 0)
	}
	podInf, nodeInf := f.Core().V1().Pods(), f.Core().V1().Nodes()

	bc := record.NewBroadcaster(record.WithContext(ctx))
	s := &Scheduler{
		f: f, ownFactory: own, bc: bc, retryPeriod: cfg.RetryPeriod, maxParked: cfg.MaxUnschedulable,
		cs: cs, log: log, clock: cfg.Clock,
		pods: podInf.Lister(), nodes: nodeInf.Lister(),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "scheduler"}),
		recorder:      bc.NewRecorder(scheme.Scheme, v1.EventSource{Component: SchedulerName}),
		unschedulable: map[string]time.Time{},
		assumed:       map[string]string{},
		assumedPods:   map[string]*v1.Pod{},
		bound:         map[string]map[string]*v1.Pod{},
		nodeOf:        map[string]string{},
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.podChanged(nil, obj.(*v1.Pod)) },
		UpdateFunc: func(o, n any) { s.podChanged(o.(*v1.Pod), n.(*v1.Pod)) },
		DeleteFunc: s.podDeleted,
	}); err != nil {
		return nil, err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { s.retryUnschedulable() },
		UpdateFunc: func(o, n any) {
			if nodeChanged(o.(*v1.Node), n.(*v1.Node)) {
				s.retryUnschedulable()
			}
		},
	}); err != nil {
		return nil, err
	}
	return s, nil
}

// Run starts the informers (if nobody has), waits for their caches and
// schedules pods until ctx is done.
func (s *Scheduler) Run(ctx context.Context) error {
	f := s.f
	defer s.queue.ShutDown()
	s.bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: s.cs.CoreV1().Events("")})
	defer s.bc.Shutdown()
	f.Start(ctx.Done())
	if s.ownFactory {
		defer f.Shutdown()
	}
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("scheduler: %v cache did not sync: %w", typ, ctx.Err())
		}
	}
	s.log.Info("scheduler started", "schedulerName", SchedulerName)

	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.clock.After(s.retryPeriod):
				s.retryParkedSince(s.clock.Now().Add(-s.maxParked))
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

// track files p under the node it holds resources on, or nowhere.
func (s *Scheduler) track(k string, p *v1.Pod) {
	node := ""
	if p != nil && p.Spec.NodeName != "" && !terminated(p) {
		node = p.Spec.NodeName
	}
	if prev, ok := s.nodeOf[k]; ok && prev != node {
		delete(s.bound[prev], k)
		if len(s.bound[prev]) == 0 {
			delete(s.bound, prev)
		}
		delete(s.nodeOf, k)
	}
	if node == "" {
		return
	}
	if s.bound[node] == nil {
		s.bound[node] = map[string]*v1.Pod{}
	}
	s.bound[node][k] = p
	s.nodeOf[k] = node
}

func (s *Scheduler) podChanged(old, p *v1.Pod) {
	k := key(p)
	s.mu.Lock()
	s.track(k, p)
	s.mu.Unlock()
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

func (s *Scheduler) podDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	k := key(p)
	s.mu.Lock()
	_, held := s.nodeOf[k]
	s.track(k, nil)
	delete(s.assumed, k)
	delete(s.assumedPods, k)
	delete(s.unschedulable, k)
	s.mu.Unlock()
	// Only a pod that held resources on a node frees room for others.
	if held {
		s.retryUnschedulable()
	}
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

// retryUnschedulable requeues every parked pod: something changed that may
// make them fit.
func (s *Scheduler) retryUnschedulable() { s.retryParkedSince(time.Time{}) }

// retryParkedSince requeues the pods parked at or before t (every parked pod
// when t is zero).
func (s *Scheduler) retryParkedSince(t time.Time) {
	s.mu.Lock()
	var keys []string
	for k, since := range s.unschedulable {
		if t.IsZero() || !since.After(t) {
			keys = append(keys, k)
			delete(s.unschedulable, k)
		}
	}
	s.mu.Unlock()
	for _, k := range keys {
		s.queue.Add(k)
	}
}

func (s *Scheduler) processNext(ctx context.Context) bool {
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

// snapshot builds every node with the pods holding resources on it: those
// the informer has seen bound, and those this scheduler bound that the
// informer has not caught up with yet.
func (s *Scheduler) snapshot() ([]*NodeInfo, error) {
	nodes, err := s.nodes.List(labels.Everything())
	if err != nil {
		return nil, err
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })
	s.mu.Lock()
	defer s.mu.Unlock()
	byNode := make(map[string][]*v1.Pod, len(s.bound))
	for n, pods := range s.bound {
		for _, p := range pods {
			byNode[n] = append(byNode[n], p)
		}
	}
	for k, n := range s.assumed {
		p := s.assumedPods[k]
		if p == nil {
			continue
		}
		if _, seen := s.nodeOf[k]; seen {
			continue
		}
		if cur, _ := s.pods.Pods(p.Namespace).Get(p.Name); cur != nil && cur.Spec.NodeName == "" {
			byNode[n] = append(byNode[n], p)
		}
	}
	out := make([]*NodeInfo, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, &NodeInfo{Node: n, Pods: byNode[n.Name]})
	}
	return out, nil
}

func (s *Scheduler) scheduleOne(ctx context.Context, k string) error {
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
		s.unschedulable[k] = s.clock.Now()
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
func (s *Scheduler) setUnschedulable(ctx context.Context, pod *v1.Pod, msg string) error {
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
