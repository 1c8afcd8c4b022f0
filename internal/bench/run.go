package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options are `peapod bench api`'s settings.
type Options struct {
	// Kubeconfig names the server to measure; empty starts PeapodBin's
	// server in a temporary data dir and stops it at the end.
	Kubeconfig string
	// ServerPID is the API server's process, for its RSS; 0 when unknown
	// (known anyway when the benchmark started the server).
	ServerPID int
	// StorePID is a separate store process (etcd), for its RSS; 0 for none.
	StorePID int
	// PeapodBin is the peapod binary to start; empty means this one.
	PeapodBin string
	// Label names the run in reports; empty means "peapod" for a server the
	// benchmark started and the server's address otherwise.
	Label string

	Creates   int // pods created in each create scenario
	Clients   int // concurrent clients in the parallel scenarios
	Pods      int // pods in the LIST namespace
	ListRuns  int // LISTs per content type
	Watchers  int
	WatchPods int
	// GetInterval is the pause between the prober's GETs.
	GetInterval time.Duration
	// Keep leaves the namespaces (and a started server's data dir) behind.
	Keep bool
	// StartTimeout bounds a started server's start-up.
	StartTimeout time.Duration
}

// DefaultOptions are the defaults of `peapod bench api`.
func DefaultOptions() Options {
	return Options{
		Creates:      2000,
		Clients:      16,
		Pods:         10000,
		ListRuns:     5,
		Watchers:     100,
		WatchPods:    1000,
		GetInterval:  5 * time.Millisecond,
		StartTimeout: 2 * time.Minute,
	}
}

func (o Options) validate() error {
	for _, v := range []struct {
		flag string
		n    int
	}{
		{"--creates", o.Creates}, {"--clients", o.Clients}, {"--pods", o.Pods},
		{"--list-runs", o.ListRuns}, {"--watchers", o.Watchers}, {"--watch-pods", o.WatchPods},
	} {
		if v.n < 1 {
			return fmt.Errorf("%s %d: must be at least 1", v.flag, v.n)
		}
	}
	if o.ServerPID < 0 || o.StorePID < 0 {
		return errors.New("--server-pid and --store-pid must be process ids")
	}
	return nil
}

// runner holds one run's state.
type runner struct {
	o        Options
	progress io.Writer
	cfg      *rest.Config
	admin    *kubernetes.Clientset // setup, deletions, cleanup
	parallel []*kubernetes.Clientset
	res      *Result
	// namespaces made by this run, for cleanup, and the pods in each.
	namespaces []string
	podCount   map[string]int
	nsCreate1  string
	nsCreateN  string
	nsList     string
	nsWatch    string
}

// Run runs the benchmark and returns its result; progress gets a line per
// step. When only the final cleanup fails it returns both the result and the
// error.
func Run(ctx context.Context, o Options, progress io.Writer) (res *Result, err error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	kubeconfig := o.Kubeconfig
	label := o.Label
	var server string
	if kubeconfig == "" {
		bin := o.PeapodBin
		if bin == "" {
			if bin, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("finding the peapod binary (use --peapod): %w", err)
			}
		}
		srv, err := startServer(ctx, bin, o.StartTimeout, progress)
		if err != nil {
			return nil, err
		}
		defer func() {
			fmt.Fprintf(progress, "bench: stopping the server (pid %d)\n", srv.pid())
			srv.stop(o.Keep, progress)
		}()
		kubeconfig = srv.kubeconfig
		o.ServerPID = srv.pid()
		server = bin + " server --disable-agent --disable-scheduler (started by the benchmark)"
		if label == "" {
			label = "peapod"
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", kubeconfig, err)
	}
	if server == "" {
		server = cfg.Host
	}
	if label == "" {
		label = cfg.Host
	}

	r := &runner{o: o, progress: progress, cfg: cfg, podCount: map[string]int{}}
	r.res = &Result{
		Label:  label,
		Server: server,
		Host:   hostInfo(),
		Config: Config{
			Creates: o.Creates, Clients: o.Clients, ListPods: o.Pods, ListRuns: o.ListRuns,
			Watchers: o.Watchers, WatchPods: o.WatchPods,
		},
	}
	if r.admin, err = newClientset(cfg, contentProtobuf); err != nil {
		return nil, err
	}
	if err := waitReady(ctx, r.admin, 30*time.Second); err != nil {
		return nil, err
	}
	if v, err := r.admin.Discovery().ServerVersion(); err == nil {
		r.res.ServerVersion = v.GitVersion
	}
	start := time.Now()
	r.res.Started = start
	r.res.LoadStart = loadAverage()
	defer func() {
		if o.Keep {
			fmt.Fprintf(progress, "bench: keeping namespaces %s\n", strings.Join(r.namespaces, ", "))
			return
		}
		// With a server of its own the benchmark removes the whole data dir.
		if o.Kubeconfig == "" {
			return
		}
		// Clean up even when interrupted.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if cerr := r.cleanup(cctx); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"setup", r.setup},
		{"create, 1 client", r.createSerial},
		{"create, parallel clients", r.createParallel},
		{"deletecollection", r.deleteCollection},
		{"fill", r.fill},
		{"list", r.list},
		{"watch", r.watch},
	}
	for _, s := range steps {
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	r.sampleMemory(memEnd, r.totalPods())
	r.res.DurationSeconds = time.Since(start).Seconds()
	r.res.LoadEnd = loadAverage()
	return r.res, nil
}

// serverCPU is the CPU time the server and its separate store have used so
// far; 0 when neither PID is known.
func (r *runner) serverCPU() time.Duration {
	var total time.Duration
	for _, pid := range []int{r.o.ServerPID, r.o.StorePID} {
		if pid == 0 {
			continue
		}
		d, err := ReadProcCPU(pid)
		if err != nil {
			r.logf("reading pid %d CPU time: %v", pid, err)
			continue
		}
		total += d
	}
	return total
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.progress, "bench: "+format+"\n", args...)
}

func (r *runner) totalPods() int {
	n := 0
	for _, c := range r.podCount {
		n += c
	}
	return n
}

// sampleMemory records the server's and store's RSS, if their PIDs are known.
func (r *runner) sampleMemory(when string, pods int) {
	if r.o.ServerPID == 0 && r.o.StorePID == 0 {
		return
	}
	s := MemorySample{When: when, Pods: pods}
	if r.o.ServerPID != 0 {
		m, err := ReadProcMemory(r.o.ServerPID)
		if err != nil {
			r.logf("reading server (pid %d) memory: %v", r.o.ServerPID, err)
		}
		s.ServerRSSKiB, s.ServerHWMKiB, s.ServerAnonKiB = m.RSSKiB, m.HWMKiB, m.AnonKiB
	}
	if r.o.StorePID != 0 {
		m, err := ReadProcMemory(r.o.StorePID)
		if err != nil {
			r.logf("reading store (pid %d) memory: %v", r.o.StorePID, err)
		}
		s.StoreRSSKiB, s.StoreHWMKiB = m.RSSKiB, m.HWMKiB
	}
	msg := fmt.Sprintf("memory %s (%d pods):", when, pods)
	if r.o.ServerPID != 0 {
		msg += fmt.Sprintf(" server RSS %.1f MiB", float64(s.ServerRSSKiB)/1024)
	}
	if r.o.StorePID != 0 {
		msg += fmt.Sprintf(" store RSS %.1f MiB", float64(s.StoreRSSKiB)/1024)
	}
	r.logf("%s", msg)
	r.res.Memory = append(r.res.Memory, s)
}

func (r *runner) setup(ctx context.Context) error {
	r.sampleMemory(memIdle, 0)
	id := make([]byte, 3)
	if _, err := rand.Read(id); err != nil {
		return err
	}
	prefix := "peapod-bench-" + hex.EncodeToString(id)
	r.nsCreate1, r.nsCreateN = prefix+"-create1", prefix+"-create"+strconv.Itoa(r.o.Clients)
	r.nsList, r.nsWatch = prefix+"-list", prefix+"-watch"
	r.namespaces = []string{r.nsCreate1, r.nsCreateN, r.nsList, r.nsWatch}
	r.logf("creating namespaces %s and their default ServiceAccounts", strings.Join(r.namespaces, ", "))
	errs := make(chan error, len(r.namespaces))
	for _, ns := range r.namespaces {
		go func() { errs <- createNamespace(ctx, r.admin, ns, 3*time.Second) }()
	}
	var err error
	for range r.namespaces {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return err
	}
	r.logf("opening %d client connections", r.o.Clients)
	r.parallel, err = newClientsets(ctx, r.cfg, r.o.Clients, contentProtobuf)
	return err
}

// createPods creates n pods named prefix-i in ns, handing the indices out to
// clients, and times every create. created, if not nil, is told when each
// create returned. It stops at the first error.
func createPods(ctx context.Context, clients []*kubernetes.Clientset, ns, prefix string, n int, created func(i int, t time.Time)) (Throughput, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	lat := make([][]time.Duration, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	for w, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, n/len(clients)+1)
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					break
				}
				t0 := time.Now()
				_, err := c.CoreV1().Pods(ns).Create(ctx, benchPod(podName(prefix, i), i), metav1.CreateOptions{})
				t1 := time.Now()
				if err != nil {
					cancel(fmt.Errorf("create pod %s/%s: %w", ns, podName(prefix, i), err))
					break
				}
				l = append(l, t1.Sub(t0))
				if created != nil {
					created(i, t1)
				}
			}
			lat[w] = l
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err := context.Cause(ctx); err != nil {
		return Throughput{}, err
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	return Throughput{
		Clients:   len(clients),
		Count:     n,
		Seconds:   elapsed.Seconds(),
		PerSecond: rate(n, elapsed),
		Latency:   Summarize(all),
	}, nil
}

func (r *runner) logThroughput(what string, t Throughput) {
	msg := fmt.Sprintf("%s: %d in %.2fs = %.0f/s (p50 %.2fms, p99 %.2fms)", what, t.Count, t.Seconds, t.PerSecond, t.Latency.P50Ms, t.Latency.P99Ms)
	if ms, ok := t.cpuPerRequest(); ok {
		msg += fmt.Sprintf(", server CPU %.2fms per request", ms)
	}
	r.logf("%s", msg)
}

func (r *runner) createSerial(ctx context.Context) error {
	c, err := newClientsets(ctx, r.cfg, 1, contentProtobuf)
	if err != nil {
		return err
	}
	r.logf("creating %d pods with 1 client", r.o.Creates)
	cpu0 := r.serverCPU()
	t, err := createPods(ctx, c, r.nsCreate1, "pod", r.o.Creates, nil)
	t.ServerCPUSeconds = (r.serverCPU() - cpu0).Seconds()
	r.podCount[r.nsCreate1] = t.Count
	if err != nil {
		return err
	}
	r.res.CreateSerial = t
	r.logThroughput("created", t)
	return nil
}

func (r *runner) createParallel(ctx context.Context) error {
	// The GET prober: its own connection, one pod, GETs in a loop.
	probe, err := newClientset(r.cfg, contentProtobuf)
	if err != nil {
		return err
	}
	const probeName = "probe"
	if _, err := probe.CoreV1().Pods(r.nsCreateN).Create(ctx, benchPod(probeName, 0), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the GET probe pod: %w", err)
	}
	r.podCount[r.nsCreateN] = 1
	if _, err := probe.CoreV1().Pods(r.nsCreateN).Get(ctx, probeName, metav1.GetOptions{}); err != nil {
		return err
	}
	stop := make(chan struct{})
	probeDone := make(chan error, 1)
	var gets []time.Duration
	go func() {
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-stop:
				probeDone <- nil
				return
			case <-t.C:
			}
			t0 := time.Now()
			_, err := probe.CoreV1().Pods(r.nsCreateN).Get(ctx, probeName, metav1.GetOptions{})
			if err != nil {
				probeDone <- fmt.Errorf("GET probe pod: %w", err)
				return
			}
			gets = append(gets, time.Since(t0))
			t.Reset(r.o.GetInterval)
		}
	}()

	r.logf("creating %d pods with %d clients, GETting one pod every %s meanwhile", r.o.Creates, r.o.Clients, r.o.GetInterval)
	cpu0 := r.serverCPU()
	t, err := createPods(ctx, r.parallel, r.nsCreateN, "pod", r.o.Creates, nil)
	t.ServerCPUSeconds = (r.serverCPU() - cpu0).Seconds()
	close(stop)
	perr := <-probeDone
	r.podCount[r.nsCreateN] += t.Count
	if err != nil {
		return err
	}
	if perr != nil {
		return perr
	}
	r.res.CreateParallel = t
	r.res.GetDuringLoad = Summarize(gets)
	r.logThroughput("created", t)
	r.logf("GET during load: %d GETs, p50 %.2fms, p99 %.2fms", len(gets), r.res.GetDuringLoad.P50Ms, r.res.GetDuringLoad.P99Ms)
	return nil
}

// deleteCollection deletes the create scenarios' pods so that the server holds
// only the LIST namespace's pods when its memory is sampled.
func (r *runner) deleteCollection(ctx context.Context) error {
	n := r.podCount[r.nsCreate1] + r.podCount[r.nsCreateN]
	r.logf("deleting the %d pods created so far (deletecollection, %d calls at a time)", n, 4)
	start := time.Now()
	errs := make(chan error, 2)
	for _, ns := range []string{r.nsCreate1, r.nsCreateN} {
		go func() { errs <- deletePods(ctx, r.admin, ns, r.o.Creates, 2) }()
	}
	err := errors.Join(<-errs, <-errs)
	elapsed := time.Since(start)
	if err != nil {
		return err
	}
	r.podCount[r.nsCreate1], r.podCount[r.nsCreateN] = 0, 0
	r.res.DeleteCollection = Throughput{Clients: 1, Count: n, Seconds: elapsed.Seconds(), PerSecond: rate(n, elapsed)}
	r.logf("deleted %d pods in %.2fs = %.0f/s", n, elapsed.Seconds(), r.res.DeleteCollection.PerSecond)
	return nil
}

func (r *runner) fill(ctx context.Context) error {
	r.logf("creating %d pods in %s with %d clients", r.o.Pods, r.nsList, r.o.Clients)
	t, err := createPods(ctx, r.parallel, r.nsList, "pod", r.o.Pods, nil)
	r.podCount[r.nsList] = t.Count
	if err != nil {
		return err
	}
	r.res.Fill = t
	r.logThroughput("created", t)
	// Let the server settle (watch cache, GC) before sampling its memory.
	runtime.GC()
	time.Sleep(2 * time.Second)
	r.sampleMemory(memLoaded, r.totalPods())
	return nil
}

func (r *runner) list(ctx context.Context) error {
	variants := []struct {
		contentType, resourceVersion string
		median, min, first           *float64
	}{
		// A consistent read: what kubectl (paginated, though) and a
		// controller's fresh LIST do. Served from the watch cache when the
		// store supports progress notifications, else from the store.
		{contentProtobuf, "", &r.res.List.ProtobufMedianMs, &r.res.List.ProtobufMinMs, &r.res.List.ProtobufFirstMs},
		{contentJSON, "", &r.res.List.JSONMedianMs, &r.res.List.JSONMinMs, nil},
		// resourceVersion=0: any recent state, from the watch cache; what an
		// informer's first LIST asks for.
		{contentProtobuf, "0", &r.res.List.ProtobufRV0MedianMs, &r.res.List.ProtobufRV0MinMs, nil},
	}
	for _, v := range variants {
		c, err := newClientset(r.cfg, v.contentType)
		if err != nil {
			return err
		}
		if err := warmUp(ctx, c); err != nil {
			return err
		}
		var times []time.Duration
		for range r.o.ListRuns {
			runtime.GC() // keep the client's garbage out of the next timing
			t0 := time.Now()
			l, err := c.CoreV1().Pods(r.nsList).List(ctx, metav1.ListOptions{ResourceVersion: v.resourceVersion})
			d := time.Since(t0)
			if err != nil {
				return fmt.Errorf("LIST pods in %s (%s): %w", r.nsList, v.contentType, err)
			}
			if len(l.Items) != r.o.Pods {
				return fmt.Errorf("LIST pods in %s returned %d pods, want %d", r.nsList, len(l.Items), r.o.Pods)
			}
			times = append(times, d)
		}
		med, low := Median(times), Percentile(times, 0)
		r.logf("LIST %d pods, %s, resourceVersion=%q: median %.1fms, min %.1fms", r.o.Pods, v.contentType, v.resourceVersion, ms(med), ms(low))
		*v.median, *v.min = ms(med), ms(low)
		if v.first != nil {
			*v.first = ms(times[0])
		}
	}
	r.res.List.Items = r.o.Pods
	return nil
}

func (r *runner) watch(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	W, N := r.o.Watchers, r.o.WatchPods
	r.logf("opening %d watches on pods in %s", W, r.nsWatch)
	l, err := r.admin.CoreV1().Pods(r.nsWatch).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return err
	}
	rv := l.ResourceVersion
	streams := make([]*watchStream, W)
	defer func() {
		for _, s := range streams {
			if s != nil {
				_ = s.Close()
			}
		}
	}()
	for i := range streams {
		c, err := newClientset(r.cfg, contentProtobuf)
		if err != nil {
			return err
		}
		if streams[i], err = openPodWatch(ctx, c, r.nsWatch, rv); err != nil {
			return fmt.Errorf("watch %d: %w", i, err)
		}
	}

	// received[w][i] is when watcher w got pod i's ADDED event (UnixNano).
	received := make([][]int64, W)
	watchErrs := make(chan error, W)
	var watchers sync.WaitGroup
	for w, s := range streams {
		received[w] = make([]int64, N)
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			got := 0
			for got < N {
				typ, name, err := s.next()
				now := time.Now().UnixNano()
				if err != nil {
					if ctx.Err() == nil {
						watchErrs <- fmt.Errorf("watcher %d after %d events: %w", w, got, err)
					}
					return
				}
				if typ != watch.Added {
					continue
				}
				i, ok := watchPodIndex(name, N)
				if !ok || received[w][i] != 0 {
					continue
				}
				received[w][i] = now
				got++
			}
		}()
	}
	allReceived := make(chan struct{})
	go func() { watchers.Wait(); close(allReceived) }()

	createdAt := make([]int64, N)
	r.logf("creating %d pods with %d clients while %d watchers watch", N, r.o.Clients, W)
	start := time.Now()
	t, err := createPods(ctx, r.parallel, r.nsWatch, "pod", N, func(i int, t time.Time) { createdAt[i] = t.UnixNano() })
	r.podCount[r.nsWatch] = t.Count
	if err != nil {
		return err
	}
	select {
	case <-allReceived:
	case err := <-watchErrs:
		return err
	case <-time.After(2 * time.Minute):
		return fmt.Errorf("not every watcher got all %d events within 2 minutes", N)
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-watchErrs:
		return err
	default:
	}

	var last, lastCreate int64
	for _, c := range createdAt {
		lastCreate = max(lastCreate, c)
	}
	delays := make([]time.Duration, 0, W*N)
	for _, rw := range received {
		for i, at := range rw {
			last = max(last, at)
			delays = append(delays, max(0, time.Duration(at-createdAt[i])))
		}
	}
	total := time.Duration(last - start.UnixNano())
	r.res.Watch = Watch{
		Watchers:             W,
		Pods:                 N,
		Events:               W * N,
		CreateSeconds:        t.Seconds,
		LastEventSeconds:     total.Seconds(),
		EventsPerSecond:      rate(W*N, total),
		LagAfterLastCreateMs: ms(max(0, time.Duration(last-lastCreate))),
		Delivery:             Summarize(delays),
	}
	r.logf("watch: %d events to %d watchers in %.2fs = %.0f events/s; creates took %.2fs, last event %.1fms after the last create",
		W*N, W, total.Seconds(), r.res.Watch.EventsPerSecond, t.Seconds, r.res.Watch.LagAfterLastCreateMs)
	return nil
}

// watchPodIndex parses the index out of a watch scenario pod name ("pod-000042").
func watchPodIndex(name string, n int) (int, bool) {
	s, ok := strings.CutPrefix(name, "pod-")
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(s)
	if err != nil || i < 0 || i >= n {
		return 0, false
	}
	return i, true
}

// cleanup deletes the run's pods (deletecollection) and namespaces. Pods go
// first and explicitly: a server without a namespace controller (a bare
// kube-apiserver) never empties a terminating namespace.
func (r *runner) cleanup(ctx context.Context) error {
	if len(r.namespaces) == 0 {
		return nil
	}
	r.logf("cleaning up: deleting %d pods and namespaces %s", r.totalPods(), strings.Join(r.namespaces, ", "))
	var wg sync.WaitGroup
	errs := make([]error, len(r.namespaces))
	for k, ns := range r.namespaces {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if n := r.podCount[ns]; n > 0 {
				errs[k] = deletePods(ctx, r.admin, ns, n, 2)
			}
			// The GET probe pod carries batch 0's label, so it went with batch 0.
			err := r.admin.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{})
			if err != nil && !isNotFound(err) {
				errs[k] = errors.Join(errs[k], fmt.Errorf("delete namespace %s: %w", ns, err))
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}
