// Package prober runs the node's container probes (liveness, readiness,
// startup) with upstream Kubernetes v1.32's semantics, for the node agent.
//
// The agent tells the Manager which containers of a pod run now (UpdatePod,
// with each container's ID and start time) and where the pod's network probes
// go (the pod IP, or the node IP for hostNetwork pods); it reads the results
// back with Ready, Started and TakeKill, and is told through Config.OnChange
// when one of them changed. Every probe run that fails yields upstream's
// Unhealthy event through Config.OnEvent.
//
// Flow:
//
//	UpdatePod ──▶ per container: a probeWorker per probe (results reset when
//	              the container ID changes) ──▶ timer heap (due times)
//	Run: one scheduler goroutine sleeps on one clock timer until the earliest
//	     due run, then hands due runs to a fixed pool of Config.Workers
//	     goroutines ──▶ handler (exec via Execer, httpGet, tcpSocket, grpc)
//	     ──▶ record: thresholds, events, result changes, kill requests ──▶
//	     next run one period after the due time (a probe never runs twice at
//	     once; a late run starts as soon as a worker is free)
//
// Semantics, as upstream's pkg/kubelet/prober worker:
//   - Results start as: startup not passed, readiness false (until its first
//     success), liveness passing. A container without a startup probe is
//     started as soon as it runs; without a readiness probe it is ready as
//     soon as it is started.
//   - The startup probe holds liveness and readiness back until it succeeds;
//     then it stops for that container.
//   - A result changes only after successThreshold (readiness) or
//     failureThreshold consecutive runs with that outcome. A probe that
//     errors (its handler could not run, e.g. an unknown named port) is
//     retried up to three times, yields an "errored" event and does not
//     count.
//   - Liveness or startup failure past the threshold requests a kill of that
//     container once (TakeKill) and holds the probe until a new container
//     ID appears.
//   - First runs: startup and liveness probes start at a random point within
//     one period after the initial delay, so that many pods' probes do not
//     align (upstream's workers tick at a random phase); readiness runs as
//     soon as the initial delay passed and the container is started (what
//     upstream's status-triggered readiness run does), then every period.
//   - When the pod is being deleted, liveness and startup probes stop (the
//     container counts as started), pending kills are dropped; readiness
//     goes on.
//
// The exec, HTTP, TCP and gRPC handlers are upstream's k8s.io/kubernetes/pkg/probe
// packages (HTTP and gRPC with the upstream user agent kube-probe/1.32); exec
// goes through the small Execer interface the agent adapts its runtime to.
package prober
