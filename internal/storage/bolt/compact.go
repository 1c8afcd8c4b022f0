package bolt

import (
	"context"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/peapod-dev/peapod/internal/storage"
)

// Compact implements storage.Backend. It compacts exactly to revision, in
// transactions of at most Options.CompactBatch revisions.
func (s *Store) Compact(ctx context.Context, revision int64) (int64, error) {
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	cur := s.rev.Load()
	switch {
	case revision > cur:
		return cur, storage.ErrFutureRev
	case revision <= s.compactRev.Load():
		return cur, storage.ErrCompacted
	}
	err := s.compactTo(ctx, revision)
	return s.rev.Load(), err
}

// compactLoop compacts in the background, keeping the last Options.Retain
// revisions.
func (s *Store) compactLoop() {
	defer s.bg.Done()
	t := time.NewTicker(s.opts.CompactInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.compactMu.Lock()
		target := s.rev.Load() - s.opts.Retain
		if target > s.compactRev.Load() {
			start, from := time.Now(), s.compactRev.Load()
			if err := s.compactTo(s.ctx, target); err != nil && !errors.Is(err, context.Canceled) {
				s.log.Error("bolt store compaction failed", "target", target, "err", err)
			} else {
				s.log.Debug("bolt store compacted", "from", from, "to", s.compactRev.Load(), "took", time.Since(start))
			}
		}
		s.compactMu.Unlock()
	}
}

// compactTo advances the compact revision to target chunk by chunk. The
// caller holds compactMu.
func (s *Store) compactTo(ctx context.Context, target int64) error {
	for {
		from := s.compactRev.Load()
		if from >= target {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		to := min(target, from+s.opts.CompactBatch)
		err := s.db.Update(func(tx *bbolt.Tx) error { return compactChunk(tx, from, to) })
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return storage.ErrClosed
		}
		if err != nil {
			return fmt.Errorf("compact revisions %d..%d: %w", from+1, to, err)
		}
		s.compactRev.Store(to)
	}
}

// compactChunk compacts the revisions (from, to]: for each record there it
// removes the version the record superseded, and the record itself if it is
// a deletion. Records still being the latest version of a live key are
// never superseded, so they are kept. The new compact revision is stored in
// the same transaction.
func compactChunk(tx *bbolt.Tx, from, to int64) error {
	_, stored, err := readMeta(tx)
	if err != nil {
		return err
	}
	if stored != from {
		return fmt.Errorf("compact revision moved from %d to %d", from, stored)
	}
	log, hist := tx.Bucket(bucketLog), tx.Bucket(bucketHist)
	type drop struct {
		key string
		rev int64
	}
	var drops []drop
	c := log.Cursor()
	for k, v := c.Seek(revKey(from + 1)); k != nil; k, v = c.Next() {
		rev, err := parseRev(k)
		if err != nil {
			return err
		}
		if rev > to {
			break
		}
		rec, err := decodeRecord(v)
		if err != nil {
			return err
		}
		if rec.prevRev != 0 {
			drops = append(drops, drop{rec.key, rec.prevRev})
		}
		if rec.delete {
			drops = append(drops, drop{rec.key, rev})
		}
	}
	for _, d := range drops {
		if err := log.Delete(revKey(d.rev)); err != nil {
			return err
		}
		if err := hist.Delete(histKey(d.key, d.rev)); err != nil {
			return err
		}
	}
	return tx.Bucket(bucketMeta).Put(metaCompact, revKey(to))
}
