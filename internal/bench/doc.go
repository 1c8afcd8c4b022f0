// Package bench is `peapod bench`: benchmarks of peapod measured with
// client-go, each next to a peer measured the same way on the same machine.
//
// # bench api
//
// A Kubernetes API server's pod handling (create throughput and latency, GET
// latency under load, LIST time, watch fan-out) and its memory, against a
// peapod server it starts itself (`server --disable-agent --disable-scheduler`) or any server a
// kubeconfig names (hack/bench-upstream.sh: kube-apiserver over etcd). Run
// drives the steps; Result is what it measured; WriteComparison puts two
// sides' results next to each other.
//
// # bench pods
//
// A node's pods, on peapod and on podman (the peer), in the same run
// (RunPods; hack/bench-pods.sh starts the peapod server and its node):
//
//	for each system:
//	  warm-up pod (created, Running, deleted: one-time work left out)
//	  agent memory sampled with no pods
//	  Count pods created one after another, each waited for  ─▶ create→Running/Ready
//	  node memory sampled with Count pods running             ─▶ PSS of conmons + infra, agent growth
//	  the pods deleted one after another                      ─▶ delete→gone
//	  for each size in AtOnce: pods created at once, then deleted at once
//
// The systems sit behind podDriver (create, remove, waitFor a state); the
// batches (scenario) are the same code for both.
//
// peapod (peapodDriver): pods are created and deleted through the API; a
// watch (podTracker) records when each pod's event with phase Running, with
// condition Ready, and its deletion arrived: the moment a client of the API
// learns it. Deletion uses the pod's grace period; the agent deletes the
// object once the containers are gone.
//
// podman (podmanPeer): `podman kube play` of the same pod manifest, one
// process per pod (in parallel for a batch at once), and `podman pod rm -f`.
// Running is the container's start event as podman recorded it (its file
// event log is polled, so arrival times would be late by up to 250 ms);
// podman has no Ready. podman runs with its own storage, run and network
// configuration directories in a temporary directory, the cgroupfs manager
// and runc (peapod's runtime), inside namespaces held by one process
// (holderScript): a mount namespace in which the benchmark's own cgroups are
// bind-mounted over their hierarchies (podman's "/libpod_parent" cgroups then
// nest below the benchmark's instead of at the roots) and tmpfs hide /run,
// /dev/shm and /var/lib, and new cgroup and network namespaces (the CNI
// bridge, its firewall rules and forwarding live and die with the holder;
// no pod reaches beyond the machine). At the end podman's own commands
// remove pods, containers, images, networks and storage, then the empty
// cgroups go, the holder is killed and the directory removed.
//
// Memory: the pods' processes are conmons whose command line names the
// node's data (or podman's storage) directory, and their children: catatonit
// is the pod's infra, anything else its workload. Each one's PSS comes from
// /proc/PID/smaps_rollup, so that shared pages (the conmon binary, libc) are
// shared out rather than counted once per process. A pod's cost to the node
// is its conmons' and infra's PSS plus the agent's PSS growth from no pods
// to Count pods, divided by Count; the workload is the user's and is left
// out.
package bench
