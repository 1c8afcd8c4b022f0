package etcdserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.uber.org/zap"

	"github.com/peapod-dev/peapod/internal/storage/bolt"
)

const waitTimeout = 10 * time.Second

// startServer serves a fresh bolt store on a unix socket and returns a
// client of the kind the kube-apiserver uses. Everything is stopped at the
// end of the test, and the server must stop promptly.
func startServer(t *testing.T) (*kubernetes.Client, *bolt.Store) {
	t.Helper()
	dir := t.TempDir()
	store, err := bolt.Open(filepath.Join(dir, "peapod.db"), nil, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "etcd.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- New(store, nil).Serve(ctx, lis) }()

	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{"unix://" + sock},
		DialTimeout: waitTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = client.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Error("Serve did not return after cancel")
		}
		if err := store.Close(); err != nil {
			t.Errorf("store Close: %v", err)
		}
	})
	return client, store
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// TestKubernetesClient drives the server with the calls and txn shapes the
// kube-apiserver's etcd3 store makes (through the same client interface).
func TestKubernetesClient(t *testing.T) {
	c, _ := startServer(t)
	ctx := testCtx(t)
	k := c.Kubernetes

	// Serving starts with the health key written, so the revision is never 0.
	health, err := k.Get(ctx, healthKey, kubernetes.GetOptions{})
	if err != nil || health.KV == nil || health.Revision != 1 {
		t.Fatalf("health key = %+v, %v", health, err)
	}

	// Create: put-if-absent.
	put, err := k.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("a1"), 0, kubernetes.PutOptions{})
	if err != nil || !put.Succeeded || put.Revision != 2 {
		t.Fatalf("create = %+v, %v", put, err)
	}
	dup, err := k.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("again"), 0, kubernetes.PutOptions{})
	if err != nil || dup.Succeeded || dup.Revision != 2 {
		t.Fatalf("duplicate create = %+v, %v", dup, err)
	}
	revs := map[string]int64{"a": 2}
	for _, name := range []string{"b", "c", "d"} {
		r, err := k.OptimisticPut(ctx, "/registry/pods/ns/"+name, []byte(name+"1"), 0, kubernetes.PutOptions{})
		if err != nil || !r.Succeeded {
			t.Fatalf("create %s = %+v, %v", name, r, err)
		}
		revs[name] = r.Revision
	}
	svc, err := k.OptimisticPut(ctx, "/registry/services/ns/s", []byte("s"), 0, kubernetes.PutOptions{})
	if err != nil || svc.Revision != 6 {
		t.Fatalf("create service = %+v, %v", svc, err)
	}

	// Get, current and at an older revision.
	got, err := k.Get(ctx, "/registry/pods/ns/a", kubernetes.GetOptions{})
	if err != nil || got.KV == nil || string(got.KV.Value) != "a1" || got.KV.ModRevision != 2 || got.Revision != 6 {
		t.Fatalf("get = %+v, %v", got, err)
	}
	got, err = k.Get(ctx, "/registry/pods/ns/d", kubernetes.GetOptions{Revision: revs["d"] - 1})
	if err != nil || got.KV != nil {
		t.Fatalf("get before creation = %+v, %v", got, err)
	}

	// Update with a mod_revision compare; a stale one returns the current
	// object in the else branch.
	upd, err := k.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("a2"), 2, kubernetes.PutOptions{GetOnFailure: true})
	if err != nil || !upd.Succeeded || upd.Revision != 7 {
		t.Fatalf("update = %+v, %v", upd, err)
	}
	stale, err := k.OptimisticPut(ctx, "/registry/pods/ns/a", []byte("a3"), 2, kubernetes.PutOptions{GetOnFailure: true})
	if err != nil || stale.Succeeded || stale.KV == nil || string(stale.KV.Value) != "a2" || stale.KV.ModRevision != 7 {
		t.Fatalf("stale update = %+v, %v", stale, err)
	}

	// List with pagination, the way the apiserver continues a list.
	list, err := k.List(ctx, "/registry/pods/", kubernetes.ListOptions{Limit: 2})
	if err != nil || len(list.Kvs) != 2 || list.Count != 4 || list.Revision != 7 {
		t.Fatalf("list page 1 = %d kvs, count %d, rev %d, %v", len(list.Kvs), list.Count, list.Revision, err)
	}
	next := string(list.Kvs[1].Key) + "\x00"
	list, err = k.List(ctx, "/registry/pods/", kubernetes.ListOptions{Limit: 2, Continue: next, Revision: 7})
	if err != nil || len(list.Kvs) != 2 || string(list.Kvs[0].Key) != "/registry/pods/ns/c" || string(list.Kvs[1].Key) != "/registry/pods/ns/d" {
		t.Fatalf("list page 2 = %+v, %v", list, err)
	}
	old, err := k.List(ctx, "/registry/pods/", kubernetes.ListOptions{Revision: revs["b"]})
	if err != nil || len(old.Kvs) != 2 || string(old.Kvs[0].Value) != "a1" || old.Revision != revs["b"] {
		t.Fatalf("list at revision %d = %+v, %v", revs["b"], old, err)
	}
	n, err := k.Count(ctx, "/registry/pods/", kubernetes.CountOptions{})
	if err != nil || n != 4 {
		t.Fatalf("count = %d, %v", n, err)
	}

	// Delete with a mod_revision compare.
	staleDel, err := k.OptimisticDelete(ctx, "/registry/pods/ns/b", 1, kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil || staleDel.Succeeded || staleDel.KV == nil || staleDel.KV.ModRevision != revs["b"] {
		t.Fatalf("stale delete = %+v, %v", staleDel, err)
	}
	del, err := k.OptimisticDelete(ctx, "/registry/pods/ns/b", revs["b"], kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil || !del.Succeeded || del.Revision != 8 {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	gone, err := k.OptimisticDelete(ctx, "/registry/pods/ns/b", revs["b"], kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil || gone.Succeeded || gone.KV != nil {
		t.Fatalf("delete of deleted key = %+v, %v", gone, err)
	}

	// Future revisions are refused.
	if _, err := k.Get(ctx, "/registry/pods/ns/a", kubernetes.GetOptions{Revision: 100}); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("get at future revision err = %v", err)
	}

	// Status reports the database size and the emulated version.
	st, err := c.Status(ctx, c.Endpoints()[0])
	if err != nil || st.DbSize <= 0 || st.Version != EmulatedVersion {
		t.Fatalf("status = %+v, %v", st, err)
	}
}

// TestWatch watches like the apiserver's watch cache (prefix, from a
// revision, with previous values) and checks compaction errors.
func TestWatch(t *testing.T) {
	c, store := startServer(t)
	ctx := testCtx(t)
	k := c.Kubernetes
	var revs []int64
	for i := range 3 {
		r, err := k.OptimisticPut(ctx, fmt.Sprintf("/registry/cm/ns/%d", i), []byte("v1"), 0, kubernetes.PutOptions{})
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, r.Revision)
	}
	upd, err := k.OptimisticPut(ctx, "/registry/cm/ns/0", []byte("v2"), revs[0], kubernetes.PutOptions{GetOnFailure: true})
	if err != nil || !upd.Succeeded {
		t.Fatalf("update = %+v, %v", upd, err)
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := c.Watch(wctx, "/registry/cm/", clientv3.WithPrefix(), clientv3.WithRev(revs[2]), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	del, err := k.OptimisticDelete(ctx, "/registry/cm/ns/1", revs[1], kubernetes.DeleteOptions{GetOnFailure: true})
	if err != nil || !del.Succeeded {
		t.Fatalf("delete = %+v, %v", del, err)
	}
	want := []string{
		fmt.Sprintf("PUT /registry/cm/ns/2 %d <nil>", revs[2]),
		fmt.Sprintf("PUT /registry/cm/ns/0 %d v1", upd.Revision),
		fmt.Sprintf("DELETE /registry/cm/ns/1 %d v1", del.Revision),
	}
	var got []string
	for len(got) < len(want) {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch ended (open %v): %v", ok, resp.Err())
			}
			for _, e := range resp.Events {
				prev := "<nil>"
				if e.PrevKv != nil {
					prev = string(e.PrevKv.Value)
				}
				got = append(got, fmt.Sprintf("%s %s %d %s", e.Type, e.Kv.Key, e.Kv.ModRevision, prev))
			}
		case <-time.After(waitTimeout):
			t.Fatalf("timed out; events so far %q", got)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events = %q, want %q", got, want)
	}

	// A watch from a compacted revision is cancelled with the compaction.
	if _, err := store.Compact(ctx, upd.Revision); err != nil {
		t.Fatal(err)
	}
	cch := c.Watch(wctx, "/registry/cm/", clientv3.WithPrefix(), clientv3.WithRev(revs[1]))
	select {
	case resp := <-cch:
		if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != upd.Revision {
			t.Fatalf("watch from compacted revision = %v, compact revision %d", resp.Err(), resp.CompactRevision)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no answer to a watch from a compacted revision")
	}
	if _, err := k.Get(ctx, "/registry/cm/ns/0", kubernetes.GetOptions{Revision: revs[2]}); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get at compacted revision err = %v", err)
	}
}

// TestLeaseExpiry writes with a lease the way the apiserver stores events
// and checks the key is deleted, with a watch event, after its TTL.
func TestLeaseExpiry(t *testing.T) {
	c, _ := startServer(t)
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
		select {
		case resp := <-wch:
			if resp.Err() != nil {
				t.Fatal(resp.Err())
			}
			for _, e := range resp.Events {
				if e.Type == mvccpb.DELETE {
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
		case <-time.After(waitTimeout):
			t.Fatal("leased key did not expire")
		}
	}
}

// A Serve whose context ends before it starts serving stops cleanly: no
// error, and its listener is closed.
func TestServeCancelledBeforeStart(t *testing.T) {
	store, err := bolt.Open(filepath.Join(t.TempDir(), "peapod.db"), nil, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	lis, err := net.Listen("unix", filepath.Join(t.TempDir(), "etcd.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := New(store, nil).Serve(ctx, lis); err != nil {
		t.Fatalf("Serve after its context ended: %v, want a clean stop", err)
	}
	if _, err := lis.Accept(); err == nil {
		t.Fatal("the listener still accepts after Serve returned")
	}
}
