package bolt

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/storage"
)

const (
	crashDirEnv   = "PEAPOD_BOLT_CRASH_DIR"
	crashRoundEnv = "PEAPOD_BOLT_CRASH_ROUND"
	crashWriters  = 8
	// crashAcks is how many acknowledged writes the parent waits for before
	// killing the child.
	crashAcks = 2000
)

// crashOptions makes the child compact often, so kills also land in the
// middle of compactions.
var crashOptions = Options{Retain: 200, CompactInterval: 5 * time.Millisecond, CompactBatch: 50}

// TestCrashChild is the child half of TestCrashRecovery; it does nothing
// unless started by it. It writes from crashWriters goroutines until it is
// killed, printing one "ack" line per acknowledged write.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("only runs as a child of TestCrashRecovery")
	}
	round := os.Getenv(crashRoundEnv)
	s, err := Open(filepath.Join(dir, "peapod.db"), nil, crashOptions)
	if err != nil {
		fmt.Printf("open failed: %v\n", err)
		os.Exit(2)
	}
	// Stop on our own if the parent never kills us.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out sync.Mutex
	ack := func(op, key string, rev int64, value string) {
		out.Lock()
		defer out.Unlock()
		fmt.Printf("ack %s %s %d %s\n", op, key, rev, value)
	}
	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("/crash/%s/%d/%d", round, w, i)
				v0 := fmt.Sprintf("c-%s-%d-%d", round, w, i)
				rev, err := s.Create(ctx, key, []byte(v0), 0)
				if err != nil {
					fmt.Printf("create failed: %v\n", err)
					return
				}
				ack("create", key, rev, v0)
				v1 := fmt.Sprintf("u-%s-%d-%d", round, w, i)
				rev, _, ok, err := s.Update(ctx, key, []byte(v1), rev, 0)
				if err != nil || !ok {
					fmt.Printf("update failed: %v %v\n", ok, err)
					return
				}
				ack("update", key, rev, v1)
				if i%4 == 3 {
					rev, _, ok, err := s.Delete(ctx, key, rev)
					if err != nil || !ok {
						fmt.Printf("delete failed: %v %v\n", ok, err)
						return
					}
					ack("delete", key, rev, "-")
				}
			}
		}()
	}
	wg.Wait()
	_ = s.Close()
}

// acked is the last acknowledged write of a key.
type acked struct {
	op    string
	rev   int64
	value string
}

// TestCrashRecovery kills a writing child process with SIGKILL, twice, and
// checks after each kill that the store opens as is, passes bbolt's and our
// consistency checks, and holds every acknowledged write.
func TestCrashRecovery(t *testing.T) {
	if os.Getenv(crashDirEnv) != "" {
		t.Skip("running as the child")
	}
	dir := t.TempDir()
	last := map[string]acked{} // per key, across rounds
	revs := map[int64]string{} // acknowledged revision -> key
	for round := range 2 {
		n := runCrashChild(t, dir, round, func(op, key string, rev int64, value string) {
			if other, dup := revs[rev]; dup {
				t.Fatalf("revision %d acknowledged for %s and %s", rev, other, key)
			}
			revs[rev] = key
			if prev, ok := last[key]; ok && rev <= prev.rev {
				t.Fatalf("%s: %s at revision %d after %s at %d", key, op, rev, prev.op, prev.rev)
			}
			last[key] = acked{op, rev, value}
		})
		t.Logf("round %d: %d acknowledged writes before the kill", round, n)
		verifyCrash(t, dir, last)
	}
}

// runCrashChild starts the child, reads acknowledgements until crashAcks
// have arrived, kills it, and reads the rest of what it printed.
func runCrashChild(t *testing.T, dir string, round int, onAck func(op, key string, rev int64, value string)) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashRoundEnv+"="+strconv.Itoa(round))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = cmd.Process.Kill() // SIGKILL
		}
	}
	t.Cleanup(kill)
	// Kill at the deadline even if the child stalls, so the read below ends.
	deadline := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	defer deadline.Stop()

	n := 0
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) != 5 || f[0] != "ack" {
			t.Logf("child: %s", line)
			continue
		}
		rev, err := strconv.ParseInt(f[3], 10, 64)
		if err != nil {
			t.Fatalf("bad line %q", line)
		}
		onAck(f[1], f[2], rev, f[4])
		n++
		if n == crashAcks {
			kill()
		}
	}
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child ended before %d acknowledgements (got %d): %v", crashAcks, n, err)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != -1 {
		t.Fatalf("child did not die by the kill: %v", err)
	}
	return n
}

// verifyCrash reopens the store left by a killed child and checks it.
func verifyCrash(t *testing.T, dir string, last map[string]acked) {
	t.Helper()
	s, err := Open(filepath.Join(dir, "peapod.db"), testLogger(t), Options{CompactInterval: -1, LockTimeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("reopen after kill: %v", err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	if err := checkConsistency(s.db); err != nil {
		t.Fatalf("after kill: %v", err)
	}
	ctx := context.Background()
	cur, _ := s.CurrentRevision(ctx)
	compact := s.compactRev.Load()
	var maxAcked int64
	for key, a := range last {
		maxAcked = max(maxAcked, a.rev)
		_, kv, err := s.Get(ctx, key, "", 1, 0)
		if err != nil {
			t.Fatalf("Get(%s): %v", key, err)
		}
		// The write after the last acknowledged one may have been in flight
		// (committed but not acknowledged): create -> update -> delete.
		switch {
		case a.op == "delete":
			if kv != nil {
				t.Fatalf("%s: acknowledged delete at %d, found %+v", key, a.rev, kv)
			}
		case kv == nil:
			if a.op != "update" {
				t.Fatalf("%s: acknowledged %s at %d is missing", key, a.op, a.rev)
			}
		case kv.ModRevision == a.rev:
			if string(kv.Value) != a.value {
				t.Fatalf("%s at %d = %q, acknowledged %q", key, a.rev, kv.Value, a.value)
			}
		case a.op == "create" && kv.ModRevision > a.rev && strings.HasPrefix(string(kv.Value), "u-"):
		default:
			t.Fatalf("%s: acknowledged %s at %d (%s), found %+v", key, a.op, a.rev, a.value, kv)
		}
		if a.rev > compact && a.op != "delete" {
			_, kv, err := s.Get(ctx, key, "", 1, a.rev)
			if err != nil || kv == nil || string(kv.Value) != a.value {
				t.Fatalf("%s at revision %d = %+v, %v; acknowledged %q", key, a.rev, kv, err, a.value)
			}
		}
	}
	t.Logf("reopened at revision %d, compact revision %d, %d keys written", cur, compact, len(last))
	if cur < maxAcked {
		t.Fatalf("current revision %d below acknowledged %d", cur, maxAcked)
	}
	// The store takes writes at the next revision.
	rev, err := s.Create(ctx, fmt.Sprintf("/crash/after/%d", cur), []byte("x"), 0)
	if err != nil || rev != cur+1 {
		t.Fatalf("write after recovery = %d, %v; want %d", rev, err, cur+1)
	}
	if _, err := s.Compact(ctx, rev); err != nil && !errors.Is(err, storage.ErrCompacted) {
		t.Fatalf("compact after recovery: %v", err)
	}
	if err := checkConsistency(s.db); err != nil {
		t.Fatalf("after recovery writes: %v", err)
	}
}
