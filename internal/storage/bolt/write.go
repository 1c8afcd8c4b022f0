package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/peapod-dev/peapod/internal/storage"
)

type opKind int

const (
	opCreate opKind = iota
	opUpdate
	opDelete
	// opExpire deletes key if its latest version is still expectRev, and
	// removes the TTL entry ttlKey either way.
	opExpire
)

// writeOp is one queued write request.
type writeOp struct {
	kind      opKind
	key       string
	value     []byte
	lease     int64
	expectRev int64
	ttlKey    []byte
	res       chan writeResult // buffered, receives exactly one result
}

type writeResult struct {
	rev int64
	kv  *storage.KeyValue
	ok  bool
	err error
}

// opFailure aborts a batch transaction because one op hit an unexpected
// error; the batch is retried without it.
type opFailure struct {
	index int
	err   error
}

func (e *opFailure) Error() string { return fmt.Sprintf("write op %d: %v", e.index, e.err) }

// Create implements storage.Backend.
func (s *Store) Create(ctx context.Context, key string, value []byte, lease int64) (int64, error) {
	r := s.do(ctx, &writeOp{kind: opCreate, key: key, value: bytes.Clone(value), lease: lease})
	return r.rev, r.err
}

// Update implements storage.Backend.
func (s *Store) Update(ctx context.Context, key string, value []byte, revision, lease int64) (int64, *storage.KeyValue, bool, error) {
	r := s.do(ctx, &writeOp{kind: opUpdate, key: key, value: bytes.Clone(value), lease: lease, expectRev: revision})
	return r.rev, r.kv, r.ok, r.err
}

// Delete implements storage.Backend.
func (s *Store) Delete(ctx context.Context, key string, revision int64) (int64, *storage.KeyValue, bool, error) {
	r := s.do(ctx, &writeOp{kind: opDelete, key: key, expectRev: revision})
	return r.rev, r.kv, r.ok, r.err
}

// do validates op, queues it and waits for its result.
func (s *Store) do(ctx context.Context, op *writeOp) writeResult {
	if op.key == "" || !keyFits(op.key) {
		return writeResult{rev: s.rev.Load(), err: fmt.Errorf("%w: key of %d bytes", storage.ErrInvalidKey, len(op.key))}
	}
	if len(op.value) > bbolt.MaxValueSize-len(op.key)-64 {
		return writeResult{rev: s.rev.Load(), err: fmt.Errorf("%w: %d bytes", storage.ErrValueTooLarge, len(op.value))}
	}
	if err := s.enqueue(ctx, op); err != nil {
		return writeResult{rev: s.rev.Load(), err: err}
	}
	// The writer answers every op it dequeues, including after Close, so
	// this cannot block forever. Waiting regardless of ctx keeps the outcome
	// of an enqueued write unambiguous to the caller.
	return <-op.res
}

func (s *Store) enqueue(ctx context.Context, op *writeOp) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op.res = make(chan writeResult, 1)
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return storage.ErrClosed
	}
	select {
	case s.queue <- op:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the single goroutine that applies writes. It takes whatever is
// queued (waiting only for the first request, never on a timer), applies it
// in one transaction, and acknowledges it after the commit's fsync.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*writeOp, 0, s.opts.MaxBatch)
	for {
		op, ok := <-s.queue
		if !ok {
			return
		}
		batch = append(batch[:0], op)
		size := len(op.value)
	drain:
		for len(batch) < s.opts.MaxBatch && size < s.opts.MaxBatchBytes {
			select {
			case op, ok := <-s.queue:
				if !ok {
					break drain
				}
				batch = append(batch, op)
				size += len(op.value)
			default:
				break drain
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// commit applies ops in one transaction and answers each of them. An op
// that fails unexpectedly is answered with its error and the rest are
// retried without it, so a failing op affects only itself.
func (s *Store) commit(ops []*writeOp) {
	for len(ops) > 0 {
		b := batchState{now: time.Now()}
		err := s.db.Update(func(tx *bbolt.Tx) error { return b.apply(tx, ops) })
		var failure *opFailure
		if errors.As(err, &failure) {
			s.log.Error("bolt store write failed", "key", ops[failure.index].key, "err", failure.err)
			ops[failure.index].res <- writeResult{rev: s.rev.Load(), err: fmt.Errorf("bolt store write: %w", failure.err)}
			ops = append(ops[:failure.index:failure.index], ops[failure.index+1:]...)
			continue
		}
		if err != nil {
			s.log.Error("bolt store commit failed", "ops", len(ops), "err", err)
			err = fmt.Errorf("bolt store commit: %w", err)
			for _, op := range ops {
				op.res <- writeResult{rev: s.rev.Load(), err: err}
			}
			return
		}
		if b.rev > s.rev.Load() {
			// Publish before advancing CurrentRevision, so a revision
			// reported as current has had its events handed to watchers.
			s.bcast.publish(b.rev, b.events)
			s.rev.Store(b.rev)
		}
		for i, op := range ops {
			op.res <- b.results[i]
		}
		if b.leased {
			select {
			case s.ttlWake <- struct{}{}:
			default:
			}
		}
		return
	}
}

// batchState is the work of one write transaction.
type batchState struct {
	now     time.Time
	rev     int64
	results []writeResult
	events  []*storage.Event
	leased  bool // a leased version was written

	meta, log, keys, hist, ttl *bbolt.Bucket
}

func (b *batchState) apply(tx *bbolt.Tx, ops []*writeOp) error {
	b.meta, b.log, b.keys = tx.Bucket(bucketMeta), tx.Bucket(bucketLog), tx.Bucket(bucketKeys)
	b.hist, b.ttl = tx.Bucket(bucketHist), tx.Bucket(bucketTTL)
	start, _, err := readMeta(tx)
	if err != nil {
		return err
	}
	b.rev = start
	b.results = make([]writeResult, len(ops))
	b.events = b.events[:0]
	for i, op := range ops {
		r, err := b.applyOp(op)
		if err != nil {
			return &opFailure{index: i, err: err}
		}
		b.results[i] = r
	}
	if b.rev != start {
		return b.meta.Put(metaRev, revKey(b.rev))
	}
	return nil
}

// current returns the latest version of key, or ok=false if it is not live.
func (b *batchState) current(key string) (rec record, rev int64, ok bool, err error) {
	v := b.keys.Get([]byte(key))
	if v == nil {
		return rec, 0, false, nil
	}
	if rev, err = parseRev(v); err != nil {
		return rec, 0, false, err
	}
	data := b.log.Get(revKey(rev))
	if data == nil {
		return rec, 0, false, fmt.Errorf("%w: key %q points at missing revision %d", errCorrupt, key, rev)
	}
	rec, err = decodeRecord(data)
	return rec, rev, err == nil, err
}

func (b *batchState) applyOp(op *writeOp) (writeResult, error) {
	prev, prevRev, live, err := b.current(op.key)
	if err != nil {
		return writeResult{}, err
	}
	var prevKV *storage.KeyValue
	if live {
		prevKV = prev.kv(prevRev)
	}
	switch op.kind {
	case opCreate:
		if live {
			return writeResult{rev: b.rev, err: storage.ErrKeyExists}, nil
		}
		rec := record{key: op.key, create: true, lease: op.lease, value: op.value}
		rev := b.rev + 1
		rec.createRev = rev
		if err := b.write(&rec, rev, nil); err != nil {
			return writeResult{}, err
		}
		b.events = append(b.events, &storage.Event{Create: true, KV: rec.kv(rev)})
		return writeResult{rev: rev, ok: true}, nil

	case opUpdate:
		if !live || prevRev != op.expectRev {
			return writeResult{rev: b.rev, kv: prevKV}, nil
		}
		rec := record{key: op.key, createRev: prev.createRev, prevRev: prevRev, lease: op.lease, value: op.value}
		rev := b.rev + 1
		if err := b.write(&rec, rev, &prev); err != nil {
			return writeResult{}, err
		}
		kv := rec.kv(rev)
		b.events = append(b.events, &storage.Event{KV: kv, PrevKV: prevKV})
		return writeResult{rev: rev, kv: kv, ok: true}, nil

	case opDelete, opExpire:
		if !live {
			if op.kind == opExpire {
				return writeResult{rev: b.rev}, b.ttl.Delete(op.ttlKey)
			}
			return writeResult{rev: b.rev, ok: op.expectRev == 0}, nil
		}
		if op.expectRev != 0 && prevRev != op.expectRev {
			if op.kind == opExpire {
				return writeResult{rev: b.rev, kv: prevKV}, b.ttl.Delete(op.ttlKey)
			}
			return writeResult{rev: b.rev, kv: prevKV}, nil
		}
		rec := record{key: op.key, delete: true, createRev: prev.createRev, prevRev: prevRev}
		rev := b.rev + 1
		if err := b.write(&rec, rev, &prev); err != nil {
			return writeResult{}, err
		}
		b.events = append(b.events, &storage.Event{
			Delete: true,
			KV: &storage.KeyValue{
				Key:            op.key,
				CreateRevision: prev.createRev,
				ModRevision:    rev,
				Value:          prev.value,
				Lease:          prev.lease,
			},
			PrevKV: prevKV,
		})
		return writeResult{rev: rev, kv: prevKV, ok: true}, nil
	}
	return writeResult{}, fmt.Errorf("unknown write op %d", op.kind)
}

// write stores rec at revision rev, superseding prev (nil for a creation),
// and advances the batch revision.
func (b *batchState) write(rec *record, rev int64, prev *record) error {
	if rec.lease > 0 {
		rec.expiresAt = b.now.Add(time.Duration(rec.lease) * time.Second).UnixNano()
	}
	rk := revKey(rev)
	if err := b.log.Put(rk, rec.encode()); err != nil {
		return fmt.Errorf("put log: %w", err)
	}
	if err := b.hist.Put(histKey(rec.key, rev), nil); err != nil {
		return fmt.Errorf("put hist: %w", err)
	}
	if rec.delete {
		if err := b.keys.Delete([]byte(rec.key)); err != nil {
			return fmt.Errorf("delete index: %w", err)
		}
	} else if err := b.keys.Put([]byte(rec.key), rk); err != nil {
		return fmt.Errorf("put index: %w", err)
	}
	if prev != nil && prev.lease > 0 {
		if err := b.ttl.Delete(ttlKey(prev.expiresAt, rec.prevRev)); err != nil {
			return fmt.Errorf("delete ttl: %w", err)
		}
	}
	if rec.lease > 0 {
		if err := b.ttl.Put(ttlKey(rec.expiresAt, rev), []byte(rec.key)); err != nil {
			return fmt.Errorf("put ttl: %w", err)
		}
		b.leased = true
	}
	b.rev = rev
	return nil
}
