package etcdclient

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc/metadata"

	"github.com/peapod-dev/peapod/internal/storage"
)

// TestWatchOptions pins the decoding of clientv3's watch options, which
// reads clientv3.Op's unexported notify flags by reflection.
func TestWatchOptions(t *testing.T) {
	tests := []struct {
		name string
		key  string
		opts []clientv3.OpOption
		want watchRequest
	}{
		{"plain", "/a", nil, watchRequest{key: "/a"}},
		{"all", "/a/", []clientv3.OpOption{clientv3.WithPrefix(), clientv3.WithRev(7), clientv3.WithPrevKV(), clientv3.WithProgressNotify(), clientv3.WithCreatedNotify()},
			watchRequest{key: "/a/", rev: 7, progressNotify: true, createdNotify: true}},
		{"progress only", "/a", []clientv3.OpOption{clientv3.WithProgressNotify()}, watchRequest{key: "/a", progressNotify: true}},
		{"created only", "/a", []clientv3.OpOption{clientv3.WithCreatedNotify()}, watchRequest{key: "/a", createdNotify: true}},
		// clientv3.WithPrefix turns an empty key into "\x00", which is
		// what the server gets.
		{"empty prefix", "", []clientv3.OpOption{clientv3.WithPrefix()}, watchRequest{key: "\x00"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := parseWatch(tc.key, tc.opts); got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func mustPut(t *testing.T, c *kubernetes.Client, key, value string) int64 {
	t.Helper()
	r, err := c.Kubernetes.OptimisticPut(testCtx(t), key, []byte(value), 0, kubernetes.PutOptions{})
	if err != nil || !r.Succeeded {
		t.Fatalf("create %s = %+v, %v", key, r, err)
	}
	return r.Revision
}

// TestWatchFromNow checks that a watch from the current revision sees a
// write made right after Watch returns.
func TestWatchFromNow(t *testing.T) {
	c := newTestClient(t, openStore(t), 0)
	ch := c.Watch(testCtx(t), "/registry/cm/", clientv3.WithPrefix())
	rev := mustPut(t, c, "/registry/cm/ns/a", "a")
	r, ok := next(t, ch)
	if !ok || len(r.Events) != 1 || r.Events[0].Kv.ModRevision != rev || r.Header.Revision != rev {
		t.Fatalf("response = %s (open %v), want the create at %d", descWatch(r), ok, rev)
	}
}

// TestWatchEnds checks that a watch's channel closes when its context is
// cancelled and when the client closes, and that the closed client only
// hands out closed channels.
func TestWatchEnds(t *testing.T) {
	c := newClient(context.Background(), openStore(t), nil, notifyInterval)
	ctx, cancel := context.WithCancel(context.Background())
	ch := c.Watch(ctx, "/registry/cm/", clientv3.WithPrefix())
	cancel()
	if r, ok := next(t, ch); ok {
		t.Fatalf("after cancel: %s", descWatch(r))
	}

	ch1 := c.Watch(context.Background(), "/registry/cm/", clientv3.WithPrefix())
	ch2 := c.Watch(metadata.AppendToOutgoingContext(context.Background(), "k", "v"), "/registry/pods/", clientv3.WithPrefix(), clientv3.WithProgressNotify())
	if err := c.Close(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Close = %v, want context.Canceled (clientv3.NewCtxClient's)", err)
	}
	for _, ch := range []clientv3.WatchChan{ch1, ch2} {
		if r, ok := next(t, ch); ok {
			t.Fatalf("after Close: %s", descWatch(r))
		}
	}
	if r, ok := next(t, c.Watch(context.Background(), "/registry/cm/")); ok {
		t.Fatalf("watch after Close: %s", descWatch(r))
	}
	if err := c.RequestProgress(context.Background()); err == nil {
		t.Fatal("RequestProgress after Close succeeded")
	}
}

// TestProgressNotify checks the periodic progress notifications of a
// watch made WithProgressNotify: kine sends them once the store's revision
// has reached the watch's start revision, at the current revision. A
// watch without the option gets none.
func TestProgressNotify(t *testing.T) {
	c := newTestClient(t, openStore(t), 20*time.Millisecond)
	ctx := testCtx(t)
	rev := mustPut(t, c, "/registry/pods/ns/a", "a")
	notified := c.Watch(ctx, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	plain := c.Watch(ctx, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	other := mustPut(t, c, "/registry/services/ns/s", "s")
	for range 2 {
		r, ok := next(t, notified)
		if !ok || !r.IsProgressNotify() || r.Header.Revision != other {
			t.Fatalf("response = %s (open %v), want progress at %d", descWatch(r), ok, other)
		}
	}
	// Both watches see the next event; had the plain one got a progress
	// notification, it would come first.
	ev := mustPut(t, c, "/registry/pods/ns/b", "b")
	r, ok := next(t, plain)
	if !ok || len(r.Events) != 1 || r.Header.Revision != ev {
		t.Fatalf("plain watch: %s (open %v), want the event at %d", descWatch(r), ok, ev)
	}
}

// TestRequestProgress checks that a progress request reaches every watch
// of the stream of its context (watches with the same gRPC metadata) and
// no other.
func TestRequestProgress(t *testing.T) {
	c := newTestClient(t, openStore(t), time.Hour)
	ctx := testCtx(t)
	ctxA := metadata.AppendToOutgoingContext(ctx, "stream", "a")
	ctxB := metadata.AppendToOutgoingContext(ctx, "stream", "b")
	start := mustPut(t, c, "/registry/pods/ns/a", "a")
	a1 := c.Watch(ctxA, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithProgressNotify())
	a2 := c.Watch(ctxA, "/registry/services/", clientv3.WithPrefix())
	b := c.Watch(ctxB, "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithProgressNotify())
	for _, ch := range []clientv3.WatchChan{a1, b} {
		if r, ok := next(t, ch); !ok || len(r.Events) != 1 {
			t.Fatalf("history: %s (open %v)", descWatch(r), ok)
		}
	}
	other := mustPut(t, c, "/registry/configmaps/ns/c", "c")

	// a1 may still be busy handing over its event, in which case the
	// request is dropped, as etcd's is; ask until answered.
	var r clientv3.WatchResponse
	for {
		if err := c.RequestProgress(ctxA); err != nil {
			t.Fatal(err)
		}
		var ok bool
		select {
		case r, ok = <-a1:
			if !ok {
				t.Fatal("watch closed")
			}
		case <-time.After(20 * time.Millisecond):
			continue
		case <-ctx.Done():
			t.Fatal("no progress notification")
		}
		break
	}
	if !r.IsProgressNotify() || r.Header.Revision != other {
		t.Fatalf("a1: %s, want progress at %d", descWatch(r), other)
	}
	// Every watch of the stream gets it, with or without WithProgressNotify.
	if r, ok := next(t, a2); !ok || !r.IsProgressNotify() || r.Header.Revision != other {
		t.Fatalf("a2: %s (open %v), want progress at %d", descWatch(r), ok, other)
	}
	// The other stream does not: its next response is the next event.
	ev := mustPut(t, c, "/registry/pods/ns/b", "b")
	if r, ok := next(t, b); !ok || len(r.Events) != 1 || r.Header.Revision != ev {
		t.Fatalf("b: %s (open %v), want the event at %d", descWatch(r), ok, ev)
	}
	// A stream without watches has nothing to notify.
	if err := c.RequestProgress(metadata.AppendToOutgoingContext(ctx, "stream", "none")); err != nil {
		t.Fatal(err)
	}
}

// TestProgressOrder checks that a progress notification goes after the
// events already waiting for the watch, and is dropped if they are newer.
func TestProgressOrder(t *testing.T) {
	events := make(chan []*storage.Event, 2)
	wt := &watch{events: events}
	ev := func(rev int64) []*storage.Event {
		return []*storage.Event{{Create: true, KV: &storage.KeyValue{Key: "/k", ModRevision: rev, CreateRevision: rev}}}
	}
	events <- ev(5)
	buf := wt.progressed(nil, 4)
	if len(buf) != 1 || buf[0].Header.Revision != 5 || len(buf[0].Events) != 1 {
		t.Fatalf("progress at 4 behind an event at 5: %d responses, first %s", len(buf), descWatch(buf[0]))
	}
	events <- ev(6)
	buf = wt.progressed(nil, 7)
	if len(buf) != 2 || buf[0].Header.Revision != 6 || !buf[1].IsProgressNotify() || buf[1].Header.Revision != 7 {
		t.Fatalf("progress at 7 behind an event at 6: %d responses", len(buf))
	}
	if buf = wt.progressed(nil, 6); len(buf) != 0 {
		t.Fatalf("progress at 6 after progress at 7: %s", descWatch(buf[0]))
	}
}

// scriptedWatch is a real Backend whose Watch the test drives.
type scriptedWatch struct {
	storage.Backend
	events chan []*storage.Event
	errc   chan error
}

func (s *scriptedWatch) Watch(context.Context, string, int64) storage.WatchResult {
	return storage.WatchResult{CurrentRevision: 1, Events: s.events, Errorc: s.errc}
}

// TestWatchTooSlow checks what a watch the Backend ended with
// ErrWatchTooSlow looks like: its events, then the channel closes without
// an error response, as clientv3 delivers kine's cancellation.
func TestWatchTooSlow(t *testing.T) {
	b := &scriptedWatch{Backend: openStore(t), events: make(chan []*storage.Event, 1), errc: make(chan error, 1)}
	c := newTestClient(t, b, 0)
	ch := c.Watch(testCtx(t), "/registry/pods/", clientv3.WithPrefix(), clientv3.WithRev(2))
	b.events <- []*storage.Event{
		{Create: true, KV: &storage.KeyValue{Key: "/registry/pods/ns/a", CreateRevision: 2, ModRevision: 2, Value: []byte("a")}},
		{Delete: true, KV: &storage.KeyValue{Key: "/registry/pods/ns/a", CreateRevision: 2, ModRevision: 3, Value: []byte("a")},
			PrevKV: &storage.KeyValue{Key: "/registry/pods/ns/a", CreateRevision: 2, ModRevision: 2, Value: []byte("a")}},
	}
	b.errc <- storage.ErrWatchTooSlow
	close(b.events)
	r, ok := next(t, ch)
	if !ok || r.Err() != nil || r.Header.Revision != 3 || len(r.Events) != 2 ||
		r.Events[0].Type != mvccpb.PUT || r.Events[1].Type != mvccpb.DELETE || r.Events[1].PrevKv == nil ||
		string(r.Events[1].Kv.Key) != "/registry/pods/ns/a" || string(r.Events[1].PrevKv.Key) != "/registry/pods/ns/a" {
		t.Fatalf("events: %s (open %v)", descWatch(r), ok)
	}
	if r, ok := next(t, ch); ok {
		t.Fatalf("after the end: %s", descWatch(r))
	}
}

// TestLeaseExpiry writes with a lease the way the apiserver stores events
// and checks the key is deleted, with a watch event, after its TTL.
func TestLeaseExpiry(t *testing.T) {
	c := newTestClient(t, openStore(t), 0)
	ctx := testCtx(t)
	lease, err := c.Grant(ctx, 1)
	if err != nil || lease.ID != 1 {
		t.Fatalf("grant = %+v, %v", lease, err)
	}
	wch := c.Watch(ctx, "/registry/events/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	put, err := c.Kubernetes.OptimisticPut(ctx, "/registry/events/ns/e", []byte("e"), 0, kubernetes.PutOptions{LeaseID: lease.ID})
	if err != nil || !put.Succeeded {
		t.Fatalf("put with lease = %+v, %v", put, err)
	}
	for {
		r, ok := next(t, wch)
		if !ok || r.Err() != nil {
			t.Fatalf("watch ended: %s", descWatch(r))
		}
		for _, e := range r.Events {
			if e.Type != mvccpb.DELETE {
				continue
			}
			if string(e.Kv.Key) != "/registry/events/ns/e" || e.PrevKv == nil || e.PrevKv.Lease != 1 {
				t.Fatalf("expiry event = %+v", e)
			}
			got, err := c.Kubernetes.Get(ctx, "/registry/events/ns/e", kubernetes.GetOptions{})
			if err != nil || got.KV != nil {
				t.Fatalf("expired key = %+v, %v", got, err)
			}
			return
		}
	}
}

// TestFeatureClient checks the view for the kube-apiserver's feature
// checker, and that New writes the health key.
func TestFeatureClient(t *testing.T) {
	c := newTestClient(t, openStore(t), 0)
	ctx := testCtx(t)
	f := FeatureClient(c)
	eps := f.Endpoints()
	if len(eps) != 1 || eps[0] != Endpoint {
		t.Fatalf("endpoints = %q", eps)
	}
	st, err := f.Status(ctx, eps[0])
	if err != nil || st.Version != EmulatedVersion || st.DbSize <= 0 {
		t.Fatalf("status = %+v, %v", st, err)
	}
	health, err := c.Kubernetes.Get(ctx, healthKey, kubernetes.GetOptions{})
	if err != nil || health.KV == nil || health.Revision != 1 {
		t.Fatalf("health key = %+v, %v", health, err)
	}
	if _, err := c.MemberList(ctx); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("member list err = %v", err)
	}
	if _, err := c.AuthStatus(ctx); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("auth status err = %v", err)
	}
	if _, err := c.KeepAlive(ctx, 1); err == nil {
		t.Fatal("keep alive succeeded")
	}
}
