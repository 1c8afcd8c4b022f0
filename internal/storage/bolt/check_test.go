package bolt

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// checkConsistency runs bbolt's own check and verifies the store's
// invariants across buckets.
func checkConsistency(db *bbolt.DB) error {
	return db.View(func(tx *bbolt.Tx) error {
		for err := range tx.Check() {
			return fmt.Errorf("bbolt check: %w", err)
		}
		rev, compact, err := readMeta(tx)
		if err != nil {
			return err
		}
		if compact > rev {
			return fmt.Errorf("compact revision %d above current %d", compact, rev)
		}
		log, keys, hist, ttl := tx.Bucket(bucketLog), tx.Bucket(bucketKeys), tx.Bucket(bucketHist), tx.Bucket(bucketTTL)

		records := map[int64]record{}
		err = log.ForEach(func(k, v []byte) error {
			r, err := parseRev(k)
			if err != nil {
				return err
			}
			if r > rev || r <= 0 {
				return fmt.Errorf("log revision %d outside (0, %d]", r, rev)
			}
			rec, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("log revision %d: %w", r, err)
			}
			records[r] = rec
			return nil
		})
		if err != nil {
			return err
		}
		for r := compact + 1; r <= rev; r++ {
			rec, ok := records[r]
			if !ok {
				return fmt.Errorf("revision %d above compact revision %d missing from log", r, compact)
			}
			// Events above the compact revision must be rebuildable.
			if _, ok := records[rec.prevRev]; rec.prevRev != 0 && !ok {
				return fmt.Errorf("revision %d: superseded version %d missing", r, rec.prevRev)
			}
		}

		// hist mirrors log exactly; remember each key's newest revision.
		latest := map[string]int64{}
		n := 0
		err = hist.ForEach(func(k, _ []byte) error {
			enc, r, err := splitHistKey(k)
			if err != nil {
				return err
			}
			rec, ok := records[r]
			if !ok {
				return fmt.Errorf("hist entry for revision %d not in log", r)
			}
			if !bytes.Equal(enc, encodeKey(rec.key)) {
				return fmt.Errorf("hist entry for revision %d names another key than %q", r, rec.key)
			}
			latest[rec.key] = max(latest[rec.key], r)
			n++
			return nil
		})
		if err != nil {
			return err
		}
		if n != len(records) {
			return fmt.Errorf("hist has %d entries, log %d", n, len(records))
		}

		// keys holds exactly the newest version of every live key.
		live, leased := 0, 0
		for key, r := range latest {
			rec := records[r]
			v := keys.Get([]byte(key))
			if rec.delete {
				if v != nil {
					return fmt.Errorf("deleted key %q still indexed", key)
				}
				continue
			}
			live++
			if rec.lease > 0 {
				leased++
			}
			if got, err := parseRev(v); err != nil || got != r {
				return fmt.Errorf("key %q indexed at %x, newest version %d", key, v, r)
			}
		}
		if got := keys.Stats().KeyN; got != live {
			return fmt.Errorf("keys has %d entries, want %d", got, live)
		}

		// ttl holds exactly the newest versions written with a lease.
		if got := ttl.Stats().KeyN; got != leased {
			return fmt.Errorf("ttl has %d entries, want %d", got, leased)
		}
		return ttl.ForEach(func(k, v []byte) error {
			if len(k) != 16 {
				return fmt.Errorf("ttl key of %d bytes", len(k))
			}
			r := int64(binary.BigEndian.Uint64(k[8:]))
			rec, ok := records[r]
			if !ok || rec.key != string(v) || rec.lease <= 0 || latest[rec.key] != r ||
				rec.expiresAt != int64(binary.BigEndian.Uint64(k[:8])) {
				return fmt.Errorf("stale ttl entry for %q at revision %d", v, r)
			}
			return nil
		})
	})
}
