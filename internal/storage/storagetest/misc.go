package storagetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/peapod-dev/peapod/internal/storage"
)

func testTTL(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	// A leased key whose lease is dropped by an update must not expire.
	k, err := b.Create(ctx, "/ttl/kept", []byte("v"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if kv := get(t, b, "/ttl/kept", 0); kv.Lease != 1 {
		t.Fatalf("stored lease = %d, want 1", kv.Lease)
	}
	update(t, b, "/ttl/kept", "no lease", k)

	from := currentRev(t, b) + 1
	wr := watch(t, b, "/ttl/", from)
	r, err := b.Create(ctx, "/ttl/gone", []byte("bye"), 1)
	if err != nil {
		t.Fatal(err)
	}
	evs, err := collect(wr, func(evs []*storage.Event) bool {
		for _, e := range evs {
			if e.Delete && e.KV.Key == "/ttl/gone" {
				return true
			}
		}
		return false
	})
	if err != nil {
		t.Fatalf("waiting for the expiry of /ttl/gone: %v (events %q)", err, describeAll(evs))
	}
	last := evs[len(evs)-1]
	if !last.Delete || last.KV.ModRevision <= r || last.PrevKV == nil || string(last.PrevKV.Value) != "bye" {
		t.Fatalf("expiry event = %s", describe(last))
	}
	for _, e := range evs {
		if e.KV.Key == "/ttl/kept" {
			t.Fatalf("key whose lease was dropped changed: %s", describe(e))
		}
	}
	if kv := get(t, b, "/ttl/gone", 0); kv != nil {
		t.Fatalf("expired key still readable: %+v", kv)
	}
	if kv := get(t, b, "/ttl/kept", 0); kv == nil || string(kv.Value) != "no lease" {
		t.Fatalf("key whose lease was dropped = %+v", kv)
	}
}

func testConcurrentWriters(t *testing.T, b storage.Backend) {
	const writers, perWriter = 16, 40
	ctx := ctxFor(t)
	revs := make([][]int64, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				key := fmt.Sprintf("/cw/%02d/%03d", w, i)
				rev, err := b.Create(ctx, key, []byte(key), 0)
				if err != nil {
					errs[w] = err
					return
				}
				revs[w] = append(revs[w], rev)
			}
		}()
	}
	wg.Wait()
	seen := map[int64]bool{}
	var maxRev int64
	for w := range writers {
		if errs[w] != nil {
			t.Fatalf("writer %d: %v", w, errs[w])
		}
		for i, rev := range revs[w] {
			if seen[rev] {
				t.Fatalf("revision %d acknowledged twice", rev)
			}
			seen[rev] = true
			maxRev = max(maxRev, rev)
			if i > 0 && rev <= revs[w][i-1] {
				t.Fatalf("writer %d saw revision %d after %d", w, rev, revs[w][i-1])
			}
			key := fmt.Sprintf("/cw/%02d/%03d", w, i)
			checkKV(t, "concurrent write", get(t, b, key, 0), key, key, rev, rev)
		}
	}
	if got := currentRev(t, b); got != maxRev {
		t.Fatalf("CurrentRevision = %d, want %d", got, maxRev)
	}
	if _, n, err := b.Count(ctx, "/cw/", "", 0); err != nil || n != writers*perWriter {
		t.Fatalf("Count = %d, %v; want %d", n, err, writers*perWriter)
	}
	_, kvs, err := b.List(ctx, "/cw/", "", 0, 0)
	if err != nil || len(kvs) != writers*perWriter {
		t.Fatalf("List = %d keys, %v", len(kvs), err)
	}
}

func testDbSize(t *testing.T, b storage.Backend) {
	create(t, b, "/size/a", "v")
	if n, err := b.DbSize(ctxFor(t)); err != nil || n <= 0 {
		t.Fatalf("DbSize = %d, %v", n, err)
	}
}
