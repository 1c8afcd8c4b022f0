// Package runtime is the node agent's seam to the container runtime: pod
// sandboxes and the containers in them, shaped like the Kubernetes CRI's
// RuntimeService (RunPodSandbox, CreateContainer, StartContainer, ...) but
// small and with plain Go types instead of the CRI protobufs, so that a real
// CRI runtime can be plugged in behind it later.
//
// # Model
//
// A sandbox is the pod's environment: the namespaces its containers share
// (network, IPC and UTS, and the PID namespace when asked), its /dev/shm, and
// the cgroup parent under which its containers' cgroups are made, and the
// runtime handler (a RuntimeClass's) that runs it and all its containers. A
// sandbox is created ready and lives until it is stopped; a stopped sandbox
// keeps its record until it is removed.
//
// A container belongs to exactly one sandbox and goes through the states
//
//	CreateContainer -> created --StartContainer--> running --(exit, StopContainer)--> exited
//	                      \______________StopContainer____________________________/
//
// and RemoveContainer deletes it from any state (killing it first if it still
// runs). An exited container keeps its exit code, finish time, reason and log
// until it is removed. There is no restart: the agent creates a new container
// (with a higher Attempt) instead, as the kubelet does.
//
// # Durability
//
// Containers do not belong to the process that created them: an
// implementation keeps enough on disk that a new instance opened on the same
// state (after the agent was killed, say) reports the same sandboxes and
// containers, sees running containers as running and reports the exit codes
// of those that exited in the meantime. Only one instance may use the same
// state at a time.
//
// # Errors
//
// Methods return errors that wrap one of ErrNotFound, ErrAlreadyExists,
// ErrInvalid or ErrFailedPrecondition when the cause is one of those (test
// with errors.Is); anything else is an operational failure of the host or of
// the OCI runtime.
//
// Package runtimetest holds the conformance suite every implementation runs;
// package oci is the implementation over runc or crun and conmon; package
// cgroups computes cgroup paths and values for cgroup v1, hybrid and v2
// hosts.
package runtime
