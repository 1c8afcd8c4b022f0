package bolt

import (
	"context"
	"errors"
	"strings"
	"sync"

	bbolt "go.etcd.io/bbolt"

	"github.com/peapod-dev/peapod/internal/storage"
)

// matches reports whether key is selected by prefix, kine style: a prefix
// ending in "/" selects the keys under it, anything else selects itself.
func matches(prefix, key string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(key, prefix)
	}
	return key == prefix
}

// broadcaster hands the events of each commit to the live subscribers,
// straight into each watcher's Events channel. Publishing happens before the
// store's current revision moves on (see the writer), so once CurrentRevision
// reports R, every event up to R is already in the channels of the watchers
// it matches: a progress report at R given to a watcher whose channel is
// drained can never overtake one of its events. Publishing never blocks: a
// watcher whose channel is full is ended with storage.ErrWatchTooSlow.
type broadcaster struct {
	mu     sync.Mutex
	rev    int64 // revision of the last published commit
	subs   map[*subscription]struct{}
	closed bool
}

type subscription struct {
	prefix string
	// from is the first revision to deliver: commits the history replay
	// already covered are skipped.
	from int64
	out  chan []*storage.Event
	errc chan error
	// pending holds the batches published while the history replay is
	// being read and queued; nil once the subscription is live.
	pending [][]*storage.Event
	live    bool
	ended   bool
}

func newBroadcaster(rev int64) *broadcaster {
	return &broadcaster{rev: rev, subs: make(map[*subscription]struct{})}
}

// subscribe registers a subscriber that holds its batches back until
// activate, and returns the revision it starts after: it receives exactly
// the commits with revisions above it.
func (b *broadcaster) subscribe(prefix string, out chan []*storage.Event, errc chan error) (*subscription, int64) {
	sub := &subscription{prefix: prefix, out: out, errc: errc}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		b.end(sub, storage.ErrClosed)
		return sub, b.rev
	}
	b.subs[sub] = struct{}{}
	return sub, b.rev
}

// activate makes sub live from revision from on: history (the replay of
// the revisions before the subscription) goes out first, then the batches
// held back since subscribe, then every later commit as it is published.
func (b *broadcaster) activate(sub *subscription, history []*storage.Event, from int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if sub.ended {
		return
	}
	sub.from, sub.live = from, true
	if len(history) > 0 {
		// The channel is empty: nothing was sent before going live.
		sub.out <- history
	}
	pending := sub.pending
	sub.pending = nil
	for _, batch := range pending {
		if !b.deliver(sub, batch) {
			return
		}
	}
}

// deliver sends sub's share of a commit without blocking, ending sub when its
// channel is full. It reports whether sub is still subscribed. b.mu is held.
func (b *broadcaster) deliver(sub *subscription, batch []*storage.Event) bool {
	for len(batch) > 0 && batch[0].KV.ModRevision < sub.from {
		batch = batch[1:]
	}
	if len(batch) == 0 {
		return true
	}
	select {
	case sub.out <- batch:
		return true
	default:
		delete(b.subs, sub)
		b.end(sub, storage.ErrWatchTooSlow)
		return false
	}
}

// end closes sub's channel, after handing it err when there is one. b.mu is
// held (or sub was never shared).
func (b *broadcaster) end(sub *subscription, err error) {
	if sub.ended {
		return
	}
	sub.ended = true
	if err != nil {
		sub.errc <- err
	}
	close(sub.out)
}

// unsubscribe ends sub (the watcher's context is done, or the store closes
// with err).
func (b *broadcaster) unsubscribe(sub *subscription, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.subs, sub)
	b.end(sub, err)
}

// publish delivers the events of the commit that ended at rev. It is only
// called by the writer goroutine, in commit order, before the store's
// revision moves to rev.
func (b *broadcaster) publish(rev int64, events []*storage.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rev = rev
	for sub := range b.subs {
		batch := filterEvents(events, sub.prefix)
		if len(batch) == 0 {
			continue
		}
		if !sub.live {
			if cap(sub.out) > 0 && len(sub.pending) >= cap(sub.out) {
				delete(b.subs, sub)
				b.end(sub, storage.ErrWatchTooSlow)
				continue
			}
			sub.pending = append(sub.pending, batch)
			continue
		}
		b.deliver(sub, batch)
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		delete(b.subs, sub)
		b.end(sub, storage.ErrClosed)
	}
}

// filterEvents returns the events whose keys match prefix, sharing the
// input slice when all of them do.
func filterEvents(events []*storage.Event, prefix string) []*storage.Event {
	for i, e := range events {
		if !matches(prefix, e.KV.Key) {
			out := append(make([]*storage.Event, 0, len(events)-1), events[:i]...)
			for _, e := range events[i+1:] {
				if matches(prefix, e.KV.Key) {
					out = append(out, e)
				}
			}
			return out
		}
	}
	return events
}

// Watch implements storage.Backend. It subscribes to live commits first,
// at a known revision R, then reads the log for revisions from revision up
// to R (in one read transaction, before returning, so a compacted start is
// reported exactly and the replay is queued ahead of any live event) and
// continues with the live events, so nothing is missed or repeated. Event
// values are shared between watchers and must not be modified.
func (s *Store) Watch(ctx context.Context, prefix string, revision int64) storage.WatchResult {
	events := make(chan []*storage.Event, s.opts.WatchBuffer)
	errc := make(chan error, 1)
	fail := func(cur int64, err error) storage.WatchResult {
		errc <- err
		close(events)
		return storage.WatchResult{CurrentRevision: cur, Events: events, Errorc: errc}
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return fail(s.rev.Load(), storage.ErrClosed)
	}
	s.bg.Add(1)
	s.closeMu.RUnlock()

	sub, subRev := s.bcast.subscribe(prefix, events, errc)
	if revision <= 0 {
		revision = subRev + 1
	}
	history, compact, err := s.history(prefix, revision, subRev)
	if err != nil || revision <= compact {
		s.bcast.unsubscribe(sub, nil)
		s.bg.Done()
		if err == nil || errors.Is(err, storage.ErrCompacted) {
			return storage.WatchResult{CurrentRevision: subRev, CompactRevision: compact}
		}
		// The subscription's channels are spent; report on fresh ones.
		events, errc = make(chan []*storage.Event, 1), make(chan error, 1)
		return fail(subRev, err)
	}
	// The broadcaster sends only commits after subRev; skipping those
	// before revision as well keeps a replayed revision from ever being
	// delivered twice.
	s.bcast.activate(sub, history, max(revision, subRev+1))
	go func() {
		defer s.bg.Done()
		select {
		case <-ctx.Done():
			s.bcast.unsubscribe(sub, nil)
		case <-s.done:
			s.bcast.unsubscribe(sub, storage.ErrClosed)
		}
	}()
	return storage.WatchResult{CurrentRevision: subRev, Events: events, Errorc: errc}
}

// history returns the events for keys matching prefix with revisions in
// [from, upto], read in one transaction, and the compact revision. It fails
// with storage.ErrCompacted if from is compacted.
func (s *Store) history(prefix string, from, upto int64) ([]*storage.Event, int64, error) {
	var events []*storage.Event
	var compact int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		if _, compact, err = readMeta(tx); err != nil {
			return err
		}
		if from <= compact {
			return storage.ErrCompacted
		}
		r := &readTx{log: tx.Bucket(bucketLog)}
		c := r.log.Cursor()
		for k, v := c.Seek(revKey(from)); k != nil; k, v = c.Next() {
			rev, err := parseRev(k)
			if err != nil {
				return err
			}
			if rev > upto {
				break
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return err
			}
			if !matches(prefix, rec.key) {
				continue
			}
			ev, err := r.event(&rec, rev)
			if err != nil {
				return err
			}
			events = append(events, ev)
		}
		return nil
	})
	return events, compact, err
}

// event rebuilds the event of the record rec at rev, looking up the
// version it superseded (which compaction keeps while rev is above the
// compact revision).
func (r *readTx) event(rec *record, rev int64) (*storage.Event, error) {
	if rec.create {
		return &storage.Event{Create: true, KV: rec.kv(rev)}, nil
	}
	prev, err := r.record(rec.prevRev)
	if err != nil {
		return nil, err
	}
	prevKV := prev.kv(rec.prevRev)
	if rec.delete {
		return &storage.Event{
			Delete: true,
			KV: &storage.KeyValue{
				Key:            rec.key,
				CreateRevision: rec.createRev,
				ModRevision:    rev,
				Value:          prev.value,
				Lease:          prev.lease,
			},
			PrevKV: prevKV,
		}, nil
	}
	return &storage.Event{KV: rec.kv(rev), PrevKV: prevKV}, nil
}
