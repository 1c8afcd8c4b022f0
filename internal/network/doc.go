// Package network owns pod networking on one node, through CNI: libcni runs
// the standard plugins (Debian's containernetworking-plugins 1.1.1 in
// /usr/lib/cni: bridge, host-local, portmap, loopback; they speak CNI spec
// up to 1.0.0, the version of the generated conflist).
//
// # The host
//
// Every node has a bridge named BridgeName(NodeName) ("pp-" and 10 hex
// digits), which is also the CNI network's name, so several agents with
// different node names and state dirs can share one machine. EnsureHost
// creates it with the first address of the PodCIDR (the pods' gateway) and
// a fixed MAC, sets net.ipv4.ip_forward=1 if it was 0 (logged), and adds
// unreachable routes for the ClusterCIDR and the ServiceCIDR: the bridge's
// route for this node's PodCIDR is more specific and wins, and nothing else
// for those ranges can leave by the default route.
//
// Note for whoever serves services: a locally generated packet is routed
// before the nat OUTPUT chain sees it, so with the unreachable ServiceCIDR
// route a connect() from the host's network namespace to a service IP fails
// with EHOSTUNREACH before any DNAT rule can rewrite it. Pods are not
// affected (PREROUTING DNAT happens before their packets are routed); host
// network clients of services need a route for the ServiceCIDR that leads
// somewhere local (for example via the bridge) instead.
//
// # A sandbox's network
//
//	Setup     status first: a sandbox with a cached result and a live
//	          namespace is returned as it is. Otherwise leftovers are torn
//	          down, a network namespace is created and bind-mounted at
//	          STATE/netns/ID, and CNI ADD runs the list
//	            bridge   veth eth0 in the pod, host end on the bridge with
//	                     hairpin; host-local allocates from PodCIDR with a
//	                     default route via the gateway; masquerade for
//	                     traffic leaving the PodCIDR
//	            portmap  DNAT for host ports (the portMappings capability);
//	                     sets route_localnet on the bridge so 127.0.0.1:PORT
//	                     works from the host
//	            loopback lo up, passes the bridge's result on
//	          libcni caches the result, the config and the capability
//	          arguments in STATE/cache. If anything fails, every plugin gets
//	          a DEL, the sandbox's firewall rules are swept and the namespace
//	          is removed.
//	Status    the cached result, while the namespace is alive.
//	Teardown  CNI DEL with the cached config and port mappings, then the
//	          namespace is unmounted (MNT_DETACH) and deleted. Without a live
//	          namespace (after a reboot) DEL runs without one: the plugins
//	          then release the address but cannot find the masquerade rules,
//	          which a sweep of the nat table (rules commented with the
//	          network and sandbox) removes.
//	List      sandboxes with a namespace file or a cache entry: what a
//	          restarted agent compares with the sandboxes it knows.
//	Reset     Teardown of everything, a sweep of the network's firewall
//	          rules, the bridge deleted, STATE removed; the cluster and
//	          service routes (and portmap's unused shared chains) go only
//	          when no other "pp-" bridge is left.
//
// A namespace is made by a goroutine locked to its OS thread, which
// unshares CLONE_NEWNET, bind-mounts /proc/self/task/TID/ns/net and exits
// without unlocking, so the Go runtime discards the thread rather than reuse
// it in the wrong namespace. STATE/netns is a shared mount point, as
// ip-netns makes /run/netns, so unmounting a namespace propagates into mount
// namespaces copied from the host.
//
// # State
//
//	STATE/peapod.conflist      the generated CNI configuration (for people;
//	                           the code uses its in-memory copy and the cache)
//	STATE/netns/ID             bind mount of the sandbox's network namespace
//	STATE/cache/results/NET-ID-eth0   libcni's cache (result, config, args)
//	STATE/ipam/NET/            host-local's allocations (one file per IP)
//
// Nothing is kept in memory beyond per-sandbox locks, so a new Manager on
// the same StateDir sees what the old one left.
//
// # Firewall
//
// The plugins write iptables rules (nf_tables through iptables-nft), all in
// the nat table: per sandbox, the bridge's masquerade chain CNI-<hash> with
// its POSTROUTING jump, and portmap's CNI-DN-<hash> with its jump from
// CNI-HOSTPORT-DNAT; DEL removes them. portmap's shared chains
// CNI-HOSTPORT-DNAT, CNI-HOSTPORT-SETMARK and CNI-HOSTPORT-MASQ (with their
// jumps from PREROUTING, OUTPUT and POSTROUTING) belong to every CNI user of
// the machine; Reset of the last peapod node removes them when they are
// unused. Besides iptables the plugins set net.ipv4.conf.BRIDGE.route_localnet
// (portmap) and hairpin mode on the bridge ports; both go with the bridge.
package network
