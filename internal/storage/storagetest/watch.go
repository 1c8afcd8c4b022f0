package storagetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/storage"
)

// collect reads events from wr until done reports true for what has been
// read so far, failing after waitTimeout or if the watch ends first. It is
// safe to call from any goroutine.
func collect(wr storage.WatchResult, done func([]*storage.Event) bool) ([]*storage.Event, error) {
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	var all []*storage.Event
	for !done(all) {
		select {
		case batch, ok := <-wr.Events:
			if !ok {
				var err error
				select {
				case err = <-wr.Errorc:
				default:
				}
				return all, fmt.Errorf("watch ended after %d events: %v", len(all), err)
			}
			if len(batch) == 0 {
				return all, errors.New("watch delivered an empty batch")
			}
			all = append(all, batch...)
		case <-deadline.C:
			return all, fmt.Errorf("timed out after %d events", len(all))
		}
	}
	return all, nil
}

// untilRev is a collect condition: an event at revision rev or later.
func untilRev(rev int64) func([]*storage.Event) bool {
	return func(evs []*storage.Event) bool {
		return len(evs) > 0 && evs[len(evs)-1].KV.ModRevision >= rev
	}
}

func mustCollect(t *testing.T, wr storage.WatchResult, rev int64) []*storage.Event {
	t.Helper()
	evs, err := collect(wr, untilRev(rev))
	if err != nil {
		t.Fatalf("collecting events up to %d: %v", rev, err)
	}
	return evs
}

func watch(t *testing.T, b storage.Backend, prefix string, from int64) storage.WatchResult {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	wr := b.Watch(ctx, prefix, from)
	if wr.CompactRevision != 0 || wr.Events == nil {
		t.Fatalf("Watch(%q, %d) failed: compact revision %d", prefix, from, wr.CompactRevision)
	}
	return wr
}

func describe(e *storage.Event) string {
	s := fmt.Sprintf("%d %s=%s", e.KV.ModRevision, e.KV.Key, e.KV.Value)
	switch {
	case e.Create:
		s = "create " + s
	case e.Delete:
		s = "delete " + s
	default:
		s = "update " + s
	}
	if e.PrevKV != nil {
		s += fmt.Sprintf(" prev(%d %s)", e.PrevKV.ModRevision, e.PrevKV.Value)
	}
	return s
}

func describeAll(evs []*storage.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = describe(e)
	}
	return out
}

func checkEvents(t *testing.T, what string, got []*storage.Event, want []string) {
	t.Helper()
	if g := describeAll(got); !sameStrings(g, want) {
		t.Fatalf("%s:\n got %q\nwant %q", what, g, want)
	}
}

func testWatch(t *testing.T, b storage.Backend) {
	a1 := create(t, b, "/w/a", "a1")
	b1 := create(t, b, "/w/b", "b1")
	a2 := update(t, b, "/w/a", "a2", a1)
	bd := del(t, b, "/w/b", b1)
	c1 := create(t, b, "/w/c", "c1")

	wr := watch(t, b, "/w/", a2)
	evs := mustCollect(t, wr, c1)
	checkEvents(t, "replayed events", evs, []string{
		fmt.Sprintf("update %d /w/a=a2 prev(%d a1)", a2, a1),
		fmt.Sprintf("delete %d /w/b=b1 prev(%d b1)", bd, b1),
		fmt.Sprintf("create %d /w/c=c1", c1),
	})
	if evs[1].KV.CreateRevision != b1 || evs[0].KV.CreateRevision != a1 || evs[2].KV.CreateRevision != c1 {
		t.Fatalf("wrong create revisions in events: %+v %+v %+v", evs[0].KV, evs[1].KV, evs[2].KV)
	}

	// Live events continue the replay.
	a3 := update(t, b, "/w/a", "a3", a2)
	cd := del(t, b, "/w/c", 0)
	checkEvents(t, "live events", mustCollect(t, wr, cd), []string{
		fmt.Sprintf("update %d /w/a=a3 prev(%d a2)", a3, a2),
		fmt.Sprintf("delete %d /w/c=c1 prev(%d c1)", cd, c1),
	})

	// From the first revision: the whole history.
	all := mustCollect(t, watch(t, b, "/w/", 1), cd)
	if len(all) != int(cd) {
		t.Fatalf("watch from 1 delivered %d events, want %d: %q", len(all), cd, describeAll(all))
	}
	for i, e := range all {
		if e.KV.ModRevision != int64(i+1) {
			t.Fatalf("watch from 1: event %d has revision %d", i, e.KV.ModRevision)
		}
	}
}

func testWatchFromNow(t *testing.T, b storage.Backend) {
	create(t, b, "/now/old", "x")
	cur := currentRev(t, b)
	wr := watch(t, b, "/now/", 0)
	if wr.CurrentRevision != cur {
		t.Fatalf("WatchResult.CurrentRevision = %d, want %d", wr.CurrentRevision, cur)
	}
	r := create(t, b, "/now/new", "y")
	checkEvents(t, "watch from now", mustCollect(t, wr, r), []string{fmt.Sprintf("create %d /now/new=y", r)})

	// A start revision in the future waits for it.
	future := watch(t, b, "/now/", r+2)
	r1 := create(t, b, "/now/skipped", "1")
	r2 := create(t, b, "/now/seen", "2")
	if r2 != r+2 {
		t.Skipf("revisions are not consecutive (%d, %d, %d); skipping future start check", r, r1, r2)
	}
	checkEvents(t, "watch from a future revision", mustCollect(t, future, r2), []string{fmt.Sprintf("create %d /now/seen=2", r2)})
}

func testWatchFilter(t *testing.T, b storage.Backend) {
	from := currentRev(t, b) + 1
	prefix := watch(t, b, "/p/", from)
	exact := watch(t, b, "/p/x", from)
	x := create(t, b, "/p/x", "1")
	y := create(t, b, "/p/y", "2")
	create(t, b, "/q/z", "3")
	create(t, b, "/p", "4")
	create(t, b, "/p/xx", "5")
	end := update(t, b, "/p/x", "6", x)
	checkEvents(t, "prefix watch", mustCollect(t, prefix, end), []string{
		fmt.Sprintf("create %d /p/x=1", x),
		fmt.Sprintf("create %d /p/y=2", y),
		fmt.Sprintf("create %d /p/xx=5", end-1),
		fmt.Sprintf("update %d /p/x=6 prev(%d 1)", end, x),
	})
	checkEvents(t, "exact watch", mustCollect(t, exact, end), []string{
		fmt.Sprintf("create %d /p/x=1", x),
		fmt.Sprintf("update %d /p/x=6 prev(%d 1)", end, x),
	})
}

// testWatchConcurrent starts watchers before, during and after concurrent
// writes and checks each sees exactly the acknowledged writes from its
// start revision on, in order.
func testWatchConcurrent(t *testing.T, b storage.Backend) {
	const writers, perWriter = 4, 60
	ctx := ctxFor(t)
	start := currentRev(t, b) + 1

	var mu sync.Mutex
	acked := map[int64]string{} // revision -> description of the change
	type watcher struct {
		from int64
		wr   storage.WatchResult
	}
	var watchers []watcher
	addWatcher := func(from int64) {
		wctx, cancel := context.WithCancel(ctx)
		t.Cleanup(cancel)
		wr := b.Watch(wctx, "/wc/", from)
		if wr.Events == nil {
			t.Errorf("Watch(%d) failed: compact %d", from, wr.CompactRevision)
			return
		}
		if from == 0 {
			from = wr.CurrentRevision + 1
		}
		mu.Lock()
		watchers = append(watchers, watcher{from, wr})
		mu.Unlock()
	}
	addWatcher(start)

	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				key := fmt.Sprintf("/wc/%d/%d", w, i/3)
				var rev int64
				var what string
				var err error
				switch i % 3 {
				case 0:
					rev, err = b.Create(ctx, key, []byte("c"), 0)
					what = "create " + key
				case 1:
					var ok bool
					_, kv, gerr := b.Get(ctx, key, "", 1, 0)
					if gerr != nil || kv == nil {
						err = fmt.Errorf("get %s: %v", key, gerr)
						break
					}
					rev, _, ok, err = b.Update(ctx, key, []byte("u"), kv.ModRevision, 0)
					if err == nil && !ok {
						err = fmt.Errorf("update %s conflicted", key)
					}
					what = "update " + key
				case 2:
					var ok bool
					rev, _, ok, err = b.Delete(ctx, key, 0)
					if err == nil && !ok {
						err = fmt.Errorf("delete %s failed", key)
					}
					what = "delete " + key
				}
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				acked[rev] = what
				n := len(acked)
				mu.Unlock()
				// Start more watchers while writes are in flight, some
				// replaying history and some starting at the present.
				if w == 0 && i%20 == 10 {
					cur, _ := b.CurrentRevision(ctx)
					addWatcher(max(start, cur-int64(n)/2))
					addWatcher(0)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	addWatcher(start + 5)
	final := currentRev(t, b)
	if len(acked) != writers*perWriter {
		t.Fatalf("%d acknowledged writes, want %d", len(acked), writers*perWriter)
	}

	var cwg sync.WaitGroup
	results := make([]error, len(watchers))
	for i, w := range watchers {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			evs, err := collect(w.wr, untilRev(final))
			if err != nil {
				results[i] = err
				return
			}
			results[i] = checkStream(evs, w.from, acked)
		}()
	}
	cwg.Wait()
	for i, err := range results {
		if err != nil {
			t.Errorf("watcher %d (from %d): %v", i, watchers[i].from, err)
		}
	}
}

// checkStream verifies that evs are exactly the acknowledged changes with
// revisions >= from, in order.
func checkStream(evs []*storage.Event, from int64, acked map[int64]string) error {
	var want []int64
	for rev := range acked {
		if rev >= from {
			want = append(want, rev)
		}
	}
	if len(evs) != len(want) {
		return fmt.Errorf("got %d events, want %d", len(evs), len(want))
	}
	prev := int64(0)
	for _, e := range evs {
		rev := e.KV.ModRevision
		if rev <= prev {
			return fmt.Errorf("revision %d after %d", rev, prev)
		}
		prev = rev
		what, ok := acked[rev]
		if !ok || rev < from {
			return fmt.Errorf("unexpected event %s", describe(e))
		}
		var kind string
		switch {
		case e.Create:
			kind = "create "
		case e.Delete:
			kind = "delete "
		default:
			kind = "update "
		}
		if kind+e.KV.Key != what {
			return fmt.Errorf("event %s, acknowledged %q", describe(e), what)
		}
		if !e.Create && e.PrevKV == nil {
			return fmt.Errorf("event %s has no previous value", describe(e))
		}
	}
	return nil
}

func testWatchCompacted(t *testing.T, b storage.Backend) {
	var last int64
	r := create(t, b, "/wcp/k", "0")
	for i := 1; i <= 10; i++ {
		r = update(t, b, "/wcp/k", fmt.Sprint(i), r)
		last = r
	}
	mid := last - 5
	if _, err := b.Compact(ctxFor(t), mid); err != nil {
		t.Fatalf("Compact(%d): %v", mid, err)
	}
	for _, from := range []int64{1, mid - 1, mid} {
		wr := b.Watch(ctxFor(t), "/wcp/", from)
		if wr.CompactRevision != mid || wr.CurrentRevision != last {
			t.Errorf("Watch from compacted %d = compact %d current %d, want %d and %d",
				from, wr.CompactRevision, wr.CurrentRevision, mid, last)
		}
	}
	evs := mustCollect(t, watch(t, b, "/wcp/", mid+1), last)
	if len(evs) != 5 || evs[0].KV.ModRevision != mid+1 {
		t.Fatalf("watch after compaction = %q", describeAll(evs))
	}
	for _, e := range evs {
		if e.PrevKV == nil || e.PrevKV.ModRevision >= e.KV.ModRevision {
			t.Fatalf("event after compaction lacks its previous value: %s", describe(e))
		}
	}
}

func testWatchCancel(t *testing.T, b storage.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	wr := b.Watch(ctx, "/cancel/", 0)
	if wr.Events == nil {
		t.Fatal("Watch failed")
	}
	cancel()
	deadline := time.After(waitTimeout)
	for {
		select {
		case _, ok := <-wr.Events:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("Events not closed after cancelling the watch")
		}
	}
}
