package e2e

// kill -9 under concurrent write load: every acknowledged write survives intact,
// nothing that was never sent appears, nothing is garbled, and the store opens
// again without any repair.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

const (
	crashWriters       = 8
	crashAckedPerCycle = 300
	crashCycles        = 3
	crashNamespace     = "crash"
)

// crashPayload is what a ConfigMap named name must contain: derived from the
// name, long enough to span more than one small write.
func crashPayload(name string) map[string]string {
	return map[string]string{
		"name":    name,
		"payload": strings.Repeat(name+";", 40),
	}
}

// crashLedger records, across kill cycles, which creates were sent and which
// were acknowledged.
type crashLedger struct {
	mu       sync.Mutex
	sent     map[string]bool // request issued (acknowledged or not)
	acked    map[string]bool // the API answered 201 Created
	inFlight map[string]bool // sent, no answer before the kill
}

func (l *crashLedger) send(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sent[name] = true
}

func (l *crashLedger) ack(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acked[name] = true
}

func (l *crashLedger) lost(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.inFlight[name] = true
}

// crashLoad runs the writers of one cycle until the server dies under them.
type crashLoad struct {
	ledger     *crashLedger
	cycle      int
	acked      atomic.Int64
	maxRV      atomic.Uint64 // highest resourceVersion acknowledged
	killing    atomic.Bool
	wg         sync.WaitGroup
	mu         sync.Mutex
	unexpected []error // failures before the kill
	afterKill  []error // failures once the kill or stop was under way
}

func (c *crashLoad) run(ctx context.Context, cs kubernetes.Interface, writer int) {
	defer c.wg.Done()
	cms := cs.CoreV1().ConfigMaps(crashNamespace)
	for i := 0; ; i++ {
		if ctx.Err() != nil {
			return
		}
		name := fmt.Sprintf("c%d-w%d-%05d", c.cycle, writer, i)
		c.ledger.send(name)
		created, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: crashPayload(name)}, metav1.CreateOptions{})
		if err == nil {
			c.ledger.ack(name)
			c.acked.Add(1)
			if rv, perr := strconv.ParseUint(created.ResourceVersion, 10, 64); perr == nil {
				crashRaise(&c.maxRV, rv)
			}
			continue
		}
		c.ledger.lost(name)
		c.mu.Lock()
		if c.killing.Load() {
			c.afterKill = append(c.afterKill, fmt.Errorf("create %s: %w", name, err))
		} else {
			c.unexpected = append(c.unexpected, fmt.Errorf("create %s before the kill: %w", name, err))
		}
		c.mu.Unlock()
		return
	}
}

// crashRaise sets v to rv if rv is higher.
func crashRaise(v *atomic.Uint64, rv uint64) {
	for {
		old := v.Load()
		if rv <= old || v.CompareAndSwap(old, rv) {
			return
		}
	}
}

// crashSetup creates the namespace the writers write to and an empty ledger.
func crashSetup(t *testing.T, ctx context.Context, s *Server) *crashLedger {
	t.Helper()
	if _, err := s.Client().CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: crashNamespace}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return &crashLedger{sent: map[string]bool{}, acked: map[string]bool{}, inFlight: map[string]bool{}}
}

// startCrashLoad starts crashWriters writers of cycle against s, each create
// bounded at 15 s; stop cancels them.
func startCrashLoad(ctx context.Context, s *Server, ledger *crashLedger, cycle int) (load *crashLoad, stop context.CancelFunc) {
	cfg := s.RESTConfig()
	cfg.Timeout = 15 * time.Second
	cs := kubernetes.NewForConfigOrDie(cfg)
	load = &crashLoad{ledger: ledger, cycle: cycle}
	loadCtx, stop := context.WithCancel(ctx)
	for w := 0; w < crashWriters; w++ {
		load.wg.Add(1)
		go load.run(loadCtx, cs, w)
	}
	return load, stop
}

// waitAcked waits until crashAckedPerCycle creates are acknowledged, or one
// failed (reported by waitStopped). On failure it stops the writers.
func (c *crashLoad) waitAcked(t *testing.T, stop context.CancelFunc) {
	t.Helper()
	defer func() {
		if t.Failed() {
			stop()
			c.wg.Wait()
		}
	}()
	Eventually(t, 30*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if n := c.acked.Load(); len(c.unexpected) == 0 && n < crashAckedPerCycle {
			return fmt.Errorf("cycle %d: %d creates acknowledged so far", c.cycle, n)
		}
		return nil
	})
}

// waitStopped waits until every writer has given up on the server that went
// away (by then each has seen an error), then wants no failure from before.
func (c *crashLoad) waitStopped(t *testing.T, stop context.CancelFunc, timeout time.Duration) {
	t.Helper()
	waited := make(chan struct{})
	go func() { c.wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(timeout):
		stop()
		t.Fatalf("cycle %d: writers still blocked %s after the server went away", c.cycle, timeout)
	}
	stop()
	if len(c.unexpected) > 0 {
		t.Fatalf("cycle %d: writes failed while the server was up: %v", c.cycle, errors.Join(c.unexpected...))
	}
}

var crashNameRE = regexp.MustCompile(`^c[0-9]+-w[0-9]+-[0-9]{5}$`)

func TestCrashKill9UnderWriteLoad(t *testing.T) {
	testStart := time.Now()
	s := StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ledger := crashSetup(t, ctx, s)

	for cycle := 0; cycle < crashCycles; cycle++ {
		load, stopLoad := startCrashLoad(ctx, s, ledger, cycle)
		cycleStart := time.Now()
		load.waitAcked(t, stopLoad)
		load.killing.Store(true)
		s.Kill()
		killedAt := load.acked.Load()
		load.waitStopped(t, stopLoad, 20*time.Second)
		t.Logf("cycle %d: killed with %d acknowledged creates after %s (%.0f/s)", cycle, killedAt,
			time.Since(cycleStart).Round(time.Millisecond), float64(killedAt)/time.Since(cycleStart).Seconds())

		restart := time.Now()
		s.Start()
		t.Logf("cycle %d: restarted in %s", cycle, time.Since(restart).Round(time.Millisecond))
		crashCheckLog(t, s.Logs())
		crashVerify(t, ctx, s, ledger)
		// The revision counter did not go back: a new write is numbered above
		// everything acknowledged before the kill.
		probe, err := s.Client().CoreV1().ConfigMaps(metav1.NamespaceDefault).Create(ctx,
			&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("crash-probe-%d", cycle)}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("cycle %d: create after restart: %v", cycle, err)
		}
		if rv := infRV(t, probe.ResourceVersion); rv <= load.maxRV.Load() {
			t.Errorf("cycle %d: first write after the kill got resourceVersion %d, not above the %d acknowledged before it", cycle, rv, load.maxRV.Load())
		}
	}
	t.Logf("%d kill cycles in %s", crashCycles, time.Since(testStart).Round(time.Millisecond))
}

// crashCheckLog wants a plain start: no panics, no repair or recovery of the
// store, no errors from the store.
func crashCheckLog(t *testing.T, logs string) {
	t.Helper()
	for _, line := range strings.Split(logs, "\n") {
		l := strings.ToLower(line)
		bad := strings.Contains(l, "panic") || strings.Contains(l, "repair") || strings.Contains(l, "corrupt") ||
			strings.Contains(l, "recover") || strings.Contains(l, "truncat") ||
			(strings.Contains(l, "level=error") && (strings.Contains(l, "component=store") || strings.Contains(l, "component=etcd-api")))
		if bad {
			t.Errorf("server log after the kill: %s", line)
		}
	}
	if !strings.Contains(logs, "opened bolt store") {
		t.Errorf("server log does not show the store opening:\n%s", tail(logs, 20))
	}
}

// crashVerify checks the store against the ledger: every acknowledged create is
// there with its exact payload; everything there was sent, and is intact. It
// returns how many creates are there that were sent but never answered.
func crashVerify(t *testing.T, ctx context.Context, s *Server, l *crashLedger) (unanswered int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	cs := s.Client()
	present := map[string]corev1.ConfigMap{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		page, err := cs.CoreV1().ConfigMaps(crashNamespace).List(ctx, opts)
		if err != nil {
			t.Fatalf("list after restart: %v", err)
		}
		for _, cm := range page.Items {
			if _, dup := present[cm.Name]; dup {
				t.Errorf("%s listed twice", cm.Name)
			}
			present[cm.Name] = cm
		}
		if opts.Continue = page.Continue; opts.Continue == "" {
			break
		}
	}
	missing, survivedInFlight := 0, 0
	for name := range l.acked {
		cm, ok := present[name]
		if !ok {
			missing++
			if missing <= 10 {
				t.Errorf("acknowledged create %s is missing after kill -9", name)
			}
			continue
		}
		crashCheckData(t, cm)
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged creates lost", missing, len(l.acked))
	}
	for name, cm := range present {
		if name == "kube-root-ca.crt" {
			continue
		}
		switch {
		case l.acked[name]:
		case l.inFlight[name]:
			survivedInFlight++
			crashCheckData(t, cm)
		case l.sent[name]:
			t.Errorf("%s exists, but its create was neither acknowledged nor in flight at a kill", name)
		default:
			t.Errorf("%s exists but was never sent (data %q)", name, cm.Data)
		}
	}
	// Single-object reads (served by the store, not the watch cache) agree.
	checked := 0
	for name := range l.acked {
		if checked == 100 {
			break
		}
		checked++
		cm, err := cs.CoreV1().ConfigMaps(crashNamespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("get %s: %v", name, err)
			continue
		}
		crashCheckData(t, *cm)
	}
	t.Logf("after restart: %d present, %d acknowledged (all present: %v), %d of %d in-flight creates persisted",
		len(present)-1, len(l.acked), missing == 0, survivedInFlight, len(l.inFlight))
	return survivedInFlight
}

func crashCheckData(t *testing.T, cm corev1.ConfigMap) {
	t.Helper()
	want := crashPayload(cm.Name)
	if !crashNameRE.MatchString(cm.Name) || len(cm.Data) != len(want) || cm.Data["name"] != want["name"] || cm.Data["payload"] != want["payload"] || len(cm.BinaryData) != 0 {
		t.Errorf("%s is garbled after kill -9: data %q", cm.Name, cm.Data)
	}
	if cm.UID == "" || cm.ResourceVersion == "" || cm.CreationTimestamp.IsZero() {
		t.Errorf("%s has incomplete metadata after kill -9: uid %q rv %q created %v", cm.Name, cm.UID, cm.ResourceVersion, cm.CreationTimestamp)
	}
}

// TestStopSIGTERMUnderWriteLoad: SIGTERM while writers create. The server
// drains the requests in flight and ends its watches before it closes its
// store and exits (an open watch does not hold it up), so every create it
// accepted is answered: none is cut off (unexpected EOF) or fails
// with a server error (5xx) from a store closed under it, and none is stored
// without an answer. Later requests are refused. The exit is clean, and every
// acknowledged create is there after a restart.
func TestStopSIGTERMUnderWriteLoad(t *testing.T) {
	s := StartServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ledger := crashSetup(t, ctx, s)
	load, stopLoad := startCrashLoad(ctx, s, ledger, 0)
	defer stopLoad()
	load.waitAcked(t, stopLoad)
	// An open watch must not hold the stop up: the server ends it.
	w, err := s.Client().CoreV1().ConfigMaps(crashNamespace).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("watch: %v", err)
	}
	defer w.Stop()
	load.killing.Store(true)
	s.Stop()
	stoppedAt := load.acked.Load()
	load.waitStopped(t, stopLoad, 30*time.Second)
	if exited, code := s.Exited(); !exited || code != 0 {
		t.Fatalf("after SIGTERM: exited=%v code=%d, want a clean exit 0; log tail:\n%s", exited, code, tail(s.Logs(), 30))
	}
	for _, err := range load.afterKill {
		var status apierrors.APIStatus
		if errors.As(err, &status) && status.Status().Code >= 500 {
			t.Errorf("a writer got a server error while the server stopped: %v", err)
		}
		if errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "unexpected EOF") {
			t.Errorf("a create was cut off while the server stopped: %v", err)
		}
	}
	crashCheckLog(t, s.Logs())
	if strings.Contains(s.Logs(), "API server still stopping") {
		t.Errorf("the API server did not finish stopping on its own; the store was closed under it:\n%s", tail(s.Logs(), 20))
	}
	t.Logf("stopped with %d acknowledged creates; the writers then saw: %v", stoppedAt, errors.Join(load.afterKill...))
	for open := true; open; {
		select {
		case _, open = <-w.ResultChan():
		case <-time.After(10 * time.Second):
			t.Fatalf("the watch is still open 10s after the server exited")
		}
	}

	s.Start()
	if n := crashVerify(t, ctx, s, ledger); n > 0 {
		t.Errorf("%d creates were stored but never answered: a SIGTERM must drain the requests in flight", n)
	}
}
