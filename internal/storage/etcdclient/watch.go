package etcdclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/metadata"

	"github.com/peapod-dev/peapod/internal/storage"
)

// watcher implements clientv3.Watcher over Backend.Watch. It behaves as
// clientv3's watcher talking to kine's watch server (kine's watch.go) does;
// see the package documentation for the flow.
type watcher struct {
	b        storage.Backend
	log      *slog.Logger
	interval time.Duration // kine's notifyInterval
	// ctx ends every watch and stream: it is cancelled by Close and ends
	// with the client's context.
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// streams holds the live streams by streamKey; nil once closed.
	streams map[string]*watchStream
	// wg counts the watch and stream goroutines.
	wg sync.WaitGroup
}

var _ clientv3.Watcher = (*watcher)(nil)

func newWatcher(ctx context.Context, b storage.Backend, log *slog.Logger, interval time.Duration) *watcher {
	ctx, cancel := context.WithCancel(ctx)
	return &watcher{
		b: b, log: log, interval: interval, ctx: ctx, cancel: cancel,
		streams: make(map[string]*watchStream),
	}
}

// watchStream is what one gRPC watch stream was: the watches whose
// contexts carry the same outgoing gRPC metadata (clientv3 opens one stream
// per metadata). Progress requests, their "all synced" check and the
// periodic progress notifications work per stream, as in kine.
type watchStream struct {
	key string
	// watches are the stream's live watches, guarded by watcher.mu.
	watches map[*watch]struct{}
	// cancel stops the stream's progress ticker.
	cancel context.CancelFunc
}

// watch is one Watch call: a Backend watch, and the goroutine that turns
// its batches into responses and hands them to the caller.
type watch struct {
	w *watcher
	// stream is nil for a watch that failed at once (compacted start).
	stream   *watchStream
	ctx      context.Context    // the caller's
	cancel   context.CancelFunc // ends the Backend watch
	startRev int64
	events   <-chan []*storage.Event // nil once the Backend watch ended
	errc     <-chan error
	out      chan clientv3.WatchResponse
	// progress is nil without WithProgressNotify. It receives kine's
	// progress revisions: 0 asks "are you synced?" (only a watch parked
	// waiting for events can receive), anything else is a periodic
	// progress notification for this watch.
	progress chan int64
	// notify receives the revision of a progress notification requested
	// with RequestProgress, for every watch of the stream.
	notify chan int64
	// lastRev is the revision of the last response queued.
	lastRev int64
	done    chan struct{}
}

// watchRequest is the part of clientv3's watch options kine looks at.
type watchRequest struct {
	key            string
	rev            int64
	progressNotify bool
	createdNotify  bool
}

// parseWatch applies the options as clientv3 does. The range end
// (WithPrefix, WithRange), WithPrevKV, filters and fragmentation are
// ignored, as kine's server ignores them: the key is matched kine style
// (a key ending in "/" is a prefix), and events always carry the previous
// version. clientv3.Op has no accessors for the notify flags, so they are
// read by reflection; TestWatchOptions pins this to the clientv3 version
// in go.mod.
func parseWatch(key string, opts []clientv3.OpOption) watchRequest {
	op := clientv3.NewOp()
	op.WithKeyBytes([]byte(key))
	for _, o := range opts {
		o(op)
	}
	v := reflect.ValueOf(op).Elem()
	return watchRequest{
		key:            string(op.KeyBytes()),
		rev:            op.Rev(),
		progressNotify: v.FieldByName("progressNotify").Bool(),
		createdNotify:  v.FieldByName("createdNotify").Bool(),
	}
}

// streamKey is clientv3's streamKeyFromCtx.
func streamKey(ctx context.Context) string {
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		return fmt.Sprintf("%+v", map[string][]string(md))
	}
	return ""
}

func closedWatchChan() clientv3.WatchChan {
	ch := make(chan clientv3.WatchResponse)
	close(ch)
	return ch
}

// Watch implements clientv3.Watcher. The Backend watch is set up before
// Watch returns, so a watch from the current revision sees every later
// write.
func (w *watcher) Watch(ctx context.Context, key string, opts ...clientv3.OpOption) clientv3.WatchChan {
	req := parseWatch(key, opts)
	if ctx.Err() != nil || w.ctx.Err() != nil {
		return closedWatchChan()
	}
	bctx, cancel := context.WithCancel(ctx)
	wr := w.b.Watch(bctx, req.key, req.rev)
	wt := &watch{
		w:        w,
		ctx:      ctx,
		cancel:   cancel,
		startRev: req.rev,
		out:      make(chan clientv3.WatchResponse, 1),
		notify:   make(chan int64),
		done:     make(chan struct{}),
	}
	var buf []clientv3.WatchResponse
	if wr.CompactRevision != 0 {
		// kine creates the watch, then cancels it with the compaction,
		// which clientv3 delivers before closing the channel.
		buf = append(buf, clientv3.WatchResponse{
			Header:          pb.ResponseHeader{Revision: wr.CurrentRevision},
			CompactRevision: wr.CompactRevision,
			Canceled:        true,
		})
	} else {
		wt.events, wt.errc = wr.Events, wr.Errorc
		if req.progressNotify {
			wt.progress = make(chan int64)
		}
	}

	w.mu.Lock()
	if w.streams == nil {
		w.mu.Unlock()
		cancel()
		return closedWatchChan()
	}
	if wt.events != nil {
		skey := streamKey(ctx)
		st := w.streams[skey]
		if st == nil {
			sctx, scancel := context.WithCancel(w.ctx)
			st = &watchStream{key: skey, watches: make(map[*watch]struct{}), cancel: scancel}
			w.streams[skey] = st
			w.wg.Add(1)
			go w.tick(sctx, st)
		}
		st.watches[wt] = struct{}{}
		wt.stream = st
	}
	w.wg.Add(1)
	w.mu.Unlock()

	if req.createdNotify {
		// kine's created response carries an empty header.
		wt.out <- clientv3.WatchResponse{Created: true}
	}
	go wt.run(buf)
	return wt.out
}

// run queues the Backend's events and progress notifications as
// responses and hands them to the caller, without ever blocking on the
// caller (clientv3 buffers without bound too). It ends, closing the
// channel, when the caller's context is done or the watcher closes
// (dropping what is queued, as clientv3 does), after delivering a
// compaction, or after delivering everything once the Backend watch ended.
func (wt *watch) run(buf []clientv3.WatchResponse) {
	w := wt.w
	defer func() {
		w.detach(wt)
		wt.cancel()
		close(wt.out)
		close(wt.done)
		w.wg.Done()
	}()
	head := 0 // buf[head:] is the queue
	for {
		var out chan<- clientv3.WatchResponse
		var next clientv3.WatchResponse
		if head < len(buf) {
			out, next = wt.out, buf[head]
		} else if wt.events == nil {
			return
		}
		select {
		case out <- next:
			buf[head] = clientv3.WatchResponse{}
			head++
			if head == len(buf) {
				buf, head = buf[:0], 0
			}
			if next.Err() != nil {
				return
			}
		case batch, ok := <-wt.events:
			buf = wt.receive(buf, batch, ok)
		case rev := <-wt.progress:
			if rev != 0 && rev >= wt.startRev {
				buf = wt.progressed(buf, rev)
			}
		case rev := <-wt.notify:
			buf = wt.progressed(buf, rev)
		case <-wt.ctx.Done():
			return
		case <-w.ctx.Done():
			return
		}
	}
}

// receive queues one response with the batch just received (ok is false
// if the channel was closed instead) and every batch already waiting, as
// kine does. When the Backend watch has ended it stops listening for
// progress; the caller's channel closes once the queue is delivered. (kine
// cancels the watch, which clientv3 turns into closing the channel
// without an error.)
func (wt *watch) receive(buf []clientv3.WatchResponse, batch []*storage.Event, ok bool) []clientv3.WatchResponse {
	var batches [][]*storage.Event
	for ok {
		if len(batch) > 0 {
			batches = append(batches, batch)
		}
		select {
		case batch, ok = <-wt.events:
			continue
		default:
		}
		break
	}
	if len(batches) > 0 {
		resp := eventsResponse(batches)
		wt.lastRev = resp.Header.Revision
		buf = append(buf, resp)
	}
	if !ok {
		wt.ended()
	}
	return buf
}

// ended notes the end of the Backend watch.
func (wt *watch) ended() {
	wt.events = nil
	wt.w.detach(wt)
	var err error
	select {
	case err = <-wt.errc:
	default:
	}
	switch {
	case err == nil:
	case errors.Is(err, storage.ErrWatchTooSlow):
		wt.w.log.Warn("etcd watch closed", "error", err)
	default:
		wt.w.log.Debug("etcd watch closed", "error", err)
	}
}

// progressed queues a progress notification at rev. Events that are
// already waiting go first, and a notification older than the last
// response is dropped (the events queued say more), so notifications never
// overtake or go behind events.
func (wt *watch) progressed(buf []clientv3.WatchResponse, rev int64) []clientv3.WatchResponse {
	if wt.events != nil {
		select {
		case batch, ok := <-wt.events:
			buf = wt.receive(buf, batch, ok)
		default:
		}
	}
	if rev < wt.lastRev {
		return buf
	}
	wt.lastRev = rev
	return append(buf, clientv3.WatchResponse{Header: pb.ResponseHeader{Revision: rev}})
}

// eventsResponse converts batches of events into one response at the
// revision of the last event, with the events, their versions and keys
// allocated together.
func eventsResponse(batches [][]*storage.Event) clientv3.WatchResponse {
	var n, nkv, keyBytes int
	for _, batch := range batches {
		for _, e := range batch {
			n++
			nkv++
			keyBytes += len(e.KV.Key)
			if e.PrevKV != nil {
				nkv++
			}
		}
	}
	events := make([]clientv3.Event, n)
	ptrs := make([]*clientv3.Event, n)
	kvs := make([]mvccpb.KeyValue, nkv)
	keys := make([]byte, 0, keyBytes)
	var last int64
	i, j := 0, 0
	for _, batch := range batches {
		for _, e := range batch {
			start := len(keys)
			keys = append(keys, e.KV.Key...)
			key := keys[start:len(keys):len(keys)]
			ev := &events[i]
			ptrs[i] = ev
			i++
			if e.Delete {
				ev.Type = mvccpb.DELETE
			}
			ev.Kv = setKV(&kvs[j], key, e.KV)
			j++
			if e.PrevKV != nil {
				// The previous version of a key has the same key.
				ev.PrevKv = setKV(&kvs[j], key, e.PrevKV)
				j++
			}
			last = e.KV.ModRevision
		}
	}
	return clientv3.WatchResponse{Header: pb.ResponseHeader{Revision: last}, Events: ptrs}
}

func setKV(dst *mvccpb.KeyValue, key []byte, kv *storage.KeyValue) *mvccpb.KeyValue {
	dst.Key = key
	dst.Value = kv.Value
	dst.Lease = kv.Lease
	dst.CreateRevision = kv.CreateRevision
	dst.ModRevision = kv.ModRevision
	return dst
}

// detach removes wt from its stream, and the stream once it is empty.
func (w *watcher) detach(wt *watch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := wt.stream
	if st == nil {
		return
	}
	wt.stream = nil
	delete(st.watches, wt)
	if len(st.watches) == 0 {
		st.cancel()
		if w.streams != nil && w.streams[st.key] == st {
			delete(w.streams, st.key)
		}
	}
}

// tick sends the stream's periodic progress notifications: every
// interval (plus up to a tenth of jitter, as kine), the current revision
// to every progress-notify watch that is synced (parked waiting for
// events), as kine's ProgressIfSynced.
func (w *watcher) tick(ctx context.Context, st *watchStream) {
	defer w.wg.Done()
	interval := w.interval
	if j := interval / 10; j > 0 {
		interval += rand.N(j)
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		w.mu.Lock()
		hasProgress := false
		for wt := range st.watches {
			hasProgress = hasProgress || wt.progress != nil
		}
		w.mu.Unlock()
		if !hasProgress {
			continue
		}
		rev, err := w.b.CurrentRevision(ctx)
		if err != nil {
			w.log.Error("get current revision for watch progress", "error", err)
			continue
		}
		w.mu.Lock()
		for wt := range st.watches {
			if wt.progress != nil {
				select {
				case wt.progress <- rev:
				default:
				}
			}
		}
		w.mu.Unlock()
	}
}

// RequestProgress implements clientv3.Watcher as kine's Progress: if every
// progress-notify watch of the stream of ctx is synced (parked waiting for
// events), every watch of the stream gets a progress notification at the
// current revision; otherwise the request is dropped, as etcd does.
func (w *watcher) RequestProgress(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	w.mu.Lock()
	if w.streams == nil {
		w.mu.Unlock()
		return errors.New("no stream found for context")
	}
	st := w.streams[streamKey(ctx)]
	if st == nil {
		w.mu.Unlock()
		return nil
	}
	for wt := range st.watches {
		if wt.progress == nil {
			continue
		}
		select {
		case wt.progress <- 0:
		default:
			w.mu.Unlock()
			return nil
		}
	}
	targets := make([]*watch, 0, len(st.watches))
	for wt := range st.watches {
		targets = append(targets, wt)
	}
	w.mu.Unlock()

	rev, err := w.b.CurrentRevision(ctx)
	if err != nil {
		w.log.Error("get current revision for watch progress", "error", err)
		return nil
	}
	for _, wt := range targets {
		select {
		case wt.notify <- rev:
		case <-wt.done:
		}
	}
	return nil
}

// Close implements clientv3.Watcher: it ends every watch, closing their
// channels, and waits for their goroutines.
func (w *watcher) Close() error {
	w.mu.Lock()
	w.streams = nil
	w.mu.Unlock()
	w.cancel()
	w.wg.Wait()
	return nil
}
