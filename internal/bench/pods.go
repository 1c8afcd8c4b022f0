package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"
)

// PodsOptions are `peapod bench pods`' settings.
type PodsOptions struct {
	// Kubeconfig names the peapod server whose node runs the pods; empty
	// measures only the peer.
	Kubeconfig string
	// Node is the node to wait for until it is Ready; empty means any.
	Node string
	// AgentPID is the process running the node agent (the server, or the
	// agent when it runs apart), for its memory; 0 leaves agent memory out.
	AgentPID int
	// AgentLabel describes that process in the report.
	AgentLabel string
	// DataDir is the agent's data dir: the node's conmon processes are the
	// ones whose command line mentions it. Empty leaves node memory out.
	DataDir string
	// Count pods are created one after another; then batches of each
	// AtOnce size are created at once.
	Count  int
	AtOnce []int
	// DeleteCount of the Count pods are deleted one after another (the
	// rest at once, unmeasured): podman takes seconds per deletion.
	DeleteCount int
	// Podman is the podman binary to measure as the peer; empty for none.
	// Image is the image archive it loads (busybox:1.36).
	Podman string
	Image  string
	// Timeout bounds each batch's wait for its pods.
	Timeout time.Duration
	// Settle is the pause before memory samples.
	Settle time.Duration
}

// DefaultPodsOptions are the defaults of `peapod bench pods`.
func DefaultPodsOptions() PodsOptions {
	return PodsOptions{
		Count:       100,
		AtOnce:      []int{30, 100},
		DeleteCount: 30,
		Timeout:     5 * time.Minute,
		Settle:      2 * time.Second,
	}
}

func (o PodsOptions) validate() error {
	if o.Kubeconfig == "" && o.Podman == "" {
		return errors.New("nothing to measure: give --kubeconfig (peapod) and/or --podman")
	}
	if o.Count < 1 {
		return fmt.Errorf("--count %d: must be at least 1", o.Count)
	}
	if o.DeleteCount < 1 || o.DeleteCount > o.Count {
		return fmt.Errorf("--delete-count %d: must be between 1 and --count", o.DeleteCount)
	}
	for _, n := range o.AtOnce {
		if n < 1 {
			return fmt.Errorf("--parallel %d: must be at least 1", n)
		}
	}
	if o.Podman != "" && o.Image == "" {
		return errors.New("--podman needs --image, the busybox image archive to load")
	}
	return nil
}

const (
	// podsApp labels the pods of `bench pods`.
	podsApp = "peapod-bench-pods"
	// podImage and podCommand make the benchmark's pod.
	podImage     = "busybox:1.36"
	podContainer = "sleep"
	procRoot     = "/proc"
)

// nodePod is the benchmark's pod, the same for every system: one busybox
// container sleeping, no probes (Ready = its container running). The pod
// shares one PID namespace so that sleep is not PID 1 of its own and dies
// of SIGTERM at once: a deletion then measures the systems' work rather
// than a grace period (busybox sleep as a PID 1 ignores SIGTERM).
func nodePod(name string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{labelApp: podsApp},
		},
		Spec: corev1.PodSpec{
			ShareProcessNamespace: ptr.To(true),
			Containers: []corev1.Container{{
				Name:            podContainer,
				Image:           podImage,
				ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"sleep", "3600"},
			}},
		},
	}
}

// podYAML is nodePod(name) as a manifest (what `podman kube play` reads).
func podYAML(name string) ([]byte, error) {
	return yaml.Marshal(nodePod(name))
}

// podState is a point in a pod's life the benchmark waits for.
type podState int

const (
	stateRunning podState = iota // phase Running
	stateReady                   // condition Ready
	stateGone                    // deleted and gone
	numStates
)

func (s podState) String() string {
	return [...]string{"Running", "Ready", "gone"}[s]
}

// podDriver creates and deletes pods on one system and tells when they got
// where.
type podDriver interface {
	// create asks for pod name and returns once the request is answered
	// (not necessarily once the pod runs).
	create(ctx context.Context, name string) error
	// remove asks for pod name's deletion and returns once the request is
	// answered (not necessarily once the pod is gone).
	remove(ctx context.Context, name string) error
	// waitFor blocks until each named pod reached state and returns when
	// each did.
	waitFor(ctx context.Context, names []string, state podState) (map[string]time.Time, error)
}

// RunPods runs the pod benchmark on peapod (when o.Kubeconfig is set) and on
// podman (when o.Podman is set) and returns their figures. A system that
// fails is reported in the result's Errors; the error is non-nil when any
// did.
func RunPods(ctx context.Context, o PodsOptions, progress io.Writer) (*PodsResult, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	res := &PodsResult{
		Started:     time.Now(),
		Host:        hostInfo(),
		Count:       o.Count,
		DeleteCount: o.DeleteCount,
		AtOnce:      o.AtOnce,
		LoadStart:   loadAverage(),
		Pod:         "busybox:1.36, command sleep 3600, shareProcessNamespace, imagePullPolicy IfNotPresent, no probes",
	}
	logf := func(format string, args ...any) { fmt.Fprintf(progress, "bench pods: "+format+"\n", args...) }
	var errs []error
	fail := func(name string, err error) {
		if res.Errors == nil {
			res.Errors = map[string]string{}
		}
		res.Errors[name] = err.Error()
		errs = append(errs, fmt.Errorf("%s: %w", name, err))
	}
	if o.Kubeconfig != "" {
		s, err := runPeapodPods(ctx, o, logf)
		if s != nil {
			res.Systems = append(res.Systems, s)
		}
		if err != nil {
			fail("peapod", err)
		}
	}
	if o.Podman != "" && ctx.Err() == nil {
		s, err := runPodmanPods(ctx, o, logf)
		if s != nil {
			res.Systems = append(res.Systems, s)
		}
		if err != nil {
			fail("podman", err)
		}
	}
	res.DurationSeconds = time.Since(res.Started).Seconds()
	res.LoadEnd = loadAverage()
	return res, errors.Join(errs...)
}

// scenario runs the benchmark's batches against one system.
type scenario struct {
	o        PodsOptions
	d        podDriver
	hasReady bool
	// waitEach waits for each pod one at a time before creating the next;
	// false when create itself returns only once the pod runs (podman).
	waitEach bool
	logf     func(string, ...any)
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// states is what a batch waits for after creating its pods.
func (s *scenario) states() []podState {
	if s.hasReady {
		return []podState{stateRunning, stateReady}
	}
	return []podState{stateRunning}
}

// warmUp creates one pod and deletes it, so that one-time work (an image
// unpacked, podman's pause image built, caches filled) is not measured.
func (s *scenario) warmUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	n := []string{"warmup"}
	if err := s.d.create(ctx, n[0]); err != nil {
		return err
	}
	for _, st := range s.states() {
		if _, err := s.d.waitFor(ctx, n, st); err != nil {
			return err
		}
	}
	if err := s.d.remove(ctx, n[0]); err != nil {
		return err
	}
	_, err := s.d.waitFor(ctx, n, stateGone)
	return err
}

// createOneAtATime creates the pods one after another, each once the one
// before it runs (and is Ready).
func (s *scenario) createOneAtATime(ctx context.Context, pods []string) (PodsBatch, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	starts := make(map[string]time.Time, len(pods))
	var reqs []time.Duration
	for i, n := range pods {
		t0 := time.Now()
		if err := s.d.create(ctx, n); err != nil {
			return PodsBatch{}, fmt.Errorf("pod %d of %d: %w", i+1, len(pods), err)
		}
		reqs = append(reqs, time.Since(t0))
		starts[n] = t0
		if !s.waitEach {
			continue
		}
		for _, st := range s.states() {
			if _, err := s.d.waitFor(ctx, []string{n}, st); err != nil {
				return PodsBatch{}, fmt.Errorf("pod %d of %d: %w", i+1, len(pods), err)
			}
		}
	}
	b := PodsBatch{Pods: len(pods), Request: Summarize(reqs)}
	return b, s.collect(ctx, &b, pods, starts)
}

// collect waits for every pod's Running (and Ready) and fills b with the
// latencies from starts.
func (s *scenario) collect(ctx context.Context, b *PodsBatch, pods []string, starts map[string]time.Time) error {
	for _, st := range s.states() {
		at, err := s.d.waitFor(ctx, pods, st)
		if err != nil {
			return err
		}
		lat, wall := spans(starts, at)
		switch st {
		case stateRunning:
			b.Running, b.AllRunningSeconds = Summarize(lat), wall.Seconds()
		case stateReady:
			b.Ready, b.AllReadySeconds = Summarize(lat), wall.Seconds()
		}
	}
	return nil
}

// deleteOneAtATime deletes the pods one after another, each once the one
// before it is gone.
func (s *scenario) deleteOneAtATime(ctx context.Context, b *PodsBatch, pods []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	starts := make(map[string]time.Time, len(pods))
	for i, n := range pods {
		starts[n] = time.Now()
		if err := s.d.remove(ctx, n); err != nil {
			return fmt.Errorf("delete pod %d of %d: %w", i+1, len(pods), err)
		}
		if _, err := s.d.waitFor(ctx, []string{n}, stateGone); err != nil {
			return fmt.Errorf("delete pod %d of %d: %w", i+1, len(pods), err)
		}
	}
	at, err := s.d.waitFor(ctx, pods, stateGone)
	if err != nil {
		return err
	}
	lat, wall := spans(starts, at)
	b.Delete, b.AllDeletedSeconds = Summarize(lat), wall.Seconds()
	return nil
}

// atOnce sends op for every pod at the same moment (one goroutine each,
// released together) and returns when each request started and how long
// each took.
func atOnce(ctx context.Context, pods []string, op func(context.Context, string) error) (map[string]time.Time, []time.Duration, error) {
	var (
		mu     sync.Mutex
		starts = make(map[string]time.Time, len(pods))
		reqs   []time.Duration
		errs   []error
		wg     sync.WaitGroup
		gate   = make(chan struct{})
	)
	for _, n := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-gate
			t0 := time.Now()
			err := op(ctx, n)
			d := time.Since(t0)
			mu.Lock()
			defer mu.Unlock()
			starts[n] = t0
			reqs = append(reqs, d)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", n, err))
			}
		}()
	}
	close(gate)
	wg.Wait()
	return starts, reqs, errors.Join(errs...)
}

// batchAtOnce creates the pods at once, waits for them, then deletes them at
// once and waits until they are gone.
func (s *scenario) batchAtOnce(ctx context.Context, pods []string) (PodsBatch, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	starts, reqs, err := atOnce(ctx, pods, s.d.create)
	if err != nil {
		return PodsBatch{}, err
	}
	b := PodsBatch{Pods: len(pods), AtOnce: true, Request: Summarize(reqs)}
	if err := s.collect(ctx, &b, pods, starts); err != nil {
		return b, err
	}
	starts, _, err = atOnce(ctx, pods, s.d.remove)
	if err != nil {
		return b, err
	}
	at, err := s.d.waitFor(ctx, pods, stateGone)
	if err != nil {
		return b, err
	}
	lat, wall := spans(starts, at)
	b.Delete, b.AllDeletedSeconds = Summarize(lat), wall.Seconds()
	return b, nil
}

// removeAll deletes the pods at once and waits until they are gone.
func (s *scenario) removeAll(ctx context.Context, pods []string) error {
	ctx, cancel := context.WithTimeout(ctx, s.o.Timeout)
	defer cancel()
	if _, _, err := atOnce(ctx, pods, s.d.remove); err != nil {
		return err
	}
	_, err := s.d.waitFor(ctx, pods, stateGone)
	return err
}

// spans returns, for each pod in starts, the time from its start to its
// time in ends, and the time from the earliest start to the latest end.
// Pods missing from ends are left out.
func spans(starts, ends map[string]time.Time) ([]time.Duration, time.Duration) {
	var lat []time.Duration
	var first, last time.Time
	for n, t0 := range starts {
		t1, ok := ends[n]
		if !ok {
			continue
		}
		lat = append(lat, max(0, t1.Sub(t0)))
		if first.IsZero() || t0.Before(first) {
			first = t0
		}
		if t1.After(last) {
			last = t1
		}
	}
	slices.Sort(lat)
	if first.IsZero() {
		return lat, 0
	}
	return lat, max(0, last.Sub(first))
}

// run runs everything on one system: a warm-up pod, Count pods one after
// another (memory sampled while they run), their deletion one after
// another, then each batch at once. sample, if not nil, samples the node's
// memory with the given number of pods running (0: before any).
func (s *scenario) run(ctx context.Context, sys *PodsSystem, sample func(pods int) error) error {
	s.logf("%s: warm-up pod", sys.Name)
	if err := s.warmUp(ctx); err != nil {
		return fmt.Errorf("warm-up pod: %w", err)
	}
	if sample != nil {
		if err := sample(0); err != nil {
			return err
		}
	}
	pods := names("seq", s.o.Count)
	s.logf("%s: creating %d pods one after another", sys.Name, len(pods))
	b, err := s.createOneAtATime(ctx, pods)
	if err != nil {
		return fmt.Errorf("one at a time: %w", err)
	}
	msg := fmt.Sprintf("create→Running p50 %.0fms p99 %.0fms", b.Running.P50Ms, b.Running.P99Ms)
	if s.hasReady {
		msg += fmt.Sprintf("; create→Ready p50 %.0fms p99 %.0fms", b.Ready.P50Ms, b.Ready.P99Ms)
	}
	s.logf("%s: %s", sys.Name, msg)
	if sample != nil {
		if err := sample(len(pods)); err != nil {
			return err
		}
	}
	k := min(s.o.DeleteCount, len(pods))
	s.logf("%s: deleting %d of them one after another", sys.Name, k)
	if err := s.deleteOneAtATime(ctx, &b, pods[:k]); err != nil {
		return fmt.Errorf("one at a time: %w", err)
	}
	s.logf("%s: delete→gone p50 %.0fms p99 %.0fms", sys.Name, b.Delete.P50Ms, b.Delete.P99Ms)
	if rest := pods[k:]; len(rest) > 0 {
		s.logf("%s: deleting the other %d at once (not measured)", sys.Name, len(rest))
		if err := s.removeAll(ctx, rest); err != nil {
			return err
		}
	}
	sys.OneAtATime = b
	for _, n := range s.o.AtOnce {
		s.logf("%s: creating %d pods at once", sys.Name, n)
		b, err := s.batchAtOnce(ctx, names(fmt.Sprintf("at%d", n), n))
		if err != nil {
			return fmt.Errorf("%d at once: %w", n, err)
		}
		s.logf("%s: %d at once: all Running in %.2fs, all Ready in %.2fs, all deleted in %.2fs", sys.Name, n,
			b.AllRunningSeconds, max(b.AllReadySeconds, b.AllRunningSeconds), b.AllDeletedSeconds)
		sys.AtOnce = append(sys.AtOnce, b)
	}
	return nil
}

// runPeapodPods measures the peapod node behind o.Kubeconfig.
func runPeapodPods(ctx context.Context, o PodsOptions, logf func(string, ...any)) (*PodsSystem, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", o.Kubeconfig, err)
	}
	c, err := newClientset(cfg, contentProtobuf)
	if err != nil {
		return nil, err
	}
	if err := waitReady(ctx, c, time.Minute); err != nil {
		return nil, err
	}
	sys := &PodsSystem{Name: "peapod", HasReady: true, Agent: o.AgentLabel}
	if v, err := c.Discovery().ServerVersion(); err == nil {
		sys.Version = v.GitVersion
	}
	node, err := waitNodeReady(ctx, c, o.Node, 2*time.Minute)
	if err != nil {
		return sys, err
	}
	logf("peapod: node %s is Ready", node)
	ns := fmt.Sprintf("%s-%d", podsApp, time.Now().Unix())
	if err := createNamespace(ctx, c, ns, 10*time.Second); err != nil {
		return sys, err
	}
	defer func() {
		// The pods are gone unless a step failed: deleting the namespace
		// deletes what is left.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if err := c.CoreV1().Namespaces().Delete(dctx, ns, metav1.DeleteOptions{}); err != nil && !isNotFound(err) {
			logf("peapod: deleting namespace %s: %v", ns, err)
		}
	}()
	tr, err := startPodTracker(ctx, c, ns)
	if err != nil {
		return sys, err
	}
	defer tr.stop()
	d := &peapodDriver{c: c, ns: ns, tracker: tr}
	s := &scenario{o: o, d: d, hasReady: true, waitEach: true, logf: logf}
	var sample func(int) error
	if o.DataDir != "" {
		sample = func(pods int) error {
			time.Sleep(o.Settle) // let the agent's status updates and GC settle
			return sampleSystem(sys, o.AgentPID, o.DataDir, pods, logf)
		}
	}
	return sys, s.run(ctx, sys, sample)
}

// sampleSystem records sys's node memory: with pods == 0 only the agent's
// idle figures, else everything. A process count that does not match is
// noted, not fatal.
func sampleSystem(sys *PodsSystem, agentPID int, marker string, pods int, logf func(string, ...any)) error {
	var agent ProcSample
	if agentPID > 0 {
		var err error
		if agent, err = sampleProc(procRoot, agentPID); err != nil {
			return fmt.Errorf("agent (pid %d) memory: %w", agentPID, err)
		}
	}
	if pods == 0 {
		sys.Memory.AgentIdle = agent
		return nil
	}
	m, err := sampleNodeMemory(procRoot, marker, pods)
	m.AgentIdle, m.Agent = sys.Memory.AgentIdle, agent
	sys.Memory = m
	if err != nil {
		sys.MemoryNote = err.Error()
		logf("%s: memory: %v", sys.Name, err)
	}
	logf("%s: memory with %d pods: conmons %.1f MB PSS, infra %.1f MB PSS, agent RSS %.1f MB; %.2f MB per pod",
		sys.Name, pods, megabytes(float64(m.Conmon.PSSKiB)), megabytes(float64(m.Infra.PSSKiB)),
		megabytes(float64(agent.RSSKiB)), megabytes(m.PerPodKiB()))
	return nil
}

// waitNodeReady waits until node (any node when empty) is Ready without the
// not-ready taint, and returns its name.
func waitNodeReady(ctx context.Context, c kubernetes.Interface, node string, timeout time.Duration) (string, error) {
	var name string
	var last error
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			last = err
			return false, nil
		}
		last = fmt.Errorf("no Ready node among %d", len(l.Items))
		for _, n := range l.Items {
			if node != "" && n.Name != node {
				continue
			}
			if nodeReady(&n) {
				name = n.Name
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil && last != nil {
		return "", fmt.Errorf("waiting for a Ready node: %w", last)
	}
	return name, err
}

func nodeReady(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == corev1.TaintNodeNotReady || t.Key == corev1.TaintNodeUnschedulable {
			return false
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
