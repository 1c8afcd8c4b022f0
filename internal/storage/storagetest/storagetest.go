// Package storagetest is the contract test suite for storage.Backend
// implementations. An implementation's tests call Run with a function that
// opens a fresh, empty backend and registers its cleanup.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/storage"
)

// waitTimeout bounds every wait for a condition in the suite.
const waitTimeout = 10 * time.Second

// Run runs the contract suite. open must return a fresh, empty backend for
// each call and close it when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) storage.Backend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"RevisionsIncrease", testRevisionsIncrease},
		{"CreateGetUpdateDelete", testCRUD},
		{"Conflicts", testConflicts},
		{"List", testList},
		{"Count", testCount},
		{"ReadAtOldRevisions", testReadAtOldRevisions},
		{"FutureRevision", testFutureRevision},
		{"Compact", testCompact},
		{"Watch", testWatch},
		{"WatchFromNow", testWatchFromNow},
		{"WatchPrefixAndKey", testWatchFilter},
		{"WatchConcurrentWithWrites", testWatchConcurrent},
		{"WatchCompacted", testWatchCompacted},
		{"WatchCancel", testWatchCancel},
		{"TTL", testTTL},
		{"ConcurrentWriters", testConcurrentWriters},
		{"DbSize", testDbSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, open(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

func create(t *testing.T, b storage.Backend, key, value string) int64 {
	t.Helper()
	rev, err := b.Create(ctxFor(t), key, []byte(value), 0)
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	return rev
}

func update(t *testing.T, b storage.Backend, key, value string, expect int64) int64 {
	t.Helper()
	rev, kv, ok, err := b.Update(ctxFor(t), key, []byte(value), expect, 0)
	if err != nil || !ok {
		t.Fatalf("Update(%q, rev %d) = ok %v, kv %+v, err %v", key, expect, ok, kv, err)
	}
	return rev
}

func del(t *testing.T, b storage.Backend, key string, expect int64) int64 {
	t.Helper()
	rev, kv, ok, err := b.Delete(ctxFor(t), key, expect)
	if err != nil || !ok {
		t.Fatalf("Delete(%q, rev %d) = ok %v, kv %+v, err %v", key, expect, ok, kv, err)
	}
	return rev
}

func get(t *testing.T, b storage.Backend, key string, rev int64) *storage.KeyValue {
	t.Helper()
	_, kv, err := b.Get(ctxFor(t), key, "", 1, rev)
	if err != nil {
		t.Fatalf("Get(%q, rev %d): %v", key, rev, err)
	}
	return kv
}

func currentRev(t *testing.T, b storage.Backend) int64 {
	t.Helper()
	rev, err := b.CurrentRevision(ctxFor(t))
	if err != nil {
		t.Fatalf("CurrentRevision: %v", err)
	}
	return rev
}

// checkKV fails unless kv has the given key, value and revisions.
func checkKV(t *testing.T, what string, kv *storage.KeyValue, key, value string, createRev, modRev int64) {
	t.Helper()
	if kv == nil {
		t.Fatalf("%s: got nil, want %s=%s", what, key, value)
	}
	if kv.Key != key || string(kv.Value) != value || kv.CreateRevision != createRev || kv.ModRevision != modRev {
		t.Fatalf("%s: got {%s=%s create %d mod %d}, want {%s=%s create %d mod %d}", what,
			kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, key, value, createRev, modRev)
	}
}

func keysOf(kvs []*storage.KeyValue) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kv.Key
	}
	return out
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testRevisionsIncrease(t *testing.T, b storage.Backend) {
	if got := currentRev(t, b); got != 0 {
		t.Fatalf("empty store revision = %d, want 0", got)
	}
	r1 := create(t, b, "/r/a", "1")
	if r1 != 1 {
		t.Fatalf("first write revision = %d, want 1", r1)
	}
	r2 := create(t, b, "/r/b", "1")
	r3 := update(t, b, "/r/a", "2", r1)
	r4 := del(t, b, "/r/b", r2)
	r5 := create(t, b, "/r/b", "again")
	revs := []int64{r1, r2, r3, r4, r5}
	for i := 1; i < len(revs); i++ {
		if revs[i] <= revs[i-1] {
			t.Fatalf("revisions not strictly increasing: %v", revs)
		}
	}
	if got := currentRev(t, b); got != r5 {
		t.Fatalf("CurrentRevision = %d, want %d", got, r5)
	}
	// Failed writes consume no revision.
	if _, err := b.Create(ctxFor(t), "/r/a", nil, 0); !errors.Is(err, storage.ErrKeyExists) {
		t.Fatalf("duplicate Create err = %v", err)
	}
	if got := currentRev(t, b); got != r5 {
		t.Fatalf("failed write moved revision to %d", got)
	}
}

func testCRUD(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	c := create(t, b, "/crud/k", "v1")
	kv := get(t, b, "/crud/k", 0)
	checkKV(t, "after create", kv, "/crud/k", "v1", c, c)

	u := update(t, b, "/crud/k", "v2", c)
	checkKV(t, "after update", get(t, b, "/crud/k", 0), "/crud/k", "v2", c, u)
	_, ukv, ok, err := b.Update(ctx, "/crud/k", []byte("v3"), u, 0)
	if err != nil || !ok {
		t.Fatalf("Update: ok %v err %v", ok, err)
	}
	checkKV(t, "Update result", ukv, "/crud/k", "v3", c, ukv.ModRevision)

	drev, dkv, ok, err := b.Delete(ctx, "/crud/k", ukv.ModRevision)
	if err != nil || !ok {
		t.Fatalf("Delete: ok %v err %v", ok, err)
	}
	checkKV(t, "Delete result", dkv, "/crud/k", "v3", c, ukv.ModRevision)
	if drev <= ukv.ModRevision {
		t.Fatalf("delete revision %d not after %d", drev, ukv.ModRevision)
	}
	if kv := get(t, b, "/crud/k", 0); kv != nil {
		t.Fatalf("Get after delete = %+v", kv)
	}
	rev, kv, err := b.Get(ctx, "/crud/missing", "", 1, 0)
	if err != nil || kv != nil || rev != drev {
		t.Fatalf("Get missing = %d %+v %v, want rev %d", rev, kv, err, drev)
	}

	// Re-creation starts a new incarnation.
	c2 := create(t, b, "/crud/k", "reborn")
	checkKV(t, "recreated", get(t, b, "/crud/k", 0), "/crud/k", "reborn", c2, c2)

	// Unconditional delete, and empty values.
	e := create(t, b, "/crud/empty", "")
	if kv := get(t, b, "/crud/empty", 0); kv == nil || len(kv.Value) != 0 || kv.ModRevision != e {
		t.Fatalf("empty value read back as %+v", kv)
	}
	del(t, b, "/crud/empty", 0)

	// Values are copied: changing the caller's slice changes nothing.
	buf := []byte("original")
	if _, err := b.Create(ctx, "/crud/copy", buf, 0); err != nil {
		t.Fatal(err)
	}
	copy(buf, "XXXXXXXX")
	if kv := get(t, b, "/crud/copy", 0); string(kv.Value) != "original" {
		t.Fatalf("stored value changed with caller's buffer: %q", kv.Value)
	}

	if _, err := b.Create(ctx, "", []byte("x"), 0); !errors.Is(err, storage.ErrInvalidKey) {
		t.Fatalf("Create with empty key err = %v, want ErrInvalidKey", err)
	}
}

func testConflicts(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	c := create(t, b, "/c/k", "v1")
	rev, err := b.Create(ctx, "/c/k", []byte("dup"), 0)
	if !errors.Is(err, storage.ErrKeyExists) || rev != c {
		t.Fatalf("duplicate Create = %d, %v; want %d, ErrKeyExists", rev, err, c)
	}
	u := update(t, b, "/c/k", "v2", c)

	// Update with a stale revision reports the current version.
	rev, kv, ok, err := b.Update(ctx, "/c/k", []byte("stale"), c, 0)
	if err != nil || ok || rev != u {
		t.Fatalf("stale Update = rev %d ok %v err %v", rev, ok, err)
	}
	checkKV(t, "stale Update kv", kv, "/c/k", "v2", c, u)

	// Update of a missing key.
	_, kv, ok, err = b.Update(ctx, "/c/missing", []byte("x"), 5, 0)
	if err != nil || ok || kv != nil {
		t.Fatalf("Update missing = kv %+v ok %v err %v", kv, ok, err)
	}

	// Delete with a stale revision reports the current version.
	rev, kv, ok, err = b.Delete(ctx, "/c/k", c)
	if err != nil || ok || rev != u {
		t.Fatalf("stale Delete = rev %d ok %v err %v", rev, ok, err)
	}
	checkKV(t, "stale Delete kv", kv, "/c/k", "v2", c, u)

	// Delete of a missing key: a compare on a revision fails, an
	// unconditional delete has nothing to do.
	_, kv, ok, err = b.Delete(ctx, "/c/missing", 3)
	if err != nil || ok || kv != nil {
		t.Fatalf("conditional Delete missing = kv %+v ok %v err %v", kv, ok, err)
	}
	_, kv, ok, err = b.Delete(ctx, "/c/missing", 0)
	if err != nil || !ok || kv != nil {
		t.Fatalf("unconditional Delete missing = kv %+v ok %v err %v", kv, ok, err)
	}
	if got := currentRev(t, b); got != u {
		t.Fatalf("failed writes moved revision %d -> %d", u, got)
	}

	// A deleted key can't be updated, and can be created again.
	d := del(t, b, "/c/k", u)
	if _, _, ok, _ := b.Update(ctx, "/c/k", []byte("x"), u, 0); ok {
		t.Fatal("Update of deleted key succeeded")
	}
	if _, _, ok, _ := b.Update(ctx, "/c/k", []byte("x"), d, 0); ok {
		t.Fatal("Update at deletion revision succeeded")
	}
	create(t, b, "/c/k", "v3")
}

func testList(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	for _, k := range []string{"/l/b", "/l/a", "/l/c", "/l/sub/x", "/m/a", "/l"} {
		create(t, b, k, "v:"+k)
	}
	del(t, b, "/l/c", 0)
	cur := currentRev(t, b)
	tests := []struct {
		prefix, start string
		limit         int64
		want          []string
	}{
		{"/l/", "", 0, []string{"/l/a", "/l/b", "/l/sub/x"}},
		{"/l/", "/l/", 0, []string{"/l/a", "/l/b", "/l/sub/x"}},
		{"/l/", "/l/a", 0, []string{"/l/b", "/l/sub/x"}},
		{"/l/", "/l/b", 0, []string{"/l/sub/x"}},
		{"/l/", "/l/sub/x", 0, []string{}},
		{"/l/", "/l/aa", 0, []string{"/l/b", "/l/sub/x"}},
		{"/l/", "", 2, []string{"/l/a", "/l/b"}},
		{"/l/", "/l/a", 1, []string{"/l/b"}},
		{"/l/sub/", "", 0, []string{"/l/sub/x"}},
		{"/", "", 0, []string{"/l", "/l/a", "/l/b", "/l/sub/x", "/m/a"}},
		{"/m/a", "", 0, []string{"/m/a"}},
		{"/l", "", 0, []string{"/l"}},
		{"/l/c", "", 0, []string{}},
		{"/nothing/", "", 0, []string{}},
	}
	for _, tc := range tests {
		rev, kvs, err := b.List(ctx, tc.prefix, tc.start, tc.limit, 0)
		if err != nil {
			t.Fatalf("List(%q, %q, %d): %v", tc.prefix, tc.start, tc.limit, err)
		}
		if got := keysOf(kvs); !sameStrings(got, tc.want) {
			t.Errorf("List(%q, %q, %d) = %q, want %q", tc.prefix, tc.start, tc.limit, got, tc.want)
		}
		if rev != cur {
			t.Errorf("List(%q) revision = %d, want %d", tc.prefix, rev, cur)
		}
		for _, kv := range kvs {
			if string(kv.Value) != "v:"+kv.Key || kv.ModRevision == 0 || kv.CreateRevision == 0 {
				t.Errorf("List(%q) returned %+v", tc.prefix, kv)
			}
		}
	}
}

func testCount(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	for i := range 5 {
		create(t, b, fmt.Sprintf("/cnt/%d", i), "v")
	}
	create(t, b, "/other/1", "v")
	del(t, b, "/cnt/4", 0)
	cur := currentRev(t, b)
	for _, tc := range []struct {
		prefix, start string
		want          int64
	}{
		{"/cnt/", "", 4},
		{"/cnt/", "/cnt/", 4},
		{"/cnt/", "/cnt/1", 2},
		{"/", "", 5},
		{"/none/", "", 0},
	} {
		rev, n, err := b.Count(ctx, tc.prefix, tc.start, 0)
		if err != nil || n != tc.want || rev != cur {
			t.Errorf("Count(%q, %q) = %d, %d, %v; want %d, %d", tc.prefix, tc.start, rev, n, err, cur, tc.want)
		}
	}
}

func testReadAtOldRevisions(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	a1 := create(t, b, "/h/a", "a1")
	b1 := create(t, b, "/h/b", "b1")
	a2 := update(t, b, "/h/a", "a2", a1)
	bd := del(t, b, "/h/b", b1)
	c1 := create(t, b, "/h/c", "c1")
	b2 := create(t, b, "/h/b", "b2")
	create(t, b, "/h/b\x00x", "nul") // a key extending another with a NUL byte
	a3 := update(t, b, "/h/a", "a3", a2)

	type state map[string]string
	want := map[int64]state{
		a1: {"/h/a": "a1"},
		b1: {"/h/a": "a1", "/h/b": "b1"},
		a2: {"/h/a": "a2", "/h/b": "b1"},
		bd: {"/h/a": "a2"},
		c1: {"/h/a": "a2", "/h/c": "c1"},
		b2: {"/h/a": "a2", "/h/b": "b2", "/h/c": "c1"},
		a3: {"/h/a": "a3", "/h/b": "b2", "/h/b\x00x": "nul", "/h/c": "c1"},
	}
	for rev, st := range want {
		for _, k := range []string{"/h/a", "/h/b", "/h/c"} {
			gotRev, kv, err := b.Get(ctx, k, "", 1, rev)
			if err != nil || gotRev != rev {
				t.Fatalf("Get(%q, %d) = rev %d err %v", k, rev, gotRev, err)
			}
			v, ok := st[k]
			switch {
			case !ok && kv != nil:
				t.Errorf("Get(%q, %d) = %q, want nothing", k, rev, kv.Value)
			case ok && (kv == nil || string(kv.Value) != v):
				t.Errorf("Get(%q, %d) = %+v, want %q", k, rev, kv, v)
			case ok && kv.ModRevision > rev:
				t.Errorf("Get(%q, %d) has mod revision %d", k, rev, kv.ModRevision)
			}
		}
		gotRev, kvs, err := b.List(ctx, "/h/", "", 0, rev)
		if err != nil || gotRev != rev {
			t.Fatalf("List at %d = rev %d err %v", rev, gotRev, err)
		}
		got := state{}
		for _, kv := range kvs {
			got[kv.Key] = string(kv.Value)
		}
		if fmt.Sprint(got) != fmt.Sprint(st) {
			t.Errorf("List at %d = %v, want %v", rev, got, st)
		}
		if _, n, err := b.Count(ctx, "/h/", "", rev); err != nil || n != int64(len(st)) {
			t.Errorf("Count at %d = %d, %v; want %d", rev, n, err, len(st))
		}
	}
	// Paging at an old revision.
	_, kvs, err := b.List(ctx, "/h/", "/h/a", 1, b2)
	if err != nil || !sameStrings(keysOf(kvs), []string{"/h/b"}) {
		t.Fatalf("paged List at %d = %q, %v", b2, keysOf(kvs), err)
	}
	_, kvs, err = b.List(ctx, "/h/", "/h/b", 0, a3)
	if err != nil || !sameStrings(keysOf(kvs), []string{"/h/b\x00x", "/h/c"}) {
		t.Fatalf("paged List at %d = %q, %v", a3, keysOf(kvs), err)
	}
	if kv := get(t, b, "/h/b", b2); kv.CreateRevision != b2 {
		t.Fatalf("recreated key create revision = %d, want %d", kv.CreateRevision, b2)
	}
}

func testFutureRevision(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	cur := create(t, b, "/f/a", "v")
	if _, _, err := b.Get(ctx, "/f/a", "", 1, cur+1); !errors.Is(err, storage.ErrFutureRev) {
		t.Errorf("Get at future revision err = %v", err)
	}
	if _, _, err := b.List(ctx, "/f/", "", 0, cur+5); !errors.Is(err, storage.ErrFutureRev) {
		t.Errorf("List at future revision err = %v", err)
	}
	if _, _, err := b.Count(ctx, "/f/", "", cur+5); !errors.Is(err, storage.ErrFutureRev) {
		t.Errorf("Count at future revision err = %v", err)
	}
	if _, err := b.Compact(ctx, cur+1); !errors.Is(err, storage.ErrFutureRev) {
		t.Errorf("Compact at future revision err = %v", err)
	}
}

func testCompact(t *testing.T, b storage.Backend) {
	ctx := ctxFor(t)
	keep := create(t, b, "/cp/keep", "old but live")
	r := create(t, b, "/cp/k", "v0")
	revs := []int64{r}
	for i := 1; i <= 20; i++ {
		r = update(t, b, "/cp/k", fmt.Sprint("v", i), r)
		revs = append(revs, r)
	}
	gone := create(t, b, "/cp/gone", "x")
	del(t, b, "/cp/gone", gone)
	mid := revs[15]
	last := update(t, b, "/cp/k", "final", r)

	cur, err := b.Compact(ctx, mid)
	if err != nil || cur != last {
		t.Fatalf("Compact(%d) = %d, %v; want %d", mid, cur, err, last)
	}
	for _, rev := range []int64{1, keep, revs[3], mid} {
		if _, _, err := b.Get(ctx, "/cp/k", "", 1, rev); !errors.Is(err, storage.ErrCompacted) {
			t.Errorf("Get at compacted revision %d err = %v", rev, err)
		}
		if _, _, err := b.List(ctx, "/cp/", "", 0, rev); !errors.Is(err, storage.ErrCompacted) {
			t.Errorf("List at compacted revision %d err = %v", rev, err)
		}
	}
	if _, err := b.Compact(ctx, mid); !errors.Is(err, storage.ErrCompacted) {
		t.Errorf("repeated Compact err = %v", err)
	}
	// Everything after the compact revision is intact.
	for i, rev := range revs[16:] {
		kv := get(t, b, "/cp/k", rev)
		checkKV(t, "after compact", kv, "/cp/k", fmt.Sprint("v", 16+i), revs[0], rev)
		checkKV(t, "live key kept", get(t, b, "/cp/keep", rev), "/cp/keep", "old but live", keep, keep)
		if kv := get(t, b, "/cp/gone", rev); kv != nil {
			t.Errorf("deleted key visible at %d", rev)
		}
	}
	checkKV(t, "current", get(t, b, "/cp/k", 0), "/cp/k", "final", revs[0], last)

	// Compact everything: the latest versions of live keys survive.
	if _, err := b.Compact(ctx, last); err != nil {
		t.Fatalf("Compact(%d): %v", last, err)
	}
	_, kvs, err := b.List(ctx, "/cp/", "", 0, 0)
	if err != nil || !sameStrings(keysOf(kvs), []string{"/cp/k", "/cp/keep"}) {
		t.Fatalf("List after full compaction = %q, %v", keysOf(kvs), err)
	}
	checkKV(t, "live key after full compaction", kvs[1], "/cp/keep", "old but live", keep, keep)
	// Writes continue from the same revision counter.
	if rev := update(t, b, "/cp/keep", "new", keep); rev != last+1 {
		t.Fatalf("write after compaction got revision %d, want %d", rev, last+1)
	}
}
