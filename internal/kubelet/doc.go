// Package kubelet is the node agent's control loop, as upstream's kubelet is: it
// registers the Node and keeps its status and heartbeat Lease current, and it
// reconciles the pods bound to the node against what runs on it.
//
// Flow of one pod:
//
//	pod informer (spec.nodeName=NODE) ─┐
//	runtime relist (container exits)  ─┼─▶ work queue keyed by pod UID ─▶ syncPod
//	back-off timers                   ─┘        (one worker per pod at a time)
//
//	syncPod: pod cgroup ─▶ volumes ─▶ sandbox (CNI netns, infra) ─▶ images ─▶
//	         init containers one at a time ─▶ app containers ─▶ status to the API
//	deletion: stop containers (grace period) ─▶ sandbox, network, volumes,
//	          cgroup gone ─▶ delete the pod object (grace 0, UID precondition)
//
// Everything it needs from the node (runtime, images, network, volumes, pod
// cgroups) comes through the small interfaces in this package; package agent
// wires the implementations.
package kubelet
