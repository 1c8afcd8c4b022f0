package prober

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	grpcprobe "k8s.io/kubernetes/pkg/probe/grpc"
	httpprobe "k8s.io/kubernetes/pkg/probe/http"
	tcpprobe "k8s.io/kubernetes/pkg/probe/tcp"
)

// Execer runs a probe's command in a container.
type Execer interface {
	// Exec runs cmd in the running container containerID and returns its exit
	// code and its output (stdout followed by stderr; the prober keeps the
	// first 10 KiB). ctx carries a deadline timeout from now: when ctx ends
	// before the command exits, the command is killed and Exec returns an
	// error wrapping ctx.Err() (context.DeadlineExceeded for a timeout, which
	// is a probe failure). Any other error means the command could not be run
	// (the container is gone, the runtime failed): the prober retries, then
	// reports the probe as errored and does not count the run.
	Exec(ctx context.Context, containerID string, cmd []string, timeout time.Duration) (exitCode int, output []byte, err error)
}

// Config configures a Manager. Exec is required when a pod has exec probes;
// everything else has a default.
type Config struct {
	// Exec runs exec probes.
	Exec Execer
	// Clock drives the schedule (initial delays, periods, jitter); the
	// handlers' timeouts use real time. Default: the real clock.
	Clock clock.Clock
	// Logger; nil discards.
	Logger *slog.Logger
	// Workers bounds how many probes run at once on the node. Default 32.
	Workers int
	// OnChange is called (from a probe worker, with no lock held) after a
	// probe run changed what Ready or Started report for a container of the
	// pod, or left a kill request for TakeKill. It is not called for changes
	// UpdatePod and RemovePod make themselves. It must not block for long.
	OnChange func(podUID types.UID)
	// OnEvent records an event on the pod's container (upstream's reasons and
	// wording: Warning Unhealthy "Liveness probe failed: ...", "Readiness
	// probe errored: ...", Warning ProbeWarning "Readiness probe warning:
	// ..."). Called from a probe worker with no lock held.
	OnEvent func(pod *v1.Pod, container string, eventType, reason, message string)
}

// Running is a container that runs now.
type Running struct {
	// ID is the runtime's container ID; a new ID is a new container and
	// resets its probes' results.
	ID string
	// StartedAt is when the container started; initial delays count from it.
	StartedAt time.Time
}

// Kill asks the agent to stop a container whose liveness or startup probe
// failed failureThreshold times in a row.
type Kill struct {
	// ContainerID is the container that failed; a container with another ID
	// (a restart) is not concerned.
	ContainerID string
	// Unhealthy is the message of the failing run's Unhealthy event, e.g.
	// "Liveness probe failed: HTTP probe failed with statuscode: 500".
	Unhealthy string
	// Message is upstream's Killing event message: "Container c failed
	// liveness probe, will be restarted" (without ", will be restarted" when
	// the pod's restartPolicy is Never; "Init container s failed liveness
	// probe" for a sidecar).
	Message string
	// GracePeriodSeconds is what upstream's kubelet gives the container: the
	// pod's deletionGracePeriodSeconds when set, else the probe's
	// terminationGracePeriodSeconds when set, else the pod's
	// terminationGracePeriodSeconds (2 when even that is unset). The agent
	// runs the preStop hook within it and applies its minimum (upstream: 2 s).
	GracePeriodSeconds int64
}

// Manager runs the probes of the pods on one node. Its methods are safe for
// concurrent use.
type Manager struct {
	exec     Execer
	clock    clock.Clock
	log      *slog.Logger
	workers  int
	onChange func(types.UID)
	onEvent  func(*v1.Pod, string, string, string, string)

	http httpprobe.Prober
	tcp  tcpprobe.Prober
	grpc grpcprobe.Prober

	// jitter returns a random duration in [0, d); tests replace it.
	jitter func(d time.Duration) time.Duration

	wake chan struct{} // pokes the scheduler (buffer 1)

	mu       sync.Mutex
	pods     map[types.UID]*podState
	queue    probeHeap // scheduled probe runs, earliest first
	inflight int       // runs handed to the pool and not recorded yet
	sleeping bool      // the scheduler waits on its timer or a poke
	runs     int       // probe runs recorded (tests)
}

// New returns a Manager; Run starts probing.
func New(cfg Config) *Manager {
	m := &Manager{
		exec:     cfg.Exec,
		clock:    cfg.Clock,
		log:      cfg.Logger,
		workers:  cfg.Workers,
		onChange: cfg.OnChange,
		onEvent:  cfg.OnEvent,
		// Upstream's kubelet: redirects to another host are not followed
		// (a warning and a success).
		http:   httpprobe.New(false),
		tcp:    tcpprobe.New(),
		grpc:   grpcprobe.New(),
		jitter: randomJitter,
		wake:   make(chan struct{}, 1),
		pods:   map[types.UID]*podState{},
	}
	if m.clock == nil {
		m.clock = clock.RealClock{}
	}
	if m.log == nil {
		m.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if m.workers <= 0 {
		m.workers = 32
	}
	return m
}

func randomJitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return rand.N(d)
}

// probeType is liveness, readiness or startup.
type probeType int

const (
	liveness probeType = iota
	readiness
	startup
)

// String is the word upstream's messages start with.
func (t probeType) String() string {
	switch t {
	case liveness:
		return "Liveness"
	case readiness:
		return "Readiness"
	default:
		return "Startup"
	}
}

type podState struct {
	pod        *v1.Pod
	podIP      string
	containers map[string]*containerState
}

// containerState is one running container (one container ID) and its probes.
type containerState struct {
	pod       *podState
	spec      *v1.Container
	sidecar   bool
	id        string
	startedAt time.Time
	probes    [3]*probeWorker // by probeType; nil when the container has none
	started   bool            // startup probe passed, or there is none
	ready     bool            // readiness result
	kill      *pendingKill    // pending kill request
}

type pendingKill struct {
	Kill
	probe probeType
}

// UpdatePod tells the manager which containers of pod run now (by name, from
// spec.containers and restartable init containers; others are ignored) and
// where network probes go (podIP: the pod's IP, or the node IP for a
// hostNetwork pod). A container seen with a new ID starts afresh (results
// reset, pending kill dropped); a container no longer in running loses its
// probes and results. A pod being deleted (deletionTimestamp set) stops its
// liveness and startup probes. Idempotent; call it on every sync.
func (m *Manager) UpdatePod(pod *v1.Pod, podIP string, running map[string]Running) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.pods[pod.UID]
	if ps == nil {
		ps = &podState{containers: map[string]*containerState{}}
		m.pods[pod.UID] = ps
	}
	ps.pod, ps.podIP = pod, podIP

	specs := map[string]*v1.Container{}
	sidecars := map[string]bool{}
	for i := range pod.Spec.Containers {
		specs[pod.Spec.Containers[i].Name] = &pod.Spec.Containers[i]
	}
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways {
			specs[c.Name] = c
			sidecars[c.Name] = true
		}
	}
	for name, c := range ps.containers {
		if r, ok := running[name]; !ok || r.ID != c.id || specs[name] == nil {
			m.dropContainer(c)
			delete(ps.containers, name)
		}
	}
	now := m.clock.Now()
	for name, r := range running {
		spec := specs[name]
		if spec == nil || r.ID == "" || ps.containers[name] != nil {
			continue
		}
		ps.containers[name] = m.newContainer(ps, spec, sidecars[name], r, now)
	}
	if pod.DeletionTimestamp != nil {
		for _, c := range ps.containers {
			m.quiesce(c, now)
		}
	}
}

// RemovePod stops every probe of the pod and forgets its results.
func (m *Manager) RemovePod(uid types.UID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.pods[uid]
	if ps == nil {
		return
	}
	for _, c := range ps.containers {
		m.dropContainer(c)
	}
	delete(m.pods, uid)
}

// Ready reports whether the container runs, is started and passes its
// readiness probe (true when it has none).
func (m *Manager) Ready(uid types.UID, container string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.container(uid, container)
	return c != nil && c.started && (c.probes[readiness] == nil || c.ready)
}

// Started reports whether the container runs and passed its startup probe
// (true when it has none).
func (m *Manager) Started(uid types.UID, container string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.container(uid, container)
	return c != nil && c.started
}

// TakeKill returns and clears the pending kill request for the container.
// A request is made once per container ID: when the agent fails to stop the
// container it retries on its own.
func (m *Manager) TakeKill(uid types.UID, container string) (Kill, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.container(uid, container)
	if c == nil || c.kill == nil {
		return Kill{}, false
	}
	k := c.kill.Kill
	k.GracePeriodSeconds = gracePeriod(c.pod.pod, c.spec, c.kill.probe)
	c.kill = nil
	return k, true
}

func (m *Manager) container(uid types.UID, name string) *containerState {
	ps := m.pods[uid]
	if ps == nil {
		return nil
	}
	return ps.containers[name]
}

// newContainer makes the state of a container that runs with a new ID and
// schedules its first probe runs. m.mu is held.
func (m *Manager) newContainer(ps *podState, spec *v1.Container, sidecar bool, r Running, now time.Time) *containerState {
	c := &containerState{pod: ps, spec: spec, sidecar: sidecar, id: r.ID, startedAt: r.StartedAt}
	for t, p := range [3]*v1.Probe{liveness: spec.LivenessProbe, readiness: spec.ReadinessProbe, startup: spec.StartupProbe} {
		if p != nil {
			c.probes[t] = &probeWorker{typ: probeType(t), c: c, spec: withDefaults(p), index: -1}
		}
	}
	c.started = c.probes[startup] == nil
	if c.started {
		m.startProbes(c, now, liveness, readiness)
	} else {
		m.startProbes(c, now, startup)
	}
	return c
}

// startProbes schedules the first runs of the container's probes of the
// given types: after the initial delay, with jitter up to a period for
// liveness and startup. m.mu is held.
func (m *Manager) startProbes(c *containerState, now time.Time, types ...probeType) {
	for _, t := range types {
		w := c.probes[t]
		if w == nil {
			continue
		}
		at := c.startedAt.Add(time.Duration(w.spec.InitialDelaySeconds) * time.Second)
		if at.Before(now) {
			at = now
		}
		if t != readiness {
			at = at.Add(m.jitter(w.period()))
		}
		m.schedule(w, at)
	}
}

// quiesce stops liveness and startup probes of a container whose pod is
// being deleted, as upstream does for a quiet shutdown. m.mu is held.
func (m *Manager) quiesce(c *containerState, now time.Time) {
	for _, t := range []probeType{liveness, startup} {
		if w := c.probes[t]; w != nil && !w.stopped {
			m.stop(w)
		}
	}
	c.kill = nil
	if !c.started {
		c.started = true
		m.startProbes(c, now, readiness)
	}
}

// dropContainer stops the container's probes; runs in flight are dropped
// when they end. m.mu is held.
func (m *Manager) dropContainer(c *containerState) {
	for _, w := range c.probes {
		if w != nil {
			m.stop(w)
		}
	}
}

// withDefaults returns p with upstream's API defaults for zero fields.
func withDefaults(p *v1.Probe) *v1.Probe {
	p = p.DeepCopy()
	if p.TimeoutSeconds <= 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds <= 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = 3
	}
	return p
}

// killMessage is upstream's Killing message for a container that failed
// its liveness or startup probe.
func killMessage(c *containerState, t probeType) string {
	what := "liveness"
	if t == startup {
		what = "startup"
	}
	if c.sidecar {
		return fmt.Sprintf("Init container %s failed %s probe", c.spec.Name, what)
	}
	msg := fmt.Sprintf("Container %s failed %s probe", c.spec.Name, what)
	if c.pod.pod.Spec.RestartPolicy != v1.RestartPolicyNever {
		msg += ", will be restarted"
	}
	return msg
}

// gracePeriod is upstream's setTerminationGracePeriod for a probe kill.
func gracePeriod(pod *v1.Pod, c *v1.Container, t probeType) int64 {
	switch {
	case pod.DeletionGracePeriodSeconds != nil:
		return *pod.DeletionGracePeriodSeconds
	case pod.Spec.TerminationGracePeriodSeconds != nil:
		p := c.LivenessProbe
		if t == startup {
			p = c.StartupProbe
		}
		if p != nil && p.TerminationGracePeriodSeconds != nil {
			return *p.TerminationGracePeriodSeconds
		}
		return *pod.Spec.TerminationGracePeriodSeconds
	}
	return 2
}
