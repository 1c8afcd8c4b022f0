package e2e

// client-go against peapod: shared informers (initial list, watch events, resync),
// recovery from 410 Gone, list paging with limit/continue, and watch bookmarks
// (periodic, and the end-of-initial-events bookmark of a watch-list).

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// TestInformer runs the client-go scenarios against one server, each in its own
// namespace.
func TestInformer(t *testing.T) {
	s := StartServer(t)
	cs := s.Client()
	t.Run("EventsAndResync", func(t *testing.T) { testInformerEventsAndResync(t, cs) })
	t.Run("GoneAndRecovery", func(t *testing.T) { testInformerGoneAndRecovery(t, s, cs) })
	t.Run("Paging", func(t *testing.T) { testInformerPaging(t, cs) })
	t.Run("Bookmarks", func(t *testing.T) { testInformerBookmarks(t, cs) })
}

// infCtx is a context bounded by the test's lifetime and a deadline.
func infCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// infNamespace creates a namespace for one scenario.
func infNamespace(t *testing.T, cs kubernetes.Interface, name string) string {
	t.Helper()
	ctx := infCtx(t, 30*time.Second)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

func infConfigMap(name string, lbls map[string]string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Data: data}
}

func infRV(t *testing.T, rv string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		t.Fatalf("resourceVersion %q is not a number: %v", rv, err)
	}
	return n
}

// infEvent is one handler call seen by an informer.
type infEvent struct {
	kind      string // add, update, resync, delete
	name      string
	rv        string
	oldRV     string
	data      map[string]string
	initial   bool // add from the initial list
	tombstone bool // delete delivered as DeletedFinalStateUnknown
}

// infRecorder records informer handler calls.
type infRecorder struct {
	mu     sync.Mutex
	events []infEvent
}

func (r *infRecorder) add(e infEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *infRecorder) snapshot() []infEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]infEvent(nil), r.events...)
}

func (r *infRecorder) handler() cache.ResourceEventHandler {
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj interface{}, initial bool) {
			cm := obj.(*corev1.ConfigMap)
			r.add(infEvent{kind: "add", name: cm.Name, rv: cm.ResourceVersion, data: cm.Data, initial: initial})
		},
		UpdateFunc: func(oldObj, newObj interface{}) {
			o, n := oldObj.(*corev1.ConfigMap), newObj.(*corev1.ConfigMap)
			kind := "update"
			if o.ResourceVersion == n.ResourceVersion {
				kind = "resync"
			}
			r.add(infEvent{kind: kind, name: n.Name, rv: n.ResourceVersion, oldRV: o.ResourceVersion, data: n.Data})
		},
		DeleteFunc: func(obj interface{}) {
			e := infEvent{kind: "delete"}
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				e.tombstone = true
				obj = tomb.Obj
			}
			cm := obj.(*corev1.ConfigMap)
			e.name, e.rv = cm.Name, cm.ResourceVersion
			r.add(e)
		},
	}
}

// of returns the non-resync events for one object, in order.
func (r *infRecorder) of(name string) []infEvent {
	var out []infEvent
	for _, e := range r.snapshot() {
		if e.name == name && e.kind != "resync" {
			out = append(out, e)
		}
	}
	return out
}

func infKinds(evs []infEvent) string {
	k := make([]string, len(evs))
	for i, e := range evs {
		k[i] = e.kind
	}
	return strings.Join(k, ",")
}

// testInformerEventsAndResync: a SharedInformerFactory with a 1 s resync period and
// a label selector lists what exists, then sees creates, updates, deletes and
// objects leaving the selector, in order, and calls the handler on every resync.
func testInformerEventsAndResync(t *testing.T, cs kubernetes.Interface) {
	ns := infNamespace(t, cs, "informer-events")
	ctx := infCtx(t, 60*time.Second)
	sel := map[string]string{"suite": "informer"}
	cms := cs.CoreV1().ConfigMaps(ns)
	for i := 0; i < 3; i++ {
		if _, err := cms.Create(ctx, infConfigMap(fmt.Sprintf("initial-%d", i), sel, map[string]string{"i": strconv.Itoa(i)}), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create: %v", err)
		}
	}
	// Not matching the selector: must never reach the handler.
	if _, err := cms.Create(ctx, infConfigMap("unlabelled", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}

	factory := informers.NewSharedInformerFactoryWithOptions(cs, time.Second,
		informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "suite=informer" }))
	cmInformer := factory.Core().V1().ConfigMaps()
	rec := &infRecorder{}
	if _, err := cmInformer.Informer().AddEventHandler(rec.handler()); err != nil {
		t.Fatalf("add handler: %v", err)
	}
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	syncCtx := infCtx(t, 20*time.Second)
	for typ, ok := range factory.WaitForCacheSync(syncCtx.Done()) {
		if !ok {
			t.Fatalf("informer for %v did not sync within 20s", typ)
		}
	}

	// Initial list.
	listed, err := cmInformer.Lister().ConfigMaps(ns).List(labels.Everything())
	if err != nil {
		t.Fatalf("lister: %v", err)
	}
	if len(listed) != 3 {
		t.Fatalf("lister after sync has %d configmaps, want the 3 labelled ones: %v", len(listed), infNames(listed))
	}
	Eventually(t, 10*time.Second, func() error {
		for i := 0; i < 3; i++ {
			evs := rec.of(fmt.Sprintf("initial-%d", i))
			if len(evs) != 1 || evs[0].kind != "add" || !evs[0].initial {
				return fmt.Errorf("initial-%d: want one add from the initial list, got %+v", i, evs)
			}
		}
		return nil
	})

	// Create, update, delete.
	created, err := cms.Create(ctx, infConfigMap("live", sel, map[string]string{"v": "1"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create live: %v", err)
	}
	Eventually(t, 10*time.Second, func() error {
		if evs := rec.of("live"); len(evs) < 1 {
			return fmt.Errorf("no add for live yet")
		}
		return nil
	})
	created.Data = map[string]string{"v": "2"}
	updated, err := cms.Update(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update live: %v", err)
	}
	Eventually(t, 10*time.Second, func() error {
		if evs := rec.of("live"); len(evs) < 2 {
			return fmt.Errorf("no update for live yet: %s", infKinds(evs))
		}
		return nil
	})
	if err := cms.Delete(ctx, "live", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete live: %v", err)
	}
	// Leaving the selector is a delete for this informer.
	moved, err := cms.Get(ctx, "initial-2", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	moved.Labels = map[string]string{"suite": "elsewhere"}
	if _, err := cms.Update(ctx, moved, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("relabel: %v", err)
	}
	Eventually(t, 10*time.Second, func() error {
		if evs := rec.of("live"); len(evs) < 3 {
			return fmt.Errorf("live: want add,update,delete, got %s", infKinds(evs))
		}
		if evs := rec.of("initial-2"); len(evs) < 2 {
			return fmt.Errorf("initial-2 left the selector: want add,delete, got %s", infKinds(evs))
		}
		return nil
	})
	live := rec.of("live")
	if infKinds(live) != "add,update,delete" {
		t.Fatalf("live: got events %s, want add,update,delete: %+v", infKinds(live), live)
	}
	if live[0].initial || live[0].rv != created.ResourceVersion || live[0].data["v"] != "1" {
		t.Errorf("live add = %+v, want rv %s data v=1 not from the initial list", live[0], created.ResourceVersion)
	}
	if live[1].oldRV != created.ResourceVersion || live[1].rv != updated.ResourceVersion || live[1].data["v"] != "2" {
		t.Errorf("live update = %+v, want %s -> %s with v=2", live[1], created.ResourceVersion, updated.ResourceVersion)
	}
	if live[2].tombstone {
		t.Errorf("live delete came as a tombstone (the watch missed it and a relist found it gone): %+v", live[2])
	}
	if k := infKinds(rec.of("initial-2")); k != "add,delete" {
		t.Errorf("initial-2 left the selector: got %s, want add,delete", k)
	}
	for _, e := range rec.snapshot() {
		if e.name == "unlabelled" {
			t.Errorf("object outside the label selector reached the handler: %+v", e)
		}
	}
	if _, err := cmInformer.Lister().ConfigMaps(ns).Get("live"); !apierrors.IsNotFound(err) {
		t.Errorf("deleted configmap still in the informer's cache (err=%v)", err)
	}

	// Resync: the handler sees every cached object again (same resourceVersion),
	// repeatedly, with a 1 s period.
	Eventually(t, 15*time.Second, func() error {
		count := map[string]int{}
		for _, e := range rec.snapshot() {
			if e.kind == "resync" {
				count[e.name]++
			}
		}
		for _, name := range []string{"initial-0", "initial-1"} {
			if count[name] < 2 {
				return fmt.Errorf("resyncs so far: %v, want >= 2 for initial-0 and initial-1", count)
			}
		}
		return nil
	})
	// Resyncs replay the cache: never an object after its delete was delivered.
	deleted := map[string]bool{}
	for _, e := range rec.snapshot() {
		switch {
		case e.kind == "delete":
			deleted[e.name] = true
		case e.kind == "resync" && deleted[e.name]:
			t.Errorf("resync of %s after its delete: %+v", e.name, e)
		}
	}
}

func infNames(cms []*corev1.ConfigMap) []string {
	out := make([]string, len(cms))
	for i, c := range cms {
		out[i] = c.Name
	}
	return out
}

// testInformerGoneAndRecovery: after more than 1000 quick updates, a watch from
// just before them replays every one, in order (the 1.32 watch cache keeps
// growing, up to 100Ki events, while its events are younger than 75 s, so the
// burst stays inside its window). Once the window no longer reaches back that far
// (here: the watch cache is rebuilt at the store's current revision by a server
// restart), watches from those resourceVersions get 410 Gone ("too old resource
// version"); a reflector whose list handed it such a resourceVersion relists and
// recovers; and an informer started from scratch syncs and follows new changes.
func testInformerGoneAndRecovery(t *testing.T, s *Server, cs kubernetes.Interface) {
	ns := infNamespace(t, cs, "informer-gone")
	ctx := infCtx(t, 90*time.Second)
	cms := cs.CoreV1().ConfigMaps(ns)
	const objects, updatesEach = 8, 130 // 1040 updates
	hot := make([]*corev1.ConfigMap, objects)
	for i := range hot {
		cm, err := cms.Create(ctx, infConfigMap(fmt.Sprintf("hot-%d", i), nil, map[string]string{"n": "0"}), metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		hot[i] = cm
	}
	beforeBurst := hot[objects-1].ResourceVersion

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, objects)
	for i := range hot {
		wg.Add(1)
		go func(cm *corev1.ConfigMap) {
			defer wg.Done()
			for n := 1; n <= updatesEach; n++ {
				cm = cm.DeepCopy()
				cm.Data["n"] = strconv.Itoa(n)
				next, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
				if err != nil {
					errs <- fmt.Errorf("update %s to n=%d: %w", cm.Name, n, err)
					return
				}
				cm = next
			}
		}(hot[i])
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d updates in %s", objects*updatesEach, time.Since(start).Round(time.Millisecond))

	// Inside the window: a complete, ordered replay (or, should the cache ever
	// have dropped part of it, 410 - never a partial replay).
	if w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: beforeBurst}); err != nil {
		if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
			t.Fatalf("watch from %s: %v", beforeBurst, err)
		}
		t.Logf("watch from before the burst: %v", err)
	} else {
		infCheckReplay(t, w, objects, updatesEach)
	}

	// Restart: the watch cache starts over at the store's current revision.
	restart := time.Now()
	s.Stop()
	stopped := time.Since(restart)
	s.Start()
	t.Logf("server restarted in %s (stop %s)", time.Since(restart).Round(time.Millisecond), stopped.Round(time.Millisecond))
	infExpectGone(t, ctx, cms, "1")
	infExpectGone(t, ctx, cms, beforeBurst)

	// A reflector whose list returns an expired resourceVersion: its watch gets
	// 410, and it must relist and carry on.
	var lists, staleWatches atomic.Int32
	lw := &cache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			l, err := cms.List(ctx, o)
			if err == nil && lists.Add(1) == 1 {
				l.ResourceVersion = "1"
			}
			return l, err
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			if o.ResourceVersion == "1" {
				staleWatches.Add(1)
			}
			return cms.Watch(ctx, o)
		},
	}
	stale := cache.NewSharedIndexInformer(lw, &corev1.ConfigMap{}, 0, cache.Indexers{})
	staleStop := make(chan struct{})
	defer close(staleStop)
	go stale.Run(staleStop)

	// An informer from scratch.
	factory := informers.NewSharedInformerFactoryWithOptions(cs, 0, informers.WithNamespace(ns))
	fresh := factory.Core().V1().ConfigMaps()
	fresh.Informer()
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	syncCtx := infCtx(t, 20*time.Second)
	if !cache.WaitForCacheSync(syncCtx.Done(), fresh.Informer().HasSynced, stale.HasSynced) {
		t.Fatalf("informers did not sync within 20s (lists=%d, stale watches=%d)", lists.Load(), staleWatches.Load())
	}
	t.Logf("fresh and recovering informers synced %s after the restart (lists by the recovering one: %d)", time.Since(restart).Round(time.Millisecond), lists.Load())
	for i := range hot {
		cm, err := fresh.Lister().ConfigMaps(ns).Get(fmt.Sprintf("hot-%d", i))
		if err != nil || cm.Data["n"] != strconv.Itoa(updatesEach) {
			t.Fatalf("fresh informer: hot-%d = %v (err %v), want n=%d", i, cm, err, updatesEach)
		}
	}

	// Both follow changes made afterwards.
	if _, err := cms.Create(ctx, infConfigMap("after-gone", nil, map[string]string{"v": "x"}), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	last := hot[0].DeepCopy()
	cur, err := cms.Get(ctx, last.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	cur.Data["n"] = "final"
	if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("update: %v", err)
	}
	Eventually(t, 20*time.Second, func() error {
		for name, store := range map[string]cache.Store{"fresh": fresh.Informer().GetStore(), "recovered": stale.GetStore()} {
			if _, ok, _ := store.GetByKey(ns + "/after-gone"); !ok {
				return fmt.Errorf("%s informer has not seen after-gone (lists=%d, stale watches=%d)", name, lists.Load(), staleWatches.Load())
			}
			obj, ok, _ := store.GetByKey(ns + "/hot-0")
			if !ok || obj.(*corev1.ConfigMap).Data["n"] != "final" {
				return fmt.Errorf("%s informer has not seen hot-0's last update", name)
			}
		}
		return nil
	})
	if staleWatches.Load() < 1 || lists.Load() < 2 {
		t.Errorf("the stale reflector should have watched from rv 1, got 410 and relisted: watches from rv 1 = %d, lists = %d", staleWatches.Load(), lists.Load())
	}
	for i := range hot {
		obj, ok, _ := stale.GetStore().GetByKey(fmt.Sprintf("%s/hot-%d", ns, i))
		want := strconv.Itoa(updatesEach)
		if i == 0 {
			want = "final"
		}
		if !ok || obj.(*corev1.ConfigMap).Data["n"] != want {
			t.Errorf("recovered informer: hot-%d = %v, want n=%s", i, obj, want)
		}
	}
}

// infExpectGone wants a watch from rv to fail with 410 Gone, either as the
// response to the watch request or as its first (ERROR) event.
func infExpectGone(t *testing.T, ctx context.Context, cms interface {
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
}, rv string) {
	t.Helper()
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err == nil {
		defer w.Stop()
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch from rv %s: closed without any event, want 410 Gone", rv)
			}
			if ev.Type != watch.Error {
				t.Fatalf("watch from rv %s: got a %s event, want 410 Gone", rv, ev.Type)
			}
			err = apierrors.FromObject(ev.Object)
		case <-time.After(15 * time.Second):
			t.Fatalf("watch from rv %s: no event within 15s, want 410 Gone", rv)
		}
	}
	var status apierrors.APIStatus
	if s, ok := err.(apierrors.APIStatus); ok {
		status = s
	}
	if status == nil || status.Status().Code != 410 || !strings.Contains(err.Error(), "too old resource version") {
		t.Fatalf("watch from rv %s: got %v, want 410 Gone with \"too old resource version\"", rv, err)
	}
	t.Logf("watch from rv %s: %v (reason %s)", rv, err, status.Status().Reason)
}

// infCheckReplay reads a watch that replays a burst of updates to hot-0..hot-N
// and wants every update, each object's in order, with increasing resourceVersions.
func infCheckReplay(t *testing.T, w watch.Interface, objects, updatesEach int) {
	t.Helper()
	defer w.Stop()
	next := make([]int, objects) // next expected n per object
	for i := range next {
		next[i] = 1
	}
	var lastRV uint64
	done := 0
	timeout := time.After(30 * time.Second)
	for done < objects {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("replay watch closed early; next expected n per object: %v", next)
			}
			if ev.Type == watch.Error {
				t.Fatalf("replay watch error: %v", apierrors.FromObject(ev.Object))
			}
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || !strings.HasPrefix(cm.Name, "hot-") {
				continue
			}
			if rv := infRV(t, cm.ResourceVersion); rv <= lastRV {
				t.Fatalf("replay out of order: %s at rv %d after rv %d", cm.Name, rv, lastRV)
			} else {
				lastRV = rv
			}
			i, _ := strconv.Atoi(strings.TrimPrefix(cm.Name, "hot-"))
			if ev.Type != watch.Modified || cm.Data["n"] != strconv.Itoa(next[i]) {
				t.Fatalf("replay: %s %s n=%s, want MODIFIED n=%d", ev.Type, cm.Name, cm.Data["n"], next[i])
			}
			next[i]++
			if next[i] > updatesEach {
				done++
			}
		case <-timeout:
			t.Fatalf("replay incomplete after 30s; next expected n per object: %v", next)
		}
	}
	t.Logf("watch from before the burst replayed all %d updates in order", objects*updatesEach)
}

// testInformerPaging: 250 configmaps listed 100 at a time arrive exactly once, all
// pages from one snapshot (changes made between pages do not show), and a new
// list sees the changes.
func testInformerPaging(t *testing.T, cs kubernetes.Interface) {
	ns := infNamespace(t, cs, "informer-paging")
	ctx := infCtx(t, 90*time.Second)
	cms := cs.CoreV1().ConfigMaps(ns)
	const n = 250
	names := make(chan int)
	errs := make(chan error, 10)
	var wg sync.WaitGroup
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range names {
				if _, err := cms.Create(ctx, infConfigMap(fmt.Sprintf("page-%03d", i), nil, map[string]string{"i": strconv.Itoa(i)}), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		names <- i
	}
	close(names)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create: %v", err)
	}
	// Every namespace gets kube-root-ca.crt from a controller; wait for it so the
	// total is fixed: 251.
	Eventually(t, 20*time.Second, func() error {
		_, err := cms.Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err
	})
	want := map[string]bool{"kube-root-ca.crt": true}
	for i := 0; i < n; i++ {
		want[fmt.Sprintf("page-%03d", i)] = true
	}

	first, err := cms.List(ctx, metav1.ListOptions{Limit: 100})
	if err != nil {
		t.Fatalf("list page 1: %v", err)
	}
	if len(first.Items) != 100 || first.Continue == "" {
		t.Fatalf("page 1: %d items, continue %q; want 100 and a continue token", len(first.Items), first.Continue)
	}
	if r := first.RemainingItemCount; r != nil && *r != int64(len(want)-100) {
		t.Errorf("page 1 remainingItemCount = %d, want %d", *r, len(want)-100)
	}
	// Between pages: one new object that would sort last, one deletion of an object
	// not yet returned. The continuation must still show the first page's snapshot.
	if _, err := cms.Create(ctx, infConfigMap("page-999-extra", nil, nil), metav1.CreateOptions{}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if err := cms.Delete(ctx, "page-249", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete: %v", err)
	}

	seen := map[string]int{}
	var sizes []int
	page := first
	for {
		sizes = append(sizes, len(page.Items))
		if page.ResourceVersion != first.ResourceVersion {
			t.Errorf("page %d has resourceVersion %s, want the first page's %s", len(sizes), page.ResourceVersion, first.ResourceVersion)
		}
		for _, cm := range page.Items {
			seen[cm.Name]++
			var i int
			if _, err := fmt.Sscanf(cm.Name, "page-%03d", &i); err == nil && cm.Name != "page-999-extra" && cm.Data["i"] != strconv.Itoa(i) {
				t.Errorf("%s has data %v, want i=%d", cm.Name, cm.Data, i)
			}
		}
		if page.Continue == "" {
			break
		}
		if len(sizes) > 10 {
			t.Fatalf("more than 10 pages of 100 for %d objects", len(want))
		}
		page, err = cms.List(ctx, metav1.ListOptions{Limit: 100, Continue: page.Continue})
		if err != nil {
			t.Fatalf("list page %d: %v", len(sizes)+1, err)
		}
	}
	if fmt.Sprint(sizes) != "[100 100 51]" {
		t.Errorf("page sizes %v, want [100 100 51]", sizes)
	}
	for name := range want {
		if seen[name] != 1 {
			t.Errorf("%s seen %d times across pages, want exactly once", name, seen[name])
		}
	}
	for name := range seen {
		if !want[name] {
			t.Errorf("paged list returned %s, which is not in the first page's snapshot", name)
		}
	}

	// A new list, whole and paged, sees the present.
	all, err := cms.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	now := map[string]bool{}
	for _, cm := range all.Items {
		now[cm.Name] = true
	}
	if len(all.Items) != len(want) || !now["page-999-extra"] || now["page-249"] {
		t.Errorf("fresh list: %d items (extra present %v, deleted present %v); want %d, true, false", len(all.Items), now["page-999-extra"], now["page-249"], len(want))
	}
	if infRV(t, all.ResourceVersion) <= infRV(t, first.ResourceVersion) {
		t.Errorf("fresh list resourceVersion %s not after the paged snapshot's %s", all.ResourceVersion, first.ResourceVersion)
	}
	count, opts := 0, metav1.ListOptions{Limit: 100}
	for {
		p, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatalf("paged list: %v", err)
		}
		for _, cm := range p.Items {
			if !now[cm.Name] {
				t.Errorf("second paged list returned %s, absent from the full list", cm.Name)
			}
			count++
		}
		if opts.Continue = p.Continue; opts.Continue == "" {
			break
		}
	}
	if count != len(now) {
		t.Errorf("second paged list returned %d items, the full list %d", count, len(now))
	}
}

// testInformerBookmarks: a watch with allowWatchBookmarks gets a BOOKMARK carrying
// the resourceVersion of a write its selector filtered out (the watch cache sends
// one 2 s before the watch's timeout, so a 5 s timeout gets one after ~3 s), and a
// watch-list (sendInitialEvents) ends its initial events with
// a bookmark annotated k8s.io/initial-events-end.
func testInformerBookmarks(t *testing.T, cs kubernetes.Interface) {
	ns := infNamespace(t, cs, "informer-bookmarks")
	ctx := infCtx(t, 60*time.Second)
	cms := cs.CoreV1().ConfigMaps(ns)
	sel := map[string]string{"suite": "bookmark"}
	for i := 0; i < 3; i++ {
		if _, err := cms.Create(ctx, infConfigMap(fmt.Sprintf("bm-%d", i), sel, nil), metav1.CreateOptions{}); err != nil {
			t.Fatalf("create: %v", err)
		}
	}
	list, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "suite=bookmark"})
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	listRV := infRV(t, list.ResourceVersion)

	timeout := int64(5)
	start := time.Now()
	w, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "suite=bookmark", ResourceVersion: list.ResourceVersion, AllowWatchBookmarks: true, TimeoutSeconds: &timeout})
	if err != nil {
		t.Fatalf("watch with bookmarks: %v", err)
	}
	// The watch cache sends a bookmark only when it has progressed past what the
	// watcher saw; a write the watch filters out moves it on without an event.
	hidden, err := cms.Create(ctx, infConfigMap("bm-hidden", nil, nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	hiddenRV := infRV(t, hidden.ResourceVersion)
	func() {
		defer w.Stop()
		deadline := time.After(20 * time.Second)
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("watch (timeoutSeconds=5) ended after %s without a BOOKMARK", time.Since(start).Round(time.Millisecond))
				}
				switch ev.Type {
				case watch.Bookmark:
					cm := ev.Object.(*corev1.ConfigMap)
					if rv := infRV(t, cm.ResourceVersion); rv < hiddenRV {
						t.Errorf("bookmark rv %d is before the filtered-out write's rv %d (watch started at %d)", rv, hiddenRV, listRV)
					}
					t.Logf("BOOKMARK at rv %s after %s", cm.ResourceVersion, time.Since(start).Round(time.Millisecond))
					return
				case watch.Error:
					t.Fatalf("watch error: %v", apierrors.FromObject(ev.Object))
				default:
					t.Fatalf("unexpected %s event on an idle watch: %v", ev.Type, ev.Object)
				}
			case <-deadline:
				t.Fatalf("no BOOKMARK within 20s on a watch with timeoutSeconds=5")
			}
		}
	}()

	t.Run("WatchList", func(t *testing.T) {
		yes, wlTimeout := true, int64(30)
		w, err := cms.Watch(ctx, metav1.ListOptions{
			LabelSelector:        "suite=bookmark",
			SendInitialEvents:    &yes,
			ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
			AllowWatchBookmarks:  true,
			TimeoutSeconds:       &wlTimeout,
		})
		if err != nil {
			t.Fatalf("watch-list (served by v1.32 API servers): %v", err)
		}
		defer w.Stop()
		added := map[string]bool{}
		gotEnd := false
		deadline := time.After(20 * time.Second)
		for !gotEnd || !added["bm-late"] {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					t.Fatalf("watch-list closed early: initial events %v, end bookmark %v", added, gotEnd)
				}
				switch ev.Type {
				case watch.Added:
					cm := ev.Object.(*corev1.ConfigMap)
					if cm.Name == "bm-late" && !gotEnd {
						t.Errorf("bm-late (created after the initial events) arrived before the end bookmark")
					}
					added[cm.Name] = true
				case watch.Bookmark:
					cm := ev.Object.(*corev1.ConfigMap)
					if cm.Annotations[metav1.InitialEventsAnnotationKey] != "true" {
						continue // a periodic bookmark
					}
					if rv := infRV(t, cm.ResourceVersion); rv < listRV {
						t.Errorf("initial-events-end bookmark rv %d is before rv %d", rv, listRV)
					}
					for i := 0; i < 3; i++ {
						if !added[fmt.Sprintf("bm-%d", i)] {
							t.Errorf("initial-events-end bookmark before bm-%d's ADDED (got %v)", i, added)
						}
					}
					if len(added) != 3 {
						t.Errorf("initial events: %v, want exactly bm-0..2", added)
					}
					gotEnd = true
					t.Logf("initial-events-end bookmark at rv %s", cm.ResourceVersion)
					if _, err := cms.Create(ctx, infConfigMap("bm-late", sel, nil), metav1.CreateOptions{}); err != nil {
						t.Fatalf("create: %v", err)
					}
				case watch.Error:
					t.Fatalf("watch-list error: %v", apierrors.FromObject(ev.Object))
				default:
					t.Fatalf("unexpected %s event in a watch-list: %v", ev.Type, ev.Object)
				}
			case <-deadline:
				t.Fatalf("watch-list: within 20s got initial events %v, end bookmark %v, bm-late %v", added, gotEnd, added["bm-late"])
			}
		}
	})
}
