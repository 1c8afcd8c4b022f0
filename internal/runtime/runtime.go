package runtime

import (
	"context"
	"errors"
	"io"
	"syscall"
	"time"
)

var (
	// ErrNotFound is returned when no sandbox or container has the given ID.
	ErrNotFound = errors.New("runtime: not found")
	// ErrAlreadyExists is returned by CreateContainer when the sandbox already
	// holds a container with the same name and attempt.
	ErrAlreadyExists = errors.New("runtime: already exists")
	// ErrInvalid is returned when a configuration is malformed or asks for
	// something the host cannot give (a cgroup parent outside the runtime's
	// own cgroup, a relative mount destination, no arguments, ...).
	ErrInvalid = errors.New("runtime: invalid configuration")
	// ErrFailedPrecondition is returned when the operation does not apply to
	// the object's current state: starting a container that is not created,
	// creating a container in a sandbox that is not ready, exec in a
	// container that is not running.
	ErrFailedPrecondition = errors.New("runtime: failed precondition")
)

// Runtime is everything the node agent asks of a container runtime.
type Runtime interface {
	SandboxManager
	ContainerManager
	Execer
	Attacher
}

// SandboxManager runs pod sandboxes.
type SandboxManager interface {
	// RunPodSandbox creates the sandbox's namespaces (through an infra
	// process) and returns its ID once it is ready. On error nothing of the
	// sandbox is left behind.
	RunPodSandbox(ctx context.Context, cfg SandboxConfig) (string, error)
	// StopPodSandbox kills every container of the sandbox and its infra
	// process; the records stay until RemovePodSandbox. Stopping a stopped
	// sandbox does nothing; an unknown ID is ErrNotFound.
	StopPodSandbox(ctx context.Context, id string) error
	// RemovePodSandbox stops the sandbox if needed, removes all its
	// containers and then every trace of it (mounts, cgroups, state).
	// Removing an unknown ID returns nil, so that removal can be retried.
	RemovePodSandbox(ctx context.Context, id string) error
	// SandboxStatus reports one sandbox; an unknown ID is ErrNotFound.
	SandboxStatus(ctx context.Context, id string) (*SandboxStatus, error)
	// ListPodSandboxes reports every sandbox, in creation order.
	ListPodSandboxes(ctx context.Context) ([]*SandboxStatus, error)
}

// ContainerManager runs the containers of sandboxes.
type ContainerManager interface {
	// CreateContainer prepares a container in a ready sandbox (root
	// filesystem, OCI bundle, monitor) without running the user's process,
	// and returns its ID. On error nothing of the container is left behind.
	CreateContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error)
	// StartContainer runs the process of a created container. Any other
	// state is ErrFailedPrecondition.
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends signal (SIGTERM when 0) to the container's main
	// process, waits up to timeout for it to exit, then kills every process
	// of the container with SIGKILL and waits for the exit. A created
	// container is killed at once. Stopping an exited container does nothing.
	// It returns once the exit has been recorded.
	StopContainer(ctx context.Context, id string, timeout time.Duration, signal syscall.Signal) error
	// RemoveContainer kills the container if it still runs and removes it:
	// its cgroup, root filesystem mount and state (the log too when the
	// runtime chose its path). Removing an unknown ID returns nil.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerStatus reports one container; an unknown ID is ErrNotFound.
	ContainerStatus(ctx context.Context, id string) (*ContainerStatus, error)
	// ListContainers reports the containers that match filter, in creation
	// order.
	ListContainers(ctx context.Context, filter ContainerFilter) ([]*ContainerStatus, error)
	// ReopenContainerLog makes the container's monitor close its log file
	// and open LogPath anew (after the caller renamed the old file for
	// rotation). A container that is not running is ErrFailedPrecondition.
	ReopenContainerLog(ctx context.Context, id string) error
}

// Attacher connects to the main process of running containers.
type Attacher interface {
	// Attach connects opts' streams to the main process of the running
	// container id (stdin only when the container was created with Stdin)
	// and returns when the process exits, the streams end or ctx is
	// cancelled. Output written before the attach is not replayed.
	// A container that is not running is ErrFailedPrecondition.
	Attach(ctx context.Context, id string, opts AttachOptions) error
}

// TerminalSize is a terminal's size in characters.
type TerminalSize struct {
	Width  uint16
	Height uint16
}

// AttachOptions are the streams of an Attach. With a TTY container, output
// is one stream and goes to Stdout.
type AttachOptions struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Resize delivers terminal size changes (TTY containers); may be nil.
	Resize <-chan TerminalSize
}

// Execer runs extra processes in running containers.
type Execer interface {
	// Exec runs opts.Cmd in the running container id with the container's
	// environment, user, working directory and security settings, connects
	// the given streams and returns the command's exit code (128+n when it
	// was killed by signal n) once it exited and its output was copied.
	// A container that is not running is ErrFailedPrecondition. Cancelling
	// ctx kills the command.
	Exec(ctx context.Context, id string, opts ExecOptions) (int, error)
}

// SandboxConfig describes a pod sandbox.
type SandboxConfig struct {
	// Name, Namespace, UID and Attempt identify the pod (metadata only).
	Name      string
	Namespace string
	UID       string
	Attempt   uint32
	// Hostname is the pod's hostname (the name when empty). It is ignored
	// with HostNetwork, where the pod sees the node's UTS namespace.
	Hostname    string
	Labels      map[string]string
	Annotations map[string]string

	// HostNetwork runs the pod in the node's network and UTS namespaces.
	HostNetwork bool
	// NetNSPath, when set (and HostNetwork is not), is an existing network
	// namespace (for example one prepared for CNI) that the pod joins
	// instead of getting a new one. A new one has only the loopback
	// interface, up.
	NetNSPath string
	// HostIPC runs the pod in the node's IPC namespace with the node's
	// /dev/shm.
	HostIPC bool
	// HostPID runs every container in the node's PID namespace.
	HostPID bool
	// SharePID gives the pod one PID namespace, in which the sandbox's infra
	// process is PID 1 and reaps orphaned processes. Without it every
	// container gets its own PID namespace.
	SharePID bool

	// CgroupParent is the absolute cgroup path (as in an OCI spec's
	// cgroupsPath, e.g. /kubepods/pod123) under which the containers'
	// cgroups are created, one per container, named by its ID. It must lie
	// under the runtime process's own cgroup (see package cgroups, Host.Base)
	// and is created and removed by the caller, who sets pod-level limits
	// on it. Empty means directly under the runtime's own cgroup.
	CgroupParent string
	// ShmSize is the size of the pod's /dev/shm tmpfs (64 MiB when 0).
	ShmSize int64
	// Sysctls are namespaced sysctls set in the pod's namespaces.
	Sysctls map[string]string
	// Privileged lets privileged containers run in the sandbox.
	Privileged bool
	// RuntimeHandler (a RuntimeClass's handler) picks the OCI runtime the
	// sandbox and every container in it run with; "" is the runtime's
	// default. The choice is kept with the sandbox, so that it holds across
	// restarts of the runtime. A handler the runtime is not configured with
	// is ErrInvalid, with upstream containerd's words in the message:
	// no runtime for "NAME" is configured.
	RuntimeHandler string
}

// Rootfs is a container's root filesystem: either Dir, a directory used as
// it is, or LowerDirs, read-only layers (topmost first) that the runtime
// mounts as an overlay with a writable layer of its own, discarded when the
// container is removed.
type Rootfs struct {
	Dir       string
	LowerDirs []string
	// ReadOnly mounts the root filesystem read-only in the container.
	ReadOnly bool
}

// Mount is a bind mount of a host path into the container.
type Mount struct {
	// Source is the host path (file or directory); Destination the absolute
	// path in the container.
	Source      string
	Destination string
	ReadOnly    bool
	// Propagation is "private" (default), "rslave" or "rshared".
	Propagation string
}

// Resources are a container's cgroup limits. Zero values mean unlimited.
type Resources struct {
	// CPUShares is the relative CPU weight in cgroup v1 shares (2-262144);
	// on cgroup v2 it is converted to cpu.weight.
	CPUShares uint64
	// CPUQuota and CPUPeriod (microseconds) set the CFS bandwidth limit.
	CPUQuota  int64
	CPUPeriod uint64
	// MemoryLimit in bytes; a container that exceeds it is killed by the
	// kernel and reported with reason OOMKilled.
	MemoryLimit int64
	// PidsLimit caps the number of tasks (0: unlimited).
	PidsLimit int64
	// OOMScoreAdj is the process's oom_score_adj. A value below what the
	// runtime process itself has is raised to it when the runtime lacks
	// CAP_SYS_RESOURCE.
	OOMScoreAdj *int
}

// Rlimit is a POSIX resource limit (Type like "RLIMIT_NOFILE"). Limits above
// the runtime's own hard limit are lowered to it.
type Rlimit struct {
	Type string
	Soft uint64
	Hard uint64
}

// SecurityContext is the container's identity and privileges.
type SecurityContext struct {
	// UID, GID and AdditionalGIDs are the process's credentials (0:0 by
	// default); the caller resolves user names from the image.
	UID            uint32
	GID            uint32
	AdditionalGIDs []uint32
	// Privileged gives all capabilities and host devices, no masked or
	// read-only /proc paths and a writable /sys. The sandbox must be
	// privileged too.
	Privileged bool
	// CapAdd and CapDrop change the default capability set (names with or
	// without the CAP_ prefix; "ALL" is allowed).
	CapAdd  []string
	CapDrop []string
	// NoNewPrivileges sets no_new_privs (Kubernetes: allowPrivilegeEscalation
	// false).
	NoNewPrivileges bool
	// Seccomp is the container's seccomp profile (Kubernetes'
	// seccompProfile); the zero value is Unconfined, what Kubernetes runs
	// when a pod names none. Privileged containers get no profile whatever
	// it says (as upstream). The profile applies to Exec'd processes too.
	Seccomp SeccompProfile
	// UnmaskedProc is Kubernetes' procMount: Unmasked: the container gets
	// no masked and no read-only paths (upstream's kubelet then passes
	// empty lists, which drops the /sys ones too); /proc is mounted whole
	// and writable where the kernel allows.
	UnmaskedProc bool
}

// SeccompType is the kind of a seccomp profile, with Kubernetes' names.
type SeccompType string

const (
	// SeccompUnconfined (or "") applies no seccomp filter.
	SeccompUnconfined SeccompType = "Unconfined"
	// SeccompRuntimeDefault applies the runtime's default profile (for
	// package oci, moby's default profile, as Docker and containerd use):
	// syscalls it does not allow fail with EPERM.
	SeccompRuntimeDefault SeccompType = "RuntimeDefault"
	// SeccompLocalhost applies the profile in the file LocalhostProfile.
	SeccompLocalhost SeccompType = "Localhost"
)

// SeccompProfile selects a container's seccomp filter.
type SeccompProfile struct {
	Type SeccompType
	// LocalhostProfile is, with SeccompLocalhost, the absolute path of a
	// JSON profile on the node in the OCI runtime-spec or Docker format
	// (Kubernetes' localhostProfile resolved against the kubelet's seccomp
	// directory). It is read when the container is created; a missing or
	// malformed file is ErrInvalid.
	LocalhostProfile string
}

// ContainerConfig describes a container.
type ContainerConfig struct {
	// Name and Attempt identify the container within the sandbox; the pair
	// must be unique there.
	Name        string
	Attempt     uint32
	Labels      map[string]string
	Annotations map[string]string

	Rootfs Rootfs
	// Args is the full command line (entrypoint and arguments resolved);
	// Args[0] is looked up in PATH inside the container when not absolute.
	Args []string
	// Env holds KEY=VALUE pairs. PATH gets a default when missing.
	Env []string
	// WorkingDir is the process's working directory ("/" when empty).
	WorkingDir string
	// Mounts are bind mounts (volumes, /etc/hosts, /etc/resolv.conf,
	// /dev/termination-log ...).
	Mounts []Mount
	// LogPath is where the container's stdout and stderr are written in the
	// CRI log format; the runtime picks a path in its state when empty.
	LogPath string
	// Stdin keeps the main process's standard input open for Attach;
	// StdinOnce closes it after the first attach session ends. TTY gives
	// the main process a terminal (its output is then one stream).
	Stdin     bool
	StdinOnce bool
	TTY       bool
	Resources Resources
	Rlimits   []Rlimit
	Security  SecurityContext
	// TargetContainerID makes the container join the PID namespace of
	// another container of the same sandbox (the namespace of that
	// container's main process), as an ephemeral container with
	// targetContainerName does, instead of the pod's or one of its own. The
	// target must be running when the container is created
	// (ErrFailedPrecondition otherwise, also when it is unknown); a target
	// in another sandbox is ErrInvalid. With HostPID the target's namespace
	// is the host's.
	TargetContainerID string
}

// SandboxState is a sandbox's state.
type SandboxState string

const (
	// SandboxReady means the infra process runs and containers may be added.
	SandboxReady SandboxState = "SANDBOX_READY"
	// SandboxNotReady means the sandbox was stopped or its infra process died.
	SandboxNotReady SandboxState = "SANDBOX_NOTREADY"
)

// SandboxStatus is what SandboxStatus and ListPodSandboxes report.
type SandboxStatus struct {
	ID          string
	Name        string
	Namespace   string
	UID         string
	Attempt     uint32
	State       SandboxState
	CreatedAt   time.Time
	Labels      map[string]string
	Annotations map[string]string
	// Hostname is the pod's hostname ("" with HostNetwork).
	Hostname string
	// Pid is the infra process's PID on the host (0 when it is not running).
	Pid int
	// NetNSPath is the pod's network namespace ("" with HostNetwork), for
	// network plugins.
	NetNSPath    string
	CgroupParent string
	// RuntimeHandler is the handler the sandbox runs with
	// (SandboxConfig.RuntimeHandler).
	RuntimeHandler string
}

// ContainerState is a container's state.
type ContainerState string

const (
	ContainerCreated ContainerState = "CONTAINER_CREATED"
	ContainerRunning ContainerState = "CONTAINER_RUNNING"
	ContainerExited  ContainerState = "CONTAINER_EXITED"
)

// Reasons reported in ContainerStatus.Reason for exited containers.
const (
	// ReasonCompleted: the process exited with code 0.
	ReasonCompleted = "Completed"
	// ReasonError: the process exited with a non-zero code or by a signal.
	ReasonError = "Error"
	// ReasonOOMKilled: the kernel killed a process of the container for
	// exceeding its memory limit.
	ReasonOOMKilled = "OOMKilled"
	// ReasonUnknown: the container is gone but its exit code was lost (its
	// monitor was killed); ExitCode is then 255.
	ReasonUnknown = "ContainerStatusUnknown"
)

// ContainerStatus is what ContainerStatus and ListContainers report.
type ContainerStatus struct {
	ID          string
	SandboxID   string
	Name        string
	Attempt     uint32
	State       ContainerState
	Labels      map[string]string
	Annotations map[string]string
	// Pid is the main process's PID on the host while it runs (0 otherwise).
	Pid        int
	CreatedAt  time.Time
	StartedAt  time.Time // zero until started
	FinishedAt time.Time // zero until exited
	// ExitCode is the exit status (128+n for signal n); valid when exited.
	ExitCode int32
	// Reason is one of the Reason constants when exited.
	Reason  string
	Message string
	LogPath string
	// CgroupPath is the container's cgroup (absolute, as in cgroupsPath).
	CgroupPath string
}

// ContainerFilter selects containers; zero fields match everything.
type ContainerFilter struct {
	SandboxID string
	State     ContainerState
	// Labels must all be present with equal values.
	Labels map[string]string
}

// Matches reports whether s passes the filter.
func (f ContainerFilter) Matches(s *ContainerStatus) bool {
	if f.SandboxID != "" && s.SandboxID != f.SandboxID {
		return false
	}
	if f.State != "" && s.State != f.State {
		return false
	}
	for k, v := range f.Labels {
		if got, ok := s.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// ExecOptions is a command to run in a container.
type ExecOptions struct {
	Cmd []string
	// Env is added to the container's environment.
	Env []string
	// Stdin, Stdout and Stderr may be nil. With TTY the command gets a
	// terminal; its output (stdout and stderr merged) goes to Stdout.
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
	// Resize delivers terminal size changes (with TTY); may be nil.
	Resize <-chan TerminalSize
}
