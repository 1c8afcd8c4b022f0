package bolt

import (
	"context"
	"encoding/binary"
	"errors"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/peapod-dev/peapod/internal/storage"
)

// ttlPage is the most expired keys deleted per round.
const ttlPage = 500

// ttlRetry is how long the TTL loop waits after a failed round.
const ttlRetry = time.Second

// expiry is one due entry of the ttl bucket.
type expiry struct {
	ttlKey []byte
	key    string
	rev    int64
}

// ttlLoop deletes leased keys once their TTL has passed. It sleeps until the
// earliest expiry, and is woken early by writes of leased versions.
func (s *Store) ttlLoop() {
	defer s.bg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, next, err := s.dueExpiries(time.Now())
		if err == nil && len(due) > 0 {
			err = s.expire(due)
		}
		wait := time.Until(next)
		switch {
		case errors.Is(err, storage.ErrClosed):
			return
		case err != nil:
			s.log.Error("bolt store TTL expiry failed", "err", err)
			wait = ttlRetry
		case len(due) == ttlPage:
			wait = 0 // more may be due
		case next.IsZero():
			wait = time.Hour
		}
		timer.Reset(max(wait, 0))
		select {
		case <-s.done:
			return
		case <-s.ttlWake:
		case <-timer.C:
		}
	}
}

// dueExpiries returns up to ttlPage entries expiring at or before now, and
// the expiry time of the first entry after them (zero if none).
func (s *Store) dueExpiries(now time.Time) ([]expiry, time.Time, error) {
	var due []expiry
	var next time.Time
	err := s.view(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketTTL).Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if len(k) != 16 {
				return errCorrupt
			}
			at := int64(binary.BigEndian.Uint64(k[:8]))
			if at > now.UnixNano() || len(due) == ttlPage {
				next = time.Unix(0, at)
				return nil
			}
			due = append(due, expiry{
				ttlKey: append([]byte(nil), k...),
				key:    string(v),
				rev:    int64(binary.BigEndian.Uint64(k[8:])),
			})
		}
		return nil
	})
	return due, next, err
}

// expire deletes the due keys through the writer, so each deletion gets a
// revision and a watch event like any other.
func (s *Store) expire(due []expiry) error {
	ops := make([]*writeOp, 0, len(due))
	var firstErr error
	for _, e := range due {
		op := &writeOp{kind: opExpire, key: e.key, expectRev: e.rev, ttlKey: e.ttlKey}
		if err := s.enqueue(s.ctx, op); err != nil {
			firstErr = err
			break
		}
		ops = append(ops, op)
	}
	for _, op := range ops {
		if r := <-op.res; r.err != nil && firstErr == nil {
			firstErr = r.err
		}
	}
	if errors.Is(firstErr, context.Canceled) {
		return storage.ErrClosed
	}
	return firstErr
}
