// Package controllers runs the control-plane controllers that keep the API's
// objects consistent, each a client of the API server like upstream's
// kube-controller-manager: namespace deletion (deleting a namespace deletes its
// contents, then the namespace), the default ServiceAccount in every namespace,
// the kube-root-ca.crt ConfigMap that pods' projected token volumes read, a pod
// CIDR for every node, and node lifecycle (NotReady/unreachable taints and
// eviction).
//
// The controllers themselves are upstream's (k8s.io/kubernetes/pkg/controller);
// this package chooses which run and wires them to one shared informer factory.
package controllers

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/kubernetes/pkg/controller/certificates/rootcacertpublisher"
	namespacecontroller "k8s.io/kubernetes/pkg/controller/namespace"
	"k8s.io/kubernetes/pkg/controller/nodeipam/ipam"
	"k8s.io/kubernetes/pkg/controller/nodelifecycle"
	"k8s.io/kubernetes/pkg/controller/serviceaccount"
)

// Config wires the controllers to the API.
type Config struct {
	// Client reaches the API server with full rights.
	Client *rest.Config
	// RootCA is the cluster CA certificate (PEM) published to every namespace.
	RootCA []byte
	// Informers is the shared informer factory the controllers' informers
	// come from (the composition root shares one across components); nil
	// makes a private one with Resync.
	Informers informers.SharedInformerFactory
	// Resync is the private informers' resync period.
	Resync time.Duration
	// ClusterCIDR is split into one /24 pod CIDR per node; ServiceCIDR is
	// kept out of it.
	ClusterCIDR *net.IPNet
	ServiceCIDR *net.IPNet
}

// Controllers are the control loops, registered with their informers.
type Controllers struct {
	f          informers.SharedInformerFactory
	ownFactory bool
	run        map[string]func(context.Context)
	log        *slog.Logger
}

// Run starts every controller and blocks until ctx is done and they have stopped.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	c, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	c.Run(ctx)
	return nil
}

// New builds the controllers and registers them with the informers of
// cfg.Informers; the factory must not be started before every component
// sharing it has registered (an informer takes no new indexers once started).
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Controllers, error) {
	rc := rest.CopyConfig(cfg.Client)
	// The namespace controller deletes many objects at once; like upstream it gets
	// a generous client-side rate limit.
	rc.QPS, rc.Burst = 1000, 2000
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controllers client: %w", err)
	}
	md, err := metadata.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("controllers metadata client: %w", err)
	}
	if cfg.Resync == 0 {
		cfg.Resync = 12 * time.Hour
	}
	f, own := cfg.Informers, cfg.Informers == nil
	if own {
		f = informers.NewSharedInformerFactory(cs, cfg.Resync)
	}

	nsc := namespacecontroller.NewNamespaceController(ctx, cs, md,
		cs.Discovery().ServerPreferredNamespacedResources,
		f.Core().V1().Namespaces(), 5*time.Minute, v1.FinalizerKubernetes)
	sac, err := serviceaccount.NewServiceAccountsController(
		f.Core().V1().ServiceAccounts(), f.Core().V1().Namespaces(), cs,
		serviceaccount.DefaultServiceAccountsControllerOptions())
	if err != nil {
		return nil, fmt.Errorf("serviceaccounts controller: %w", err)
	}
	pub, err := rootcacertpublisher.NewPublisher(f.Core().V1().ConfigMaps(), f.Core().V1().Namespaces(), cs, cfg.RootCA)
	if err != nil {
		return nil, fmt.Errorf("root CA publisher: %w", err)
	}

	// Node IPAM: a /24 of the cluster CIDR for each node (spec.podCIDR).
	ipamc, err := ipam.New(ctx, cs, nil, f.Core().V1().Nodes(), ipam.RangeAllocatorType, ipam.CIDRAllocatorParams{
		ClusterCIDRs:      []*net.IPNet{cfg.ClusterCIDR},
		ServiceCIDR:       cfg.ServiceCIDR,
		NodeCIDRMaskSizes: []int{24},
	})
	if err != nil {
		return nil, fmt.Errorf("node ipam controller: %w", err)
	}
	// Node lifecycle: the not-ready/unreachable taints and conditions of nodes
	// that stop reporting, and eviction of their pods (upstream's defaults:
	// monitor every 5 s, NotReady after 40 s without a heartbeat).
	nlc, err := nodelifecycle.NewNodeLifecycleController(ctx,
		f.Coordination().V1().Leases(), f.Core().V1().Pods(), f.Core().V1().Nodes(), f.Apps().V1().DaemonSets(),
		cs, 5*time.Second, time.Minute, 40*time.Second, 0.1, 0.01, 50, 0.55)
	if err != nil {
		return nil, fmt.Errorf("node lifecycle controller: %w", err)
	}

	return &Controllers{f: f, ownFactory: own, log: log, run: map[string]func(context.Context){
		"namespace":         func(ctx context.Context) { nsc.Run(ctx, 2) },
		"serviceaccount":    func(ctx context.Context) { sac.Run(ctx, 2) },
		"root-ca-publisher": func(ctx context.Context) { pub.Run(ctx, 2) },
		"node-ipam":         ipamc.Run,
		"node-lifecycle":    nlc.Run,
	}}, nil
}

// Run starts the informers (if nobody has) and every controller, and blocks
// until ctx is done and they have stopped.
func (c *Controllers) Run(ctx context.Context) {
	log := c.log
	c.f.Start(ctx.Done())
	var wg sync.WaitGroup
	for name, run := range c.run {
		wg.Add(1)
		go func() {
			defer wg.Done()
			log.Debug("controller starting", "controller", name)
			run(ctx)
		}()
	}
	wg.Wait()
	if c.ownFactory {
		c.f.Shutdown()
	}
}
