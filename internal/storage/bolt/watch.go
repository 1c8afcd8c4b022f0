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

// broadcaster hands the events of each commit to the live subscribers.
// Publishing never blocks: a subscriber whose buffer is full is dropped.
type broadcaster struct {
	mu     sync.Mutex
	rev    int64 // revision of the last published commit
	subs   map[*subscription]struct{}
	closed bool
}

type subscription struct {
	prefix string
	ch     chan []*storage.Event
	// err is set before ch is closed by the broadcaster; reading it after
	// seeing ch closed is therefore safe.
	err error
}

func newBroadcaster(rev int64) *broadcaster {
	return &broadcaster{rev: rev, subs: make(map[*subscription]struct{})}
}

// subscribe registers a subscriber and returns the revision it starts
// after: it receives exactly the commits with revisions above it.
func (b *broadcaster) subscribe(prefix string, buffer int) (*subscription, int64) {
	sub := &subscription{prefix: prefix, ch: make(chan []*storage.Event, buffer)}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		sub.err = storage.ErrClosed
		close(sub.ch)
		return sub, b.rev
	}
	b.subs[sub] = struct{}{}
	return sub, b.rev
}

func (b *broadcaster) unsubscribe(sub *subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.subs[sub]; ok {
		delete(b.subs, sub)
		close(sub.ch)
	}
}

// publish delivers the events of the commit that ended at rev. It is only
// called by the writer goroutine, in commit order.
func (b *broadcaster) publish(rev int64, events []*storage.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.rev = rev
	for sub := range b.subs {
		batch := filterEvents(events, sub.prefix)
		if len(batch) == 0 {
			continue
		}
		select {
		case sub.ch <- batch:
		default:
			sub.err = storage.ErrWatchTooSlow
			delete(b.subs, sub)
			close(sub.ch)
		}
	}
}

func (b *broadcaster) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	for sub := range b.subs {
		sub.err = storage.ErrClosed
		delete(b.subs, sub)
		close(sub.ch)
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
	events := make(chan []*storage.Event, 100)
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

	sub, subRev := s.bcast.subscribe(prefix, s.opts.WatchBuffer)
	if revision <= 0 {
		revision = subRev + 1
	}
	history, compact, err := s.history(prefix, revision, subRev)
	if err != nil || revision <= compact {
		s.bcast.unsubscribe(sub)
		s.bg.Done()
		if err == nil || errors.Is(err, storage.ErrCompacted) {
			return storage.WatchResult{CurrentRevision: subRev, CompactRevision: compact}
		}
		return fail(subRev, err)
	}
	if len(history) > 0 {
		events <- history
	}
	// The broadcaster only sends commits after subRev; skipping them again
	// here keeps a replayed revision from ever being delivered twice.
	go s.pump(ctx, sub, max(revision, subRev+1), events, errc)
	return storage.WatchResult{CurrentRevision: subRev, Events: events, Errorc: errc}
}

// pump feeds one watcher the subscription's live events, from revision from
// on.
func (s *Store) pump(ctx context.Context, sub *subscription, from int64, out chan<- []*storage.Event, errc chan<- error) {
	defer s.bg.Done()
	defer close(out)
	defer s.bcast.unsubscribe(sub)
	for {
		select {
		case batch, ok := <-sub.ch:
			if !ok {
				if sub.err != nil {
					errc <- sub.err
				}
				return
			}
			for len(batch) > 0 && batch[0].KV.ModRevision < from {
				batch = batch[1:]
			}
			if len(batch) == 0 {
				continue
			}
			select {
			case out <- batch:
			case <-ctx.Done():
				return
			case <-s.done:
				errc <- storage.ErrClosed
				return
			}
		case <-ctx.Done():
			return
		case <-s.done:
			errc <- storage.ErrClosed
			return
		}
	}
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
