// Package oci implements runtime.Runtime with an OCI runtime (runc or crun)
// run under conmon, one conmon per container, so that containers, their exit
// codes and their logs outlive the agent process.
//
// # A container's life
//
//	CreateContainer  mount the overlay root (when given lower dirs), write the
//	                 OCI bundle (config.json from specs-go), start conmon:
//	                   conmon --api-version 1 -c ID -u ID -r RUNTIME -b DIR
//	                     -p DIR/container.pid -P DIR/conmon.pid
//	                     -l k8s-file:LOG --exit-dir STATE/exits
//	                     --socket-dir-path STATE/attach --runtime-arg --root ...
//	                     [--stdin [--leave-stdin-open]] [--terminal]
//	                 conmon double-forks (the first process exits once the
//	                 second wrote conmon.pid), runs `RUNTIME create`, and
//	                 writes {"data": PID} (or {"data": -1, "message": ...}) as
//	                 a JSON line to the pipe passed as fd 3 in _OCI_SYNCPIPE.
//	StartContainer   `RUNTIME start ID`.
//	StopContainer    signal the main process through a pidfd (no PID reuse
//	                 race), wait for conmon's exit file, then SIGKILL (through
//	                 `RUNTIME kill --all` when the container shares a PID
//	                 namespace, so no process of it survives its init).
//	RemoveContainer  `RUNTIME delete --force ID`, wait for conmon to go,
//	                 prune the cgroup directories, unmount the overlay, remove
//	                 the state. A failed creation is undone the same way.
//
// conmon copies the container's stdout and stderr into LOG in the CRI log
// format:
//
//	2006-01-02T15:04:05.000000000+00:00 stdout F line
//
// (F for a full line, P for a partial one). conmon writes RFC 3339 with
// nanoseconds and a numeric offset; it runs with TZ=UTC, so the offset is
// always +00:00, the same instant RFC 3339 parsers such as the kubelet's read
// from a Z. When the container's main process exits, conmon writes its exit
// status (128+signal for a signal) to STATE/exits/ID and, when the kernel
// reported an OOM kill in the container's memory cgroup, an "oom" file in its
// working directory (the container's directory). StopPodSandbox and
// RemovePodSandbox handle a pod's containers concurrently.
//
// # Standard streams, attach and log rotation
//
// ContainerConfig.Stdin adds conmon's --stdin (the process's stdin is a pipe
// that conmon holds open and feeds from attach sessions) and, unless
// StdinOnce, --leave-stdin-open (without it conmon closes that pipe when an
// attach session ends its input). TTY sets the spec's process.terminal (and
// TERM=xterm unless set) and conmon's --terminal: conmon passes a console
// socket to `RUNTIME create`, receives the terminal's master, and logs its
// output (one stream, "\r\n" line ends) as stdout.
//
// Attach connects to conmon's attach socket, DIR/attach, a SOCK_SEQPACKET
// socket. conmon binds it through STATE/attach/ID, a symlink to DIR, so that
// the address fits a socket address's 108 bytes; peapod connects through
// /proc/self/fd/N/attach with DIR opened O_PATH, which fits for any DIR
// (conmon binds it the same way). Each packet from conmon is one read of
// the container's output after a byte naming the pipe (2 stdout, 3 stderr);
// input goes in raw, in packets of at most 8 KiB (conmon reads 32 KiB at a
// time and a packet's excess would be lost). Shutting down the write side
// is the end of input. conmon closes every session when the process exits
// and never replays earlier output.
//
// Terminal resizes and log reopening go to conmon's control FIFO DIR/ctl as
// "1 HEIGHT WIDTH\n" and "2 0 0\n". conmon 2.1.6 acts on only the first line
// of what one read returns, so messages to one conmon are written one at a
// time, each waited for until conmon has read it (FIONREAD on the FIFO, and
// on DIR/winsz, through which conmon relays a resize to itself). On "2 0 0"
// conmon writes LOG.tmp and renames it over LOG; ReopenContainerLog returns
// once a new file is at LOG. Lines written before that are in the file the
// caller renamed: conmon writes whole lines between control messages.
//
// Exec with a TTY runs the runtime on a pseudo-terminal made here as its
// controlling terminal: runc copies its size to the container's terminal at
// start and on SIGWINCH. crun 1.8 copies the size only at start (a size
// given before the command starts goes into the process's consoleSize), so
// later resizes are also set on the command's own terminal, found through
// /proc/PID/fd of the PID the runtime wrote.
//
// # The sandbox
//
// A sandbox is an infra container running catatonit in pause mode
// (`catatonit -P`, a static binary bind-mounted read-only into an otherwise
// empty root) that creates the pod's network, IPC and UTS namespaces
// (hostname = the pod's), and a PID namespace of which it is PID 1 (so it
// reaps orphans when the pod shares it). A new network namespace gets its
// loopback up from the OCI runtime. App containers join the namespaces
// through /proc/INFRA-PID/ns/*. The pod's /dev/shm is a tmpfs mounted on the
// host in the sandbox's directory and bind-mounted into every container.
//
// A container with TargetContainerID (an ephemeral container with a
// target) joins /proc/TARGET-PID/ns/pid, the PID namespace of the target's
// main process, instead of the pod's or a new one. The target must be a
// running container of the same sandbox; its liveness (PID and start time)
// is checked again after the creation, so that a PID reused meanwhile
// cannot have lent the new container a stranger's namespace. Such a
// container is not the init of its namespace, so stopping it kills its
// processes through `RUNTIME kill --all` (its cgroup), as with a shared
// PID namespace.
//
// # Runtime handlers
//
// Config.Runtime is the default handler, ""; Config.Handlers adds named
// ones (RuntimeClass handlers: DNS labels), each an OCI runtime binary,
// runc or crun, with a --root of its own (STATE/runtime/NAME) so that
// runtimes never share state. SandboxConfig.RuntimeHandler picks one for
// the sandbox's infra and every container of it; an unconfigured name is
// refused as containerd refuses it (`no runtime for "NAME" is configured`,
// ErrInvalid). Every container record (the infra's too) keeps the handler's
// name, binary, flavor, root and whether it is created through the cgroup2
// hiding wrapper, so that a runtime reopened with other handlers still
// stops, execs in, adds to and removes existing pods with what made them
// (rewriting the wrapper if it is gone). Records older than handlers belong
// to the default handler.
//
// # Security
//
// Unprivileged containers get containerd's default capabilities, masked
// paths and read-only paths (DefaultCapabilities, DefaultMaskedPaths,
// DefaultReadonlyPaths); SecurityContext.UnmaskedProc (procMount:
// Unmasked) drops both path lists, as upstream's kubelet does by passing
// empty ones (the /sys entries go too).
//
// Seccomp: Unconfined (and "", Kubernetes' default when a pod names
// nothing) sets no filter. RuntimeDefault is the default profile of
// github.com/moby/profiles/seccomp (Docker's, from which containerd's
// contrib/seccomp derives): deny by default with EPERM, an allow list, and
// rules that depend on the container's capabilities (CAP_SYS_ADMIN opens
// mount, unshare, setns, ...), the architecture and the kernel version,
// resolved against the spec being built. Localhost reads the absolute path
// LocalhostProfile when the container is created, with the same library
// (OCI runtime-spec or Docker format). The filter goes into the spec's
// linux.seccomp, so `RUNTIME exec` applies it to exec'd processes too.
// Privileged containers and the infra run without seccomp, as upstream's
// do (the infra has no capabilities and no_new_privs instead).
//
// # State directory
//
//	STATE/sandboxes/ID/   sandbox.json, container.json (the infra), config.json,
//	                      rootfs/, shm/ (tmpfs), conmon.pid, container.pid, infra.log
//	STATE/containers/ID/  container.json, config.json, rootfs/ (overlay mount
//	                      point), upper/, work/, conmon.pid, container.pid,
//	                      container.log (unless the caller chose a log path), oom,
//	                      attach (socket), ctl and winsz (FIFOs), all three conmon's
//	STATE/exits/ID        exit status written by conmon
//	STATE/runtime/        the default handler's --root (Config.RuntimeRoot)
//	STATE/runtime/NAME/   the --root of the runtime handler NAME
//	STATE/attach/         conmon's attach socket links
//	STATE/bin/            create wrappers BINARY-hybrid-HASH (hybrid hosts,
//	                      crun), one per runtime binary
//
// Records are written atomically (temp file, rename). Nothing is cached in
// memory beyond per-ID locks, so a new Runtime on the same state directory
// sees exactly what the old one left: a container is running while its PID
// is alive with the start time recorded at creation, exited once its exit
// file exists, and lost (ReasonUnknown) when both it and its conmon are gone
// without an exit file.
//
// # cgroups
//
// The caller gives each sandbox a cgroup parent under the runtime's own
// cgroup (cgroups.Host.Base); each container's cgroupsPath is PARENT/ID,
// absolute, with the cgroupfs driver. Limits go into the spec's
// linux.resources and the runtime writes them (v1 files on legacy and hybrid
// hosts, v2 files on unified ones: see package cgroups). OOMKilled comes
// from the cgroup's counters (v2 memory.events oom_kill, v1
// memory.oom_control oom_kill or memory.failcnt) or conmon's oom file, read
// once when the exit is first seen and kept in the record.
//
// # crun on hybrid hosts
//
// crun 1.8 refuses to create containers on a hybrid host whose cgroup2
// hierarchy has controllers ("cgroups in hybrid mode not supported, drop all
// controllers from cgroupv2"; on these machines hugetlb lives there). New
// therefore writes STATE/bin/crun-hybrid-HASH (HASH from the binary's path,
// for every handler that is crun), and conmon runs `crun create` through
// it:
//
//	exec unshare --mount --propagation slave -- sh -c \
//	    'umount -l /sys/fs/cgroup/unified || exit 125; exec "$0" "$@"' /usr/bin/crun "$@"
//
// crun then runs in a mount namespace of its own in which the cgroup2
// hierarchy is not mounted, sees a legacy host and puts the container in the
// v1 controllers. The namespace is a slave of the host's (host mounts made
// later still reach it; its unmount does not reach the host) and lives only
// as long as that crun process: the container's mount namespace is copied
// from it but pivots away from its mounts. crun's other commands (start,
// kill, exec, state, delete) work on such containers unchanged and are run
// directly, so only creation pays for the namespace (about 12 ms here). To
// look at such containers by hand: crun --root STATE/runtime[/NAME] list.
// runc needs none of this.
//
// Rejected: making the namespace on a locked Go thread and forking conmon
// from it (no exec of unshare and umount). conmon then lives in that
// namespace for the container's whole life, holding copies of every mount
// that existed when it started (other pods' overlays and shm tmpfs), which
// on a host whose / is private (these machines) never see the host's
// unmounts; and Go may run the goroutine on the main thread, which is then
// never discarded.
//
// # Limits of the host
//
// Without CAP_SYS_RESOURCE, rlimits above the runtime's own hard limits are
// lowered to them and an oom_score_adj below the runtime's own is raised to
// it (upstream containerd's restrict_oom_score_adj), so that the OCI runtime
// does not fail. Privileged containers get the capabilities the runtime
// process holds (containerd's WithAllCurrentCapabilities), not every one
// the kernel knows.
package oci
