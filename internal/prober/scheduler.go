package prober

import (
	"container/heap"
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/probe"
	"k8s.io/utils/clock"
)

// probeWorker is one probe of one container (one container ID): its place in
// the schedule and its run of equal results. All fields are guarded by
// Manager.mu.
type probeWorker struct {
	typ  probeType
	c    *containerState
	spec *v1.Probe // with defaults; read-only

	due     time.Time // when the next (or current) run is due
	index   int       // position in Manager.queue; -1 when not queued
	running bool      // a run is in flight
	stopped bool      // the container is gone or its probe stopped for good
	onHold  bool      // waiting for a new container (after a kill request, or startup done)

	lastFailed bool // outcome of the last counted run
	resultRun  int  // how many counted runs in a row had that outcome
}

func (w *probeWorker) period() time.Duration {
	return time.Duration(w.spec.PeriodSeconds) * time.Second
}

// active reports whether the probe should run at all now.
func (w *probeWorker) active() bool {
	if w.stopped || w.onHold {
		return false
	}
	if w.typ == startup {
		return !w.c.started
	}
	return w.c.started
}

// probeHeap orders queued probe runs by due time.
type probeHeap []*probeWorker

func (h probeHeap) Len() int           { return len(h) }
func (h probeHeap) Less(i, j int) bool { return h[i].due.Before(h[j].due) }
func (h probeHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *probeHeap) Push(x any) {
	w := x.(*probeWorker)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *probeHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}

// schedule queues w's next run at at, unless w is inactive or running (a
// running probe is queued again when its run is recorded). m.mu is held.
func (m *Manager) schedule(w *probeWorker, at time.Time) {
	if w.running {
		return
	}
	if !w.active() {
		m.unschedule(w)
		return
	}
	w.due = at
	if w.index >= 0 {
		heap.Fix(&m.queue, w.index)
	} else {
		heap.Push(&m.queue, w)
	}
	m.poke()
}

func (m *Manager) unschedule(w *probeWorker) {
	if w.index >= 0 {
		heap.Remove(&m.queue, w.index)
	}
}

func (m *Manager) stop(w *probeWorker) {
	w.stopped = true
	m.unschedule(w)
}

// poke wakes the scheduler to look at the queue again.
func (m *Manager) poke() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// job is one probe run, with what it needs copied out of the manager's state.
type job struct {
	w           *probeWorker
	pod         *v1.Pod
	container   *v1.Container
	containerID string
	podIP       string
}

// Run runs the scheduler and the pool of probe workers until ctx ends; it
// returns once every probe run it started returned. Call it once.
func (m *Manager) Run(ctx context.Context) {
	jobs := make(chan *job)
	var wg sync.WaitGroup
	for range m.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				m.execute(ctx, j)
			}
		}()
	}
	defer func() {
		close(jobs)
		wg.Wait()
	}()
	m.log.Debug("prober running", "workers", m.workers)
	for {
		j, timer := m.next()
		if j != nil {
			// Blocks while every worker is busy: the run is taken out of
			// the queue only when a worker is free, so that it sees the
			// newest state.
			select {
			case jobs <- j:
			case <-ctx.Done():
				m.abandon(j)
				return
			}
			continue
		}
		var fired <-chan time.Time
		if timer != nil {
			fired = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-m.wake:
		case <-fired:
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		m.sleeping = false
		m.mu.Unlock()
	}
}

// next takes the earliest run out of the queue when it is due (marking it
// running). When nothing is due it returns a timer for the next queued run
// (nil when the queue is empty) and marks the scheduler as sleeping; the
// timer is made under the lock so that a test that saw the scheduler
// sleeping can step a fake clock past it.
func (m *Manager) next() (*job, clock.Timer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock.Now()
	if len(m.queue) > 0 && !m.queue[0].due.After(now) {
		w := heap.Pop(&m.queue).(*probeWorker)
		w.running = true
		m.inflight++
		ps := w.c.pod
		return &job{w: w, pod: ps.pod, container: w.c.spec, containerID: w.c.id, podIP: ps.podIP}, nil
	}
	m.sleeping = true
	if len(m.queue) == 0 {
		return nil, nil
	}
	return nil, m.clock.NewTimer(m.queue[0].due.Sub(now))
}

// abandon puts a run that was never handed to a worker back (at shutdown).
func (m *Manager) abandon(j *job) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j.w.running = false
	m.inflight--
	m.schedule(j.w, j.w.due)
}

// event is an event to record once the lock is released.
type event struct {
	eventType, reason, message string
}

// execute runs one probe and records its result.
func (m *Manager) execute(ctx context.Context, j *job) {
	result, output, err := m.probe(ctx, j)

	m.mu.Lock()
	var (
		ev      *event
		changed bool
	)
	if ctx.Err() != nil {
		// Shutting down: the run was cut short, its outcome means nothing.
		j.w.running = false
		m.schedule(j.w, j.w.due)
	} else {
		ev, changed = m.record(j, result, output, err)
	}
	uid := j.pod.UID
	m.mu.Unlock()

	if ev != nil && m.onEvent != nil {
		m.onEvent(j.pod, j.container.Name, ev.eventType, ev.reason, ev.message)
	}
	if changed && m.onChange != nil {
		m.onChange(uid)
	}

	m.mu.Lock()
	m.inflight--
	m.runs++
	m.mu.Unlock()
}

// record applies one run's outcome as upstream's prober worker does, queues
// the probe's next run, and returns the event to record and whether Ready,
// Started or a kill request changed. m.mu is held.
func (m *Manager) record(j *job, result probe.Result, output string, err error) (*event, bool) {
	w := j.w
	w.running = false
	if w.stopped {
		// The container went away (or restarted) while the probe ran.
		return nil, false
	}
	c := w.c
	now := m.clock.Now()
	next := w.due.Add(w.period())
	if next.Before(now) {
		next = now
	}
	defer func() { m.schedule(w, next) }()

	log := m.log.With("pod", j.pod.Namespace+"/"+j.pod.Name, "container", c.spec.Name, "probe", w.typ.String())
	var ev *event
	failed := false
	switch {
	case err != nil:
		// The handler could not run: upstream throws the result away.
		log.Debug("probe errored", "err", err)
		return &event{v1.EventTypeWarning, "Unhealthy", w.typ.String() + " probe errored: " + err.Error()}, false
	case result == probe.Success:
		log.Debug("probe succeeded")
	case result == probe.Warning:
		log.Debug("probe succeeded with a warning", "output", output)
		ev = &event{v1.EventTypeWarning, "ProbeWarning", w.typ.String() + " probe warning: " + output}
	default:
		log.Debug("probe failed", "result", result, "output", output)
		ev = &event{v1.EventTypeWarning, "Unhealthy", w.typ.String() + " probe failed: " + output}
		failed = true
	}

	if w.resultRun > 0 && w.lastFailed == failed {
		w.resultRun++
	} else {
		w.lastFailed, w.resultRun = failed, 1
	}
	if (failed && w.resultRun < int(w.spec.FailureThreshold)) || (!failed && w.resultRun < int(w.spec.SuccessThreshold)) {
		return ev, false
	}

	switch w.typ {
	case readiness:
		if c.ready == !failed {
			return ev, false
		}
		c.ready = !failed
		log.Debug("readiness changed", "ready", c.ready)
		return ev, true
	case liveness:
		if !failed {
			return ev, false
		}
	case startup:
		if !failed {
			// Started: stop the startup probe, let the others run.
			w.onHold = true
			c.started = true
			log.Debug("container started")
			m.startProbes(c, now, liveness, readiness)
			return ev, true
		}
	}
	// Liveness or startup failed past the threshold: ask for a kill once
	// and hold the probe until a new container appears.
	w.onHold, w.resultRun = true, 0
	c.kill = &pendingKill{Kill: Kill{ContainerID: c.id, Unhealthy: ev.message, Message: killMessage(c, w.typ)}, probe: w.typ}
	log.Info("container failed its probe, asking for a kill", "containerID", c.id, "message", ev.message)
	return ev, true
}

// quiescent reports whether nothing is due, running or waiting to be looked
// at (tests step a fake clock only then).
func (m *Manager) quiescent() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.sleeping || m.inflight > 0 || len(m.wake) > 0 {
		return false
	}
	return len(m.queue) == 0 || m.queue[0].due.After(m.clock.Now())
}
