// Package etcdclient is an in-process etcd v3 client over a
// storage.Backend: the *kubernetes.Client the kube-apiserver's etcd3
// storage is built from (etcd3.New), with no gRPC, HTTP/2, marshalling or
// socket in between. It replaces the hop through package etcdserver (kine's
// gRPC server on a unix socket) and keeps its semantics exactly: every
// answer, revision and error value is the one the apiserver got through
// the gRPC client from kine's server over the same Backend (kine v0.13.9,
// pkg/server, with etcdserver's adapter; TestDifferential compares the
// two).
//
// # What is served
//
// New builds a clientv3.Client with clientv3.NewCtxClient and sets its
// services:
//
//   - Kubernetes (kubernetes.Interface: Get, List, Count, OptimisticPut,
//     OptimisticDelete), the calls the etcd3 store makes per request, are
//     served straight from the Backend by k8sKV, without building etcd
//     requests.
//   - KV is clientv3's own KV (clientv3.NewKVFromKVClient) over kvClient,
//     an in-process pb.KVClient: clientv3 turns Ops into requests and maps
//     responses and errors as it does over gRPC, so every option of
//     KV.Get, KV.Txn and KV.Compact behaves as through kine. Range serves
//     a key or a prefix with limit, revision and count-only; keysOnly,
//     serializable, sorting and the min/max revision filters fail as kine
//     refuses them. Txn serves kine's shapes (create, update, delete, the
//     compactor's transaction, which always fails its compare so the
//     apiserver never compacts) and refuses the others. Put and
//     DeleteRange are refused.
//   - Watcher (watcher): Watch and RequestProgress, below.
//   - Lease: Grant returns a lease whose ID is its TTL in seconds (the
//     Backend expires keys by it; see storage.KeyValue.Lease); Revoke,
//     TimeToLive, Leases, KeepAlive and KeepAliveOnce fail with kine's
//     "... is not supported" errors.
//   - Maintenance: Status reports EmulatedVersion and Backend.DbSize; the
//     rest fails with kine's errors.
//   - Cluster and Auth fail with ErrNotSupported.
//
// kv holds kine's request handling, shared by k8sKV and kvClient: a range
// without a range end is a Get of one key; a range [key, end) lists the
// prefix that end names (its last byte decremented, "/" appended when
// missing) after the start key with its trailing NUL bytes removed, so the
// apiserver's continue key "last\x00" lists after "last"; a limited list
// reads limit+1 keys and, when there are more, counts the rest at the
// revision of the read. An update with expected revision 0 is a create
// that reads the current value back on failure; a delete with expected
// revision 0 is unconditional.
//
// # Errors
//
// Errors take the two steps of the gRPC hop (errors.go): serverError is
// what kine's server sends for a Backend error, clientError what clientv3
// makes of it. So ErrCompacted and ErrFutureRev come back as
// rpctypes.ErrCompacted and rpctypes.ErrFutureRev (compared with == by the
// etcd3 store), a call whose context is done returns ctx.Err(), and other
// errors are gRPC status errors with kine's code and message, which here
// also unwrap to the Backend's error.
//
// # Watches
//
// A Watch call parses clientv3's options (the notify flags by reflection:
// clientv3.Op has no accessors for them), starts a Backend watch before
// returning, and runs one goroutine that turns the Backend's batches into
// clientv3.WatchResponses and hands them to the caller over a channel with
// clientv3's buffer of one, queueing without bound behind it as clientv3
// does. As in kine, the range end, filters and WithPrevKV are ignored: the
// key is matched kine style (a key ending in "/" is a prefix) and events
// always carry the previous version. The batches waiting when the
// goroutine wakes make one response, at the revision of its last event.
//
// Watches are grouped in streams by their context's outgoing gRPC
// metadata, as clientv3 groups them in gRPC streams (the apiserver's all
// carry WithRequireLeader's). Per stream, as kine's watch server:
//
//   - RequestProgress(ctx) first checks that every WithProgressNotify watch
//     of ctx's stream is synced, that is parked waiting for events (a
//     non-blocking send); if one is busy the request is dropped, as etcd
//     drops it. Otherwise every watch of the stream, with or without
//     WithProgressNotify, gets a progress notification (a response with no
//     events) at Backend.CurrentRevision. The kube-apiserver's watch cache
//     asks for these to serve consistent reads; FeatureClient lets it find
//     out that it may.
//   - Every notifyInterval (5 s, plus up to a tenth of jitter) each synced
//     WithProgressNotify watch gets a progress notification at the current
//     revision, once that revision has reached the watch's start revision.
//
// A watch from a compacted revision gets one response with
// CompactRevision, Canceled and the current revision (Err() is
// rpctypes.ErrCompacted), after the Created response if asked
// WithCreatedNotify (whose header is empty, as kine's), and its channel
// closes. When the Backend ends a watch (ErrWatchTooSlow, a closed
// Backend), the channel closes without an error response after the
// responses already queued, as clientv3 closes it on kine's cancellation;
// the caller watches again from its last revision. Cancelling the watch's
// context, closing the client or ending New's context closes the channel
// at once, dropping what is queued, as clientv3 does.
//
// Where the gRPC path's behaviour depended on goroutine timing, this
// client takes the well-defined outcome: the Backend watch is in place
// when Watch returns (kine starts it after answering, so a write just
// after a watch from the current revision could be missed); a progress
// notification goes after the events already waiting for the watch and
// is dropped when they are newer (kine sends it from another goroutine);
// and the empty responses with revision 0 that kine sends to a watch from
// revision 0 when probing whether it is synced are not sent (they carry
// nothing, and the etcd3 store ignores them). Bolt's CurrentRevision can
// still run ahead of a watch's Events channel by its pump goroutine, so a
// notification can overtake an event being handed over, as over gRPC.
//
// Other differences from the gRPC client, none on a path the apiserver
// takes: a Backend closed under a read fails at once with Unavailable
// (clientv3 retries reads that fail so), KeepAlive fails at once (clientv3
// would retry the stream until its context ends), Snapshot fails at once
// (instead of at the first Read), and MemberList fails (kine answers with a
// made-up member).
//
// # Values
//
// Values are not copied. The bolt backend returns a fresh slice for every
// value it reads (decodeRecord clones it out of the mmap) and copies the
// values it is given to write, so read values are the caller's; watch
// event values are shared by every watcher of the same commit (the Backend
// contract says so), so callers must not modify them. The etcd3 store and
// its transformers only read them.
//
// # Use
//
//	client := etcdclient.New(ctx, backend, log)
//	etcdfeature.DefaultFeatureSupportChecker.CheckClient(ctx, etcdclient.FeatureClient(client), storage.RequestWatchProgress)
//	store := etcd3.New(client, codec, ...)
//
// New writes the health key "/registry/health" if missing, as etcdserver
// does when it starts serving, so the revision is never 0. Closing the
// client ends its watches (Close returns context.Canceled, as for every
// client of clientv3.NewCtxClient); the Backend stays open.
package etcdclient
