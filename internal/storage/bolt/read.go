package bolt

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/peapod-dev/peapod/internal/storage"
)

// readTx is one read transaction pinned at a revision.
type readTx struct {
	log, keys, hist *bbolt.Bucket
	// at is the revision being read; 0 reads the current state through keys.
	at int64
}

// read runs fn in a read transaction at revision (0 = current), checking
// revision against the compact and current revisions first. It returns the
// revision the read was served at.
func (s *Store) read(ctx context.Context, revision int64, fn func(r *readTx) error) (int64, error) {
	if err := ctx.Err(); err != nil {
		return s.rev.Load(), err
	}
	served := revision
	err := s.view(func(tx *bbolt.Tx) error {
		cur, compact, err := readMeta(tx)
		if err != nil {
			return err
		}
		if served == 0 {
			served = cur
		}
		switch {
		case revision > cur:
			served = cur
			return storage.ErrFutureRev
		case revision != 0 && revision <= compact:
			served = cur
			return storage.ErrCompacted
		case revision == cur:
			revision = 0 // the current state is cheaper to read
		}
		return fn(&readTx{
			log: tx.Bucket(bucketLog), keys: tx.Bucket(bucketKeys), hist: tx.Bucket(bucketHist), at: revision,
		})
	})
	return served, err
}

// record returns the log record at rev.
func (r *readTx) record(rev int64) (record, error) {
	data := r.log.Get(revKey(rev))
	if data == nil {
		return record{}, fmt.Errorf("%w: missing log revision %d", errCorrupt, rev)
	}
	return decodeRecord(data)
}

// get returns the live version of key, or nil.
func (r *readTx) get(key string) (*storage.KeyValue, error) {
	if key == "" {
		return nil, nil
	}
	var rev int64
	if r.at == 0 {
		v := r.keys.Get([]byte(key))
		if v == nil {
			return nil, nil
		}
		var err error
		if rev, err = parseRev(v); err != nil {
			return nil, err
		}
	} else {
		enc := encodeKey(key)
		c := r.hist.Cursor()
		k, _ := c.Seek(histKey(key, r.at+1))
		if k == nil {
			k, _ = c.Last()
		} else {
			k, _ = c.Prev()
		}
		if k == nil || len(k) != len(enc)+8 || !bytes.HasPrefix(k, enc) {
			return nil, nil
		}
		var err error
		if rev, err = parseRev(k[len(enc):]); err != nil {
			return nil, err
		}
	}
	rec, err := r.record(rev)
	if err != nil || rec.delete {
		return nil, err
	}
	return rec.kv(rev), nil
}

// scan calls fn, in key order, with the revision of the live version of
// every key matching prefix after startKey, until fn returns false.
func (r *readTx) scan(prefix, startKey string, fn func(rev int64) (bool, error)) error {
	if !strings.HasSuffix(prefix, "/") {
		// Not a list: exactly the named key.
		kv, err := r.get(prefix)
		if err != nil || kv == nil {
			return err
		}
		_, err = fn(kv.ModRevision)
		return err
	}
	if startKey == prefix || startKey < prefix {
		startKey = ""
	}
	if r.at == 0 {
		return r.scanCurrent(prefix, startKey, fn)
	}
	return r.scanAt(prefix, startKey, fn)
}

func (r *readTx) scanCurrent(prefix, startKey string, fn func(rev int64) (bool, error)) error {
	c := r.keys.Cursor()
	p := []byte(prefix)
	var k, v []byte
	if startKey == "" {
		k, v = c.Seek(p)
	} else {
		k, v = c.Seek([]byte(startKey))
		if k != nil && string(k) == startKey {
			k, v = c.Next()
		}
	}
	for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		rev, err := parseRev(v)
		if err != nil {
			return err
		}
		if more, err := fn(rev); err != nil || !more {
			return err
		}
	}
	return nil
}

// scanAt walks hist, where each key's entries are grouped and sorted by
// revision, picking per key the newest entry at or below r.at.
func (r *readTx) scanAt(prefix, startKey string, fn func(rev int64) (bool, error)) error {
	c := r.hist.Cursor()
	p := escapeKey(nil, prefix)
	var k []byte
	if startKey == "" {
		k, _ = c.Seek(p)
	} else {
		k, _ = c.Seek(afterKey(startKey))
	}
	var group []byte
	var best int64
	flush := func() (bool, error) {
		if best == 0 {
			return true, nil
		}
		rev := best
		best = 0
		rec, err := r.record(rev)
		if err != nil || rec.delete {
			return err == nil, err
		}
		return fn(rev)
	}
	for ; k != nil && bytes.HasPrefix(k, p); k, _ = c.Next() {
		enc, rev, err := splitHistKey(k)
		if err != nil {
			return err
		}
		if !bytes.Equal(enc, group) {
			if more, err := flush(); err != nil || !more {
				return err
			}
			group = append(group[:0], enc...)
		}
		if rev <= r.at {
			best = rev
		}
	}
	_, err := flush()
	return err
}

// Get implements storage.Backend. rangeEnd and limit are ignored.
func (s *Store) Get(ctx context.Context, key, _ string, _, revision int64) (int64, *storage.KeyValue, error) {
	var kv *storage.KeyValue
	rev, err := s.read(ctx, revision, func(r *readTx) error {
		var err error
		kv, err = r.get(key)
		return err
	})
	return rev, kv, err
}

// List implements storage.Backend.
func (s *Store) List(ctx context.Context, prefix, startKey string, limit, revision int64) (int64, []*storage.KeyValue, error) {
	var kvs []*storage.KeyValue
	rev, err := s.read(ctx, revision, func(r *readTx) error {
		return r.scan(prefix, startKey, func(rev int64) (bool, error) {
			rec, err := r.record(rev)
			if err != nil {
				return false, err
			}
			kvs = append(kvs, rec.kv(rev))
			return limit <= 0 || int64(len(kvs)) < limit, nil
		})
	})
	if err != nil {
		return rev, nil, err
	}
	return rev, kvs, nil
}

// Count implements storage.Backend.
func (s *Store) Count(ctx context.Context, prefix, startKey string, revision int64) (int64, int64, error) {
	var n int64
	rev, err := s.read(ctx, revision, func(r *readTx) error {
		return r.scan(prefix, startKey, func(int64) (bool, error) {
			n++
			return true, nil
		})
	})
	return rev, n, err
}
