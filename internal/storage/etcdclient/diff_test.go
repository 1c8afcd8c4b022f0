package etcdclient

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"google.golang.org/grpc/status"

	"github.com/peapod-dev/peapod/internal/storage/bolt"
)

// The descriptions below print everything a caller can observe of a
// response or error, so two of them are equal exactly when the two clients
// answered alike.

func descErr(err error) string {
	if err == nil {
		return "ok"
	}
	_, etcd := err.(rpctypes.EtcdError)
	return fmt.Sprintf("error(code=%s etcd=%v compacted=%v futurerev=%v): %v",
		status.Code(err), etcd, err == rpctypes.ErrCompacted, err == rpctypes.ErrFutureRev, err)
}

func descKV(kv *mvccpb.KeyValue) string {
	if kv == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{%s=%q create=%d mod=%d ver=%d lease=%d}", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease)
}

func descKVs(kvs []*mvccpb.KeyValue) string {
	s := make([]string, len(kvs))
	for i, kv := range kvs {
		s[i] = descKV(kv)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func descHeader(h *pb.ResponseHeader) string {
	if h == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{rev=%d cluster=%d member=%d term=%d}", h.Revision, h.ClusterId, h.MemberId, h.RaftTerm)
}

func descGet(r *clientv3.GetResponse, err error) string {
	if err != nil {
		return descErr(err)
	}
	return fmt.Sprintf("header=%s kvs=%s more=%v count=%d", descHeader(r.Header), descKVs(r.Kvs), r.More, r.Count)
}

func descTxn(r *clientv3.TxnResponse, err error) string {
	if err != nil {
		return descErr(err)
	}
	var ops []string
	for _, op := range r.Responses {
		switch {
		case op.GetResponseRange() != nil:
			rr := op.GetResponseRange()
			ops = append(ops, fmt.Sprintf("range(header=%s kvs=%s count=%d)", descHeader(rr.Header), descKVs(rr.Kvs), rr.Count))
		case op.GetResponsePut() != nil:
			ops = append(ops, fmt.Sprintf("put(header=%s prev=%s)", descHeader(op.GetResponsePut().Header), descKV(op.GetResponsePut().PrevKv)))
		case op.GetResponseDeleteRange() != nil:
			dr := op.GetResponseDeleteRange()
			ops = append(ops, fmt.Sprintf("delete(header=%s deleted=%d prev=%s)", descHeader(dr.Header), dr.Deleted, descKVs(dr.PrevKvs)))
		default:
			ops = append(ops, fmt.Sprintf("%v", op))
		}
	}
	return fmt.Sprintf("header=%s succeeded=%v ops=%v", descHeader(r.Header), r.Succeeded, ops)
}

func descWatch(r clientv3.WatchResponse) string {
	var evs []string
	for _, e := range r.Events {
		evs = append(evs, fmt.Sprintf("%s %s prev=%s", e.Type, descKV(e.Kv), descKV(e.PrevKv)))
	}
	return fmt.Sprintf("rev=%d created=%v canceled=%v compact=%d progress=%v err=%s events=%v",
		r.Header.Revision, r.Created, r.Canceled, r.CompactRevision, r.IsProgressNotify(), descErr(r.Err()), evs)
}

// side is one of the two clients under comparison, with its store.
type side struct {
	name  string
	c     *kubernetes.Client
	store *bolt.Store
}

// TestDifferential runs the same operations through the in-process client
// and through a gRPC client of package etcdserver (kine's server), each
// over a fresh bolt store, and compares everything the caller sees:
// revisions, versions, flags and errors (values, codes and messages). It
// covers the calls the kube-apiserver makes and the edge cases of kine's
// handling of them.
func TestDifferential(t *testing.T) {
	inStore, grpcStore := openStore(t), openStore(t)
	sides := [2]side{
		{"in-process", newTestClient(t, inStore, 0), inStore},
		{"gRPC", startGRPC(t, grpcStore), grpcStore},
	}
	ctx := testCtx(t)

	// do runs op on both sides and compares the descriptions.
	do := func(name string, op func(s side) string) string {
		t.Helper()
		a, b := op(sides[0]), op(sides[1])
		if a != b {
			t.Errorf("%s:\n  in-process: %s\n  gRPC:       %s", name, a, b)
		} else {
			t.Logf("%s: %s", name, a)
		}
		return a
	}
	put := func(key, value string, rev int64, opts kubernetes.PutOptions) func(s side) string {
		return func(s side) string {
			r, err := s.c.Kubernetes.OptimisticPut(ctx, key, []byte(value), rev, opts)
			if err != nil {
				return descErr(err)
			}
			return fmt.Sprintf("succeeded=%v rev=%d kv=%s", r.Succeeded, r.Revision, descKV(r.KV))
		}
	}
	del := func(key string, rev int64, opts kubernetes.DeleteOptions) func(s side) string {
		return func(s side) string {
			r, err := s.c.Kubernetes.OptimisticDelete(ctx, key, rev, opts)
			if err != nil {
				return descErr(err)
			}
			return fmt.Sprintf("succeeded=%v rev=%d kv=%s", r.Succeeded, r.Revision, descKV(r.KV))
		}
	}
	get := func(key string, rev int64) func(s side) string {
		return func(s side) string {
			r, err := s.c.Kubernetes.Get(ctx, key, kubernetes.GetOptions{Revision: rev})
			if err != nil {
				return descErr(err)
			}
			return fmt.Sprintf("rev=%d kv=%s", r.Revision, descKV(r.KV))
		}
	}
	list := func(prefix string, opts kubernetes.ListOptions) func(s side) string {
		return func(s side) string {
			r, err := s.c.Kubernetes.List(ctx, prefix, opts)
			if err != nil {
				return descErr(err)
			}
			return fmt.Sprintf("rev=%d count=%d kvs=%s", r.Revision, r.Count, descKVs(r.Kvs))
		}
	}
	count := func(prefix string) func(s side) string {
		return func(s side) string {
			n, err := s.c.Kubernetes.Count(ctx, prefix, kubernetes.CountOptions{})
			return fmt.Sprintf("%d %s", n, descErr(err))
		}
	}
	kvGet := func(key string, opts ...clientv3.OpOption) func(s side) string {
		return func(s side) string { return descGet(s.c.KV.Get(ctx, key, opts...)) }
	}

	// Writes, in the shapes the apiserver's store makes and some it does not.
	const pods = "/registry/pods/"
	do("create a", put(pods+"ns/a", "a1", 0, kubernetes.PutOptions{}))
	do("create a again", put(pods+"ns/a", "a-dup", 0, kubernetes.PutOptions{}))
	do("create b with GetOnFailure", put(pods+"ns/b", "b1", 0, kubernetes.PutOptions{GetOnFailure: true}))
	do("create b again with GetOnFailure", put(pods+"ns/b", "b-dup", 0, kubernetes.PutOptions{GetOnFailure: true}))
	do("grant", func(s side) string {
		r, err := s.c.Grant(ctx, 3600)
		if err != nil {
			return descErr(err)
		}
		return fmt.Sprintf("id=%d ttl=%d error=%q header=%s", r.ID, r.TTL, r.Error, descHeader(r.ResponseHeader))
	})
	do("create c with lease", put(pods+"ns/c", "c1", 0, kubernetes.PutOptions{LeaseID: 3600}))
	do("create d", put(pods+"ns/d", "d1", 0, kubernetes.PutOptions{}))
	do("create service", put("/registry/services/ns/s", "s1", 0, kubernetes.PutOptions{}))
	do("create key without slash", put("/registry/podsx", "x", 0, kubernetes.PutOptions{}))
	do("update a", put(pods+"ns/a", "a2", 2, kubernetes.PutOptions{GetOnFailure: true}))
	do("stale update a", put(pods+"ns/a", "a3", 2, kubernetes.PutOptions{GetOnFailure: true}))
	do("update a without GetOnFailure", put(pods+"ns/a", "a3", 9, kubernetes.PutOptions{}))
	do("update missing key", put(pods+"ns/zz", "z", 5, kubernetes.PutOptions{GetOnFailure: true}))
	do("update with lease", put(pods+"ns/d", "d2", 5, kubernetes.PutOptions{GetOnFailure: true, LeaseID: 3600}))

	// Reads.
	do("get a", get(pods+"ns/a", 0))
	do("get a before its update", get(pods+"ns/a", 7))
	do("get d before its creation", get(pods+"ns/d", 4))
	do("get missing", get(pods+"ns/zz", 0))
	do("get at future revision", get(pods+"ns/a", 100))
	do("list", list(pods, kubernetes.ListOptions{}))
	do("list limit 2", list(pods, kubernetes.ListOptions{Limit: 2}))
	do("list continue", list(pods, kubernetes.ListOptions{Limit: 2, Revision: 9, Continue: pods + "ns/b\x00"}))
	do("list continue without NUL", list(pods, kubernetes.ListOptions{Limit: 2, Revision: 9, Continue: pods + "ns/b"}))
	do("list limit beyond end", list(pods, kubernetes.ListOptions{Limit: 10}))
	do("list at old revision", list(pods, kubernetes.ListOptions{Revision: 5}))
	do("list at future revision", list(pods, kubernetes.ListOptions{Revision: 100}))
	do("list without trailing slash", list("/registry/pods", kubernetes.ListOptions{}))
	do("list everything", list("", kubernetes.ListOptions{}))
	do("count", count(pods))
	do("count everything", count(""))
	do("kv get key", kvGet(pods+"ns/a"))
	do("kv get prefix", kvGet(pods, clientv3.WithPrefix()))
	do("kv get prefix limit", kvGet(pods, clientv3.WithPrefix(), clientv3.WithLimit(1)))
	do("kv get prefix count", kvGet(pods, clientv3.WithPrefix(), clientv3.WithCountOnly()))
	do("kv get prefix at revision", kvGet(pods, clientv3.WithPrefix(), clientv3.WithRev(6)))
	do("kv get range", kvGet(pods+"ns/b", clientv3.WithRange(pods+"ns/d")))
	do("kv get from key", kvGet(pods, clientv3.WithFromKey()))
	do("kv get keys only", kvGet(pods, clientv3.WithPrefix(), clientv3.WithKeysOnly()))
	do("kv get serializable", kvGet(pods, clientv3.WithSerializable()))
	do("kv get sorted", kvGet(pods, append(clientv3.WithLastKey(), clientv3.WithPrefix())...))
	do("kv get min mod revision", kvGet(pods, clientv3.WithPrefix(), clientv3.WithMinModRev(3)))
	do("kv put", func(s side) string {
		_, err := s.c.KV.Put(ctx, pods+"ns/p", "p")
		return descErr(err)
	})
	do("kv delete", func(s side) string {
		_, err := s.c.KV.Delete(ctx, pods+"ns/a")
		return descErr(err)
	})
	do("kv txn create with prev kv", func(s side) string {
		return descTxn(s.c.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(pods+"ns/p"), "=", 0)).
			Then(clientv3.OpPut(pods+"ns/p", "p", clientv3.WithPrevKV())).Commit())
	})
	do("kv txn other shape", func(s side) string {
		return descTxn(s.c.KV.Txn(ctx).If(clientv3.Compare(clientv3.Value(pods+"ns/a"), "=", "a2")).
			Then(clientv3.OpGet(pods + "ns/a")).Commit())
	})
	do("kv txn compactor", func(s side) string {
		// The kube-apiserver compactor's transaction.
		return descTxn(s.c.KV.Txn(ctx).If(clientv3.Compare(clientv3.Version("compact_rev_key"), "=", 0)).
			Then(clientv3.OpPut("compact_rev_key", "5")).Else(clientv3.OpGet("compact_rev_key")).Commit())
	})
	do("kv txn update", func(s side) string {
		return descTxn(s.c.KV.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(pods+"ns/b"), "=", 3)).
			Then(clientv3.OpPut(pods+"ns/b", "b2")).Else(clientv3.OpGet(pods + "ns/b")).Commit())
	})
	do("kv txn unconditional delete", func(s side) string {
		return descTxn(s.c.KV.Txn(ctx).Then(clientv3.OpGet(pods+"ns/b"), clientv3.OpDelete(pods+"ns/b")).Commit())
	})

	// Deletes.
	do("recreate b", put(pods+"ns/b", "b3", 0, kubernetes.PutOptions{}))
	do("stale delete b", del(pods+"ns/b", 1, kubernetes.DeleteOptions{GetOnFailure: true}))
	do("delete b", del(pods+"ns/b", 12, kubernetes.DeleteOptions{GetOnFailure: true}))
	do("delete b again", del(pods+"ns/b", 12, kubernetes.DeleteOptions{GetOnFailure: true}))
	do("delete missing unconditionally", del(pods+"ns/zz", 0, kubernetes.DeleteOptions{GetOnFailure: true}))
	do("delete c unconditionally", del(pods+"ns/c", 0, kubernetes.DeleteOptions{GetOnFailure: true}))
	do("delete without GetOnFailure", del(pods+"ns/d", 9, kubernetes.DeleteOptions{}))
	do("list after deletes", list(pods, kubernetes.ListOptions{}))
	do("get c before its deletion", get(pods+"ns/c", 13))

	// Leases and maintenance.
	do("lease revoke", func(s side) string { _, err := s.c.Revoke(ctx, 3600); return descErr(err) })
	do("lease time to live", func(s side) string { _, err := s.c.TimeToLive(ctx, 3600); return descErr(err) })
	do("lease leases", func(s side) string { _, err := s.c.Leases(ctx); return descErr(err) })
	do("status", func(s side) string {
		r, err := s.c.Status(ctx, endpointOf(s))
		if err != nil {
			return descErr(err)
		}
		return fmt.Sprintf("version=%s dbsize>0=%v header=%s leader=%d", r.Version, r.DbSize > 0, descHeader(r.Header), r.Leader)
	})
	do("alarm list", func(s side) string { _, err := s.c.AlarmList(ctx); return descErr(err) })
	do("defragment", func(s side) string { _, err := s.c.Defragment(ctx, endpointOf(s)); return descErr(err) })
	do("hash kv", func(s side) string { _, err := s.c.HashKV(ctx, endpointOf(s), 0); return descErr(err) })
	do("move leader", func(s side) string { _, err := s.c.MoveLeader(ctx, 1); return descErr(err) })

	// Watch from an old revision, with previous values: the history, a
	// requested progress notification, then a live event.
	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	var chans [2]clientv3.WatchChan
	for i, s := range sides {
		chans[i] = s.c.Watch(watchCtx, pods, clientv3.WithPrefix(), clientv3.WithRev(3), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	}
	watchNext := func(name string) {
		t.Helper()
		do(name, func(s side) string {
			i := 0
			if s.name == "gRPC" {
				i = 1
			}
			for {
				r, ok := next(t, chans[i])
				if !ok {
					return "closed"
				}
				if s.name == "gRPC" && r.Header.Revision == 0 && len(r.Events) == 0 && !r.Created && !r.Canceled {
					continue // kine's empty response to a progress probe; see package doc
				}
				return descWatch(r)
			}
		})
	}
	watchNext("watch created")
	watchNext("watch history")
	do("progress", func(s side) string {
		i := 0
		if s.name == "gRPC" {
			i = 1
		}
		// A progress request is dropped while a watch is busy; ask until
		// one is answered.
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if err := s.c.RequestProgress(watchCtx); err != nil {
				return descErr(err)
			}
			select {
			case r, ok := <-chans[i]:
				if !ok {
					return "closed"
				}
				if r.Header.Revision == 0 && len(r.Events) == 0 && !r.Canceled {
					continue
				}
				return descWatch(r)
			case <-tick.C:
			case <-ctx.Done():
				return "no progress notification"
			}
		}
	})
	do("create e", put(pods+"ns/e", "e1", 0, kubernetes.PutOptions{}))
	watchNext("watch live event")
	do("create unwatched key", put("/registry/services/ns/t", "t1", 0, kubernetes.PutOptions{}))
	do("update e", put(pods+"ns/e", "e2", 15, kubernetes.PutOptions{GetOnFailure: true}))
	watchNext("watch skips unwatched keys")
	cancelWatch()
	watchNext("watch after cancel")

	// A watch of one key (no prefix).
	oneCtx, cancelOne := context.WithCancel(ctx)
	defer cancelOne()
	for i, s := range sides {
		chans[i] = s.c.Watch(oneCtx, pods+"ns/a", clientv3.WithRev(2))
	}
	watchNext("watch one key")
	cancelOne()

	// Compaction.
	do("compact", func(s side) string {
		rev, err := s.store.Compact(ctx, 10)
		return fmt.Sprintf("%d %s", rev, descErr(err))
	})
	do("get at compacted revision", get(pods+"ns/a", 8))
	do("get at compact revision + 1", get(pods+"ns/a", 11))
	do("list at compacted revision", list(pods, kubernetes.ListOptions{Revision: 10}))
	do("count after compaction", count(pods))
	do("kv compact", func(s side) string {
		r, err := s.c.Compact(ctx, 12)
		if err != nil {
			return descErr(err)
		}
		return descHeader(r.Header)
	})
	do("kv compact compacted", func(s side) string { _, err := s.c.Compact(ctx, 11); return descErr(err) })
	do("kv compact future", func(s side) string { _, err := s.c.Compact(ctx, 100); return descErr(err) })
	compCtx, cancelComp := context.WithCancel(ctx)
	defer cancelComp()
	for i, s := range sides {
		chans[i] = s.c.Watch(compCtx, pods, clientv3.WithPrefix(), clientv3.WithRev(5), clientv3.WithCreatedNotify())
	}
	watchNext("compacted watch created")
	watchNext("compacted watch")
	watchNext("compacted watch after error")
}

// endpointOf is an endpoint the side's client can name.
func endpointOf(s side) string {
	if eps := s.c.Endpoints(); len(eps) > 0 {
		return eps[0]
	}
	return Endpoint
}
