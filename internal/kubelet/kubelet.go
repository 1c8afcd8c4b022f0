package kubelet

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/flowcontrol"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"

	"github.com/peapod-dev/peapod/internal/prober"
	"github.com/peapod-dev/peapod/internal/runtime"
)

// Version is the kubelet version nodes report.
const Version = "v1.32.13-peapod"

// Config is a node agent's wiring and settings.
type Config struct {
	// Client reaches the API server with the node's credentials.
	Client   kubernetes.Interface
	NodeName string
	// NodeIPs are the node's InternalIP addresses (first is primary).
	NodeIPs  []net.IP
	Hostname string
	// Labels are added to the node's well-known labels.
	Labels      map[string]string
	MaxPods     int
	KubeletPort int32
	// ClusterDNS and ClusterDomain shape pods' /etc/resolv.conf (ClusterFirst).
	ClusterDNS    net.IP
	ClusterDomain string
	// PodsDir keeps per-pod files (hosts, resolv.conf, termination logs).
	PodsDir string
	// LogsDir keeps container logs: NS_NAME_UID/CONTAINER/ATTEMPT.log.
	LogsDir string
	// DataDir is where ephemeral storage is measured.
	DataDir string
	// Runtime and its version as nodes report it ("runc://1.1.5").
	Runtime        runtime.Runtime
	RuntimeVersion string
	Images         Images
	Network        Network
	Volumes        Volumes
	Cgroups        Cgroups
	// CgroupRoot is the absolute cgroup path under which the pods' QoS tree
	// is made; it must lie under Cgroups.Base() and belong to this node only.
	CgroupRoot string
	Clock      clock.WithTicker
	Logger     *slog.Logger
	// Workers is how many pods sync at once (default 16).
	Workers int
	// Relist is how often container states are compared (default 1 s, as
	// upstream's PLEG).
	Relist time.Duration
	// RestartBackOff and MaxRestartBackOff are the first and the longest
	// wait before restarting a failed container (upstream: 10 s and 300 s;
	// tests shorten them). Image pull back-off uses the same.
	RestartBackOff    time.Duration
	MaxRestartBackOff time.Duration
}

// Kubelet runs one node.
type Kubelet struct {
	cfg      Config
	log      *slog.Logger
	clock    clock.WithTicker
	client   kubernetes.Interface
	recorder record.EventRecorder

	podLister corelisters.PodLister
	svcLister corelisters.ServiceLister
	podIndex  cache.Indexer
	queue     workqueue.TypedDelayingInterface[types.UID]

	prober       *prober.Manager
	crashBackOff *flowcontrol.Backoff
	pullBackOff  *flowcontrol.Backoff

	// memory is the machine's memory in bytes, read once.
	memory int64

	netMu      sync.Mutex // serializes bringing the network up
	mu         sync.Mutex
	networkUp  bool
	lastPods   map[types.UID]*v1.Pod // last seen object, for pods deleted from the API
	lastRelist map[string]string     // container or "sandbox/"+ID -> state
}

const uidIndex = "uid"

// New checks cfg and builds a Kubelet; Run starts it.
func New(cfg Config) (*Kubelet, error) {
	if cfg.Client == nil || cfg.NodeName == "" || cfg.Runtime == nil || cfg.Images == nil ||
		cfg.Network == nil || cfg.Volumes == nil || cfg.Cgroups == nil || cfg.CgroupRoot == "" || cfg.PodsDir == "" || cfg.LogsDir == "" {
		return nil, errors.New("kubelet: incomplete configuration")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	if cfg.Workers == 0 {
		cfg.Workers = 16
	}
	if cfg.Relist == 0 {
		cfg.Relist = time.Second
	}
	if cfg.RestartBackOff == 0 {
		cfg.RestartBackOff = 10 * time.Second
	}
	if cfg.MaxRestartBackOff == 0 {
		cfg.MaxRestartBackOff = 300 * time.Second
	}
	if cfg.MaxPods == 0 {
		cfg.MaxPods = 110
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	k := &Kubelet{
		cfg:          cfg,
		log:          cfg.Logger,
		clock:        cfg.Clock,
		client:       cfg.Client,
		crashBackOff: flowcontrol.NewBackOff(cfg.RestartBackOff, cfg.MaxRestartBackOff),
		pullBackOff:  flowcontrol.NewBackOff(cfg.RestartBackOff, cfg.MaxRestartBackOff),
		lastPods:     map[types.UID]*v1.Pod{},
		lastRelist:   map[string]string{},
		memory:       memTotal(),
	}
	k.prober = k.newProber()
	return k, nil
}

// Run registers the node and runs until ctx is cancelled. Containers keep
// running when it returns: stopping the agent never stops pods.
func (k *Kubelet) Run(ctx context.Context) error {
	bc := record.NewBroadcaster(record.WithContext(ctx))
	bc.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: k.client.CoreV1().Events("")})
	defer bc.Shutdown()
	k.recorder = bc.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: k.cfg.NodeName})

	if err := k.registerNode(ctx); err != nil {
		return err
	}
	go k.runLease(ctx)

	pods := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
		}))
	podInf := pods.Core().V1().Pods()
	if err := podInf.Informer().AddIndexers(cache.Indexers{uidIndex: func(obj any) ([]string, error) {
		return []string{string(obj.(*v1.Pod).UID)}, nil
	}}); err != nil {
		return err
	}
	k.podLister = podInf.Lister()
	k.podIndex = podInf.Informer().GetIndexer()
	others := informers.NewSharedInformerFactory(k.client, 0)
	k.svcLister = others.Core().V1().Services().Lister()
	nodes := informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", k.cfg.NodeName).String()
		}))
	nodeInf := nodes.Core().V1().Nodes()

	k.queue = workqueue.NewTypedDelayingQueueWithConfig(workqueue.TypedDelayingQueueConfig[types.UID]{Name: "pods"})
	defer k.queue.ShutDown()
	enqueue := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if p, ok := obj.(*v1.Pod); ok {
			k.mu.Lock()
			k.lastPods[p.UID] = p
			k.mu.Unlock()
			k.queue.Add(p.UID)
		}
	}
	if _, err := podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, n any) { enqueue(n) },
		DeleteFunc: enqueue,
	}); err != nil {
		return err
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.nodeChanged(ctx, obj.(*v1.Node)) },
		UpdateFunc: func(_, n any) { k.nodeChanged(ctx, n.(*v1.Node)) },
	}); err != nil {
		return err
	}
	pods.Start(ctx.Done())
	others.Start(ctx.Done())
	nodes.Start(ctx.Done())
	defer pods.Shutdown()
	defer others.Shutdown()
	defer nodes.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), podInf.Informer().HasSynced, others.Core().V1().Services().Informer().HasSynced, nodeInf.Informer().HasSynced) {
		return ctx.Err()
	}
	// The network comes up before any pod syncs when the node already has
	// its pod CIDR (an agent restart), so that teardowns find it.
	if objs := nodeInf.Informer().GetStore().List(); len(objs) == 1 {
		k.nodeChanged(ctx, objs[0].(*v1.Node))
	}
	// Pods that run here but are no longer in the API (deleted while the
	// agent was down) are cleaned up by their first sync.
	if sbs, err := k.cfg.Runtime.ListPodSandboxes(ctx); err == nil {
		for _, sb := range sbs {
			if uid := sb.Labels[labelPodUID]; uid != "" {
				k.queue.Add(types.UID(uid))
			}
		}
	}
	go k.runNodeStatus(ctx)
	go k.runRelist(ctx)
	go k.prober.Run(ctx)
	var wg sync.WaitGroup
	for range k.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k.processNext(ctx) {
			}
		}()
	}
	k.log.Info("node agent running", "node", k.cfg.NodeName)
	<-ctx.Done()
	k.queue.ShutDown()
	wg.Wait()
	return nil
}

func (k *Kubelet) processNext(ctx context.Context) bool {
	uid, quit := k.queue.Get()
	if quit {
		return false
	}
	defer k.queue.Done(uid)
	requeue, err := k.syncPod(ctx, uid)
	if err != nil && ctx.Err() == nil {
		k.log.Warn("pod sync failed", "uid", uid, "err", err)
		if requeue == 0 {
			requeue = time.Second
		}
	}
	if requeue > 0 && ctx.Err() == nil {
		k.queue.AddAfter(uid, requeue)
	}
	return true
}

// podByUID returns the pod's current object from the informer, or nil when
// the API no longer has it.
func (k *Kubelet) podByUID(uid types.UID) *v1.Pod {
	objs, err := k.podIndex.ByIndex(uidIndex, string(uid))
	if err != nil || len(objs) == 0 {
		return nil
	}
	return objs[0].(*v1.Pod)
}

func (k *Kubelet) nodeChanged(ctx context.Context, n *v1.Node) {
	if n.Spec.PodCIDR == "" {
		return
	}
	k.netMu.Lock()
	defer k.netMu.Unlock()
	k.mu.Lock()
	up := k.networkUp
	k.mu.Unlock()
	if up {
		return
	}
	if err := k.cfg.Network.EnsureHost(ctx, n.Spec.PodCIDR); err != nil {
		k.log.Error("preparing the pod network", "err", err)
		return
	}
	k.mu.Lock()
	k.networkUp = true
	k.mu.Unlock()
	k.log.Info("pod network ready", "podCIDR", n.Spec.PodCIDR)
	go k.updateNodeStatus(ctx)
	// Pods that waited for the network.
	for _, o := range k.podIndex.List() {
		k.queue.Add(o.(*v1.Pod).UID)
	}
}

func (k *Kubelet) networkReady() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.networkUp
}

// runRelist compares container states every Relist period and queues the
// pods whose containers changed (exits above all), like upstream's PLEG.
func (k *Kubelet) runRelist(ctx context.Context) {
	t := k.clock.NewTicker(k.cfg.Relist)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		cs, err := k.cfg.Runtime.ListContainers(ctx, runtime.ContainerFilter{})
		if err != nil {
			continue
		}
		seen := make(map[string]string, len(cs))
		k.mu.Lock()
		previous := k.lastRelist
		for _, c := range cs {
			seen[c.ID] = string(c.State)
			if old, ok := previous[c.ID]; !ok || old != string(c.State) {
				if uid := c.Labels[labelPodUID]; uid != "" {
					k.queue.Add(types.UID(uid))
				}
			}
		}
		k.lastRelist = seen
		k.mu.Unlock()
		// A sandbox whose infra process died means the pod restarts.
		if sbs, err := k.cfg.Runtime.ListPodSandboxes(ctx); err == nil {
			k.mu.Lock()
			for _, sb := range sbs {
				key := "sandbox/" + sb.ID
				state := string(sb.State)
				if old, ok := previous[key]; ok && old != state {
					if uid := sb.Labels[labelPodUID]; uid != "" {
						k.queue.Add(types.UID(uid))
					}
				}
				seen[key] = state
			}
			k.mu.Unlock()
		}
	}
}
