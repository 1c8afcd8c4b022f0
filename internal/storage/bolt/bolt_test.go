package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/storage"
	"github.com/peapod-dev/peapod/internal/storage/storagetest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func openTemp(t testing.TB, opts Options) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "peapod.db"), opts)
}

func TestContract(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTemp(t, Options{}) })
}

func BenchmarkCreate(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			s := openTemp(b, Options{})
			value := make([]byte, 512)
			var n atomic.Int64
			b.ResetTimer()
			runClients(b, clients, func() error {
				i := n.Add(1)
				_, err := s.Create(context.Background(), fmt.Sprintf("/registry/bench/%d", i), value, 0)
				return err
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}

// runClients performs b.N calls of fn spread over exactly clients
// goroutines.
func runClients(b *testing.B, clients int, fn func() error) {
	var next atomic.Int64
	errc := make(chan error, clients)
	for range clients {
		go func() {
			for next.Add(1) <= int64(b.N) {
				if err := fn(); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for range clients {
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
	}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSlowWatcherDoesNotBlockWriters(t *testing.T) {
	s := openTemp(t, Options{WatchBuffer: 4})
	ctx := context.Background()
	wr := s.Watch(ctx, "/slow/", 0)
	// Nobody reads wr.Events while far more commits than its buffers hold
	// are made; every write must still complete.
	const writes = 300
	done := make(chan error, 1)
	go func() {
		for i := range writes {
			if _, err := s.Create(ctx, fmt.Sprintf("/slow/%d", i), []byte("v"), 0); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("writes blocked behind a slow watcher")
	}
	// The watcher gets a gap-free prefix of the events, then is closed with
	// ErrWatchTooSlow.
	var next int64 = 1
	for batch := range wr.Events {
		for _, e := range batch {
			if e.KV.ModRevision != next {
				t.Fatalf("event at revision %d, want %d", e.KV.ModRevision, next)
			}
			next++
		}
	}
	if next > writes {
		t.Fatalf("watcher received all %d events; expected it to be dropped", writes)
	}
	if err := <-wr.Errorc; !errors.Is(err, storage.ErrWatchTooSlow) {
		t.Fatalf("Errorc = %v, want ErrWatchTooSlow", err)
	}
}

func TestCloseEndsWatchesAndWrites(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "peapod.db"), testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	wr := s.Watch(ctx, "/", 0)
	if _, err := s.Create(ctx, "/a", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for batch := range wr.Events {
		n += len(batch)
	}
	if err := <-wr.Errorc; n > 1 || !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("after Close: %d events, Errorc %v", n, err)
	}
	if _, err := s.Create(ctx, "/b", nil, 0); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Create after Close err = %v", err)
	}
	if _, _, err := s.Get(ctx, "/a", "", 0, 0); !errors.Is(err, storage.ErrClosed) {
		t.Fatalf("Get after Close err = %v", err)
	}
	if wr := s.Watch(ctx, "/", 0); wr.Events == nil {
		t.Fatal("Watch after Close returned no channel")
	} else if _, ok := <-wr.Events; ok {
		t.Fatal("Watch after Close delivered events")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestReopenKeepsStateAndLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "peapod.db")
	ctx := context.Background()
	s, err := Open(path, testLogger(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/keep", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	leased, err := s.Create(ctx, "/lease", []byte("v"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, Options{})
	if rev, _ := s.CurrentRevision(ctx); rev != leased {
		t.Fatalf("revision after reopen = %d, want %d", rev, leased)
	}
	// The lease survives the restart: the key expires after reopening.
	var rev int64
	waitFor(t, "the leased key to expire", func() bool {
		var kv *storage.KeyValue
		rev, kv, err = s.Get(ctx, "/lease", "", 0, 0)
		return err == nil && kv == nil
	})
	if rev != leased+1 {
		t.Fatalf("expiry wrote revision %d, want %d", rev, leased+1)
	}
	if _, kv, _ := s.Get(ctx, "/keep", "", 0, 0); kv == nil {
		t.Fatal("unleased key lost")
	}
}

func TestBackgroundCompaction(t *testing.T) {
	s := openTemp(t, Options{Retain: 10, CompactInterval: 5 * time.Millisecond, CompactBatch: 7})
	ctx := context.Background()
	live, err := s.Create(ctx, "/live", []byte("old"), 0)
	if err != nil {
		t.Fatal(err)
	}
	rev, err := s.Create(ctx, "/k", []byte("0"), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 100; i++ {
		var ok bool
		if rev, _, ok, err = s.Update(ctx, "/k", []byte(fmt.Sprint(i)), rev, 0); err != nil || !ok {
			t.Fatalf("update %d: %v %v", i, ok, err)
		}
	}
	waitFor(t, "compaction to reach the retention window", func() bool { return s.compactRev.Load() >= rev-10 })
	if _, _, err := s.Get(ctx, "/k", "", 0, rev-20); !errors.Is(err, storage.ErrCompacted) {
		t.Fatalf("Get below the window err = %v", err)
	}
	if _, kv, err := s.Get(ctx, "/k", "", 0, rev-5); err != nil || string(kv.Value) != "95" {
		t.Fatalf("Get inside the window = %+v, %v", kv, err)
	}
	if _, kv, err := s.Get(ctx, "/live", "", 0, 0); err != nil || kv.ModRevision != live {
		t.Fatalf("live key after compaction = %+v, %v", kv, err)
	}
	if err := checkConsistency(s.db); err != nil {
		t.Fatal(err)
	}
}

func openAt(t testing.TB, path string, opts Options) *Store {
	t.Helper()
	s, err := Open(path, testLogger(t), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := checkConsistency(s.db); err != nil {
			t.Errorf("consistency: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// When a write returns (and CurrentRevision reports it), its event is
// already in the channel of every watcher it matches, so a progress report
// at the current revision to a drained watcher cannot overtake an event.
func TestWatchEventQueuedBeforeRevisionMoves(t *testing.T) {
	s := openTemp(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// One watcher from the current revision, one replaying history first.
	if _, err := s.Create(ctx, "/q/old", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	live := s.Watch(ctx, "/q/", 0)
	replay := s.Watch(ctx, "/q/", 1)
	select {
	case b := <-replay.Events:
		if len(b) != 1 || b[0].KV.Key != "/q/old" {
			t.Fatalf("replay = %v", b)
		}
	default:
		t.Fatal("history not queued when Watch returned")
	}
	for i := range 200 {
		rev, err := s.Create(ctx, fmt.Sprintf("/q/%d", i), []byte("v"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if cur, _ := s.CurrentRevision(ctx); cur < rev {
			t.Fatalf("current revision %d below the returned write %d", cur, rev)
		}
		for name, w := range map[string]storage.WatchResult{"live": live, "replaying": replay} {
			select {
			case b := <-w.Events:
				if len(b) != 1 || b[0].KV.ModRevision != rev {
					t.Fatalf("%s watcher got %v, want revision %d", name, b, rev)
				}
			default:
				t.Fatalf("%s watcher: event of revision %d not queued when the write returned", name, rev)
			}
		}
	}
	cancel()
	for _, w := range []storage.WatchResult{live, replay} {
		for range w.Events {
		}
		select {
		case err := <-w.Errorc:
			t.Fatalf("cancelled watch reported %v", err)
		default:
		}
	}
}
