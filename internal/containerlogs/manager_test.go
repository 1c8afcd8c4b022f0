package containerlogs

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// fakeRuntime plays the container runtime and its monitors on a real file
// system: each container's "monitor" holds its log open and writes lines
// to it, and a reopen does what conmon does (LOG.tmp renamed over LOG).
type fakeRuntime struct {
	mu         sync.Mutex
	containers []*runtime.ContainerStatus
	files      map[string]*os.File
	// reopenErr makes ReopenContainerLog fail; reopenThenFail makes it
	// reopen and then report failure.
	reopenErr      map[string]error
	reopenThenFail map[string]bool
	reopens        []string
	lists          int
}

func newFakeRuntime() *fakeRuntime {
	return &fakeRuntime{files: map[string]*os.File{}, reopenErr: map[string]error{}, reopenThenFail: map[string]bool{}}
}

// add adds a running container logging to path.
func (f *fakeRuntime) add(t *testing.T, id, path string) {
	t.Helper()
	f.addState(t, id, path, runtime.ContainerRunning)
}

func (f *fakeRuntime) addState(t *testing.T, id, path string, state runtime.ContainerState) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	fd, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	f.mu.Lock()
	defer f.mu.Unlock()
	f.files[id] = fd
	f.containers = append(f.containers, &runtime.ContainerStatus{ID: id, Name: "c-" + id, State: state, LogPath: path})
}

// write appends a log line through the container's monitor.
func (f *fakeRuntime) write(t *testing.T, id, line string) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.files[id].WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

func (f *fakeRuntime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.ContainerStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []*runtime.ContainerStatus
	for _, c := range f.containers {
		if filter.Matches(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeRuntime) ReopenContainerLog(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reopens = append(f.reopens, id)
	if err := f.reopenErr[id]; err != nil {
		return err
	}
	var c *runtime.ContainerStatus
	for _, x := range f.containers {
		if x.ID == id {
			c = x
		}
	}
	if c == nil {
		return runtime.ErrNotFound
	}
	tmp := c.LogPath + ".tmp"
	fd, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, c.LogPath); err != nil {
		fd.Close()
		return err
	}
	f.files[id].Close()
	f.files[id] = fd
	if f.reopenThenFail[id] {
		return errors.New("reopened, but reported a failure")
	}
	return nil
}

func (f *fakeRuntime) reopenCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reopens)
}

// start is the fake clock's time: rotated files get .20240101-120000.
var start = time.Date(2024, 1, 1, 12, 0, 0, 0, time.Local)

func newManager(t *testing.T, rt Runtime, maxSize int64, maxFiles int) (*Manager, *testingclock.FakeClock) {
	t.Helper()
	clk := testingclock.NewFakeClock(start)
	m, err := New(Config{Runtime: rt, MaxSize: maxSize, MaxFiles: maxFiles, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return m, clk
}

// names lists a directory's file names.
func names(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// content reads a log file, decompressing .gz ones.
func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return string(b)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(plain)
}

func TestNew(t *testing.T) {
	rt := newFakeRuntime()
	for _, n := range []int{1, -1} {
		if _, err := New(Config{Runtime: rt, MaxFiles: n}); err == nil {
			t.Errorf("New accepted MaxFiles %d", n)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted no runtime")
	}
	m, err := New(Config{Runtime: rt})
	if err != nil || m.maxSize != DefaultMaxSize || m.maxFiles != DefaultMaxFiles || m.clock == nil || m.log == nil {
		t.Errorf("defaults: %+v, %v", m, err)
	}
}

// TestThreshold rotates at upstream's default size, 10 MiB, not below.
func TestThreshold(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	m, _ := newManager(t, rt, 0, 0)
	if err := os.Truncate(log, DefaultMaxSize-1); err != nil {
		t.Fatal(err)
	}
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0.log"}) || rt.reopenCount() != 0 {
		t.Fatalf("below the size: files %v, %d reopens", got, rt.reopenCount())
	}
	if err := os.Truncate(log, DefaultMaxSize); err != nil {
		t.Fatal(err)
	}
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0.log", "0.log.20240101-120000"}) || rt.reopenCount() != 1 {
		t.Fatalf("at the size: files %v, %d reopens", got, rt.reopenCount())
	}
	if fi, err := os.Stat(log); err != nil || fi.Size() != 0 {
		t.Errorf("the new log: %v, %v", fi, err)
	}
}

// TestRotationSequence rotates a busy log many times: older files get
// compressed, the oldest removed, and the files left hold every line
// written since the oldest kept one, each once, in order.
func TestRotationSequence(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	const maxFiles = 4
	m, clk := newManager(t, rt, 100, maxFiles)
	n := 0
	for round := range 8 {
		for range 10 {
			n++
			rt.write(t, "a", fmt.Sprintf("line %03d", n)) // 9 bytes: 90 a round
		}
		if err := m.Rotate(context.Background()); err != nil {
			t.Fatal(err)
		}
		clk.Step(time.Second)
		files := names(t, dir)
		if len(files) > maxFiles {
			t.Fatalf("round %d: %d files, more than %d: %v", round, len(files), maxFiles, files)
		}
		var plain []string
		for _, f := range files {
			if f != "0.log" && !strings.HasSuffix(f, ".gz") {
				plain = append(plain, f)
			}
		}
		if len(plain) > 1 || (len(plain) == 1 && plain[0] != files[len(files)-1]) {
			t.Fatalf("round %d: only the newest rotated file may be uncompressed: %v", round, files)
		}
	}
	if rt.reopenCount() != 4 {
		t.Errorf("%d reopens, want one every other round (4)", rt.reopenCount())
	}
	files := names(t, dir)
	// 120001 went: the oldest beyond MaxFiles.
	want := []string{"0.log", "0.log.20240101-120003.gz", "0.log.20240101-120005.gz", "0.log.20240101-120007"}
	if !slices.Equal(files, want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	var all strings.Builder
	for _, f := range append(files[1:], files[0]) {
		all.WriteString(content(t, filepath.Join(dir, f)))
	}
	lines := strings.Split(strings.TrimSuffix(all.String(), "\n"), "\n")
	first, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "line "))
	for i, l := range lines {
		if l != fmt.Sprintf("line %03d", first+i) {
			t.Fatalf("line %d is %q: lines are lost or repeated: %q", i, l, lines)
		}
	}
	if last := first + len(lines) - 1; last != n || first != 21 {
		t.Errorf("lines %d..%d kept, want 21..%d", first, last, n)
	}
}

// TestReopenFailure puts the log back when the runtime could not reopen it,
// so that the container's monitor keeps writing to LOG.
func TestReopenFailure(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	rt.reopenErr["a"] = errors.New("conmon is stuck")
	m, _ := newManager(t, rt, 10, 5)
	rt.write(t, "a", "before the failed rotation")
	err := m.Rotate(context.Background())
	if err == nil || !strings.Contains(err.Error(), "conmon is stuck") || !strings.Contains(err.Error(), "c-a") {
		t.Fatalf("Rotate = %v, want the reopen's failure naming the container", err)
	}
	rt.write(t, "a", "after")
	if got := names(t, dir); !slices.Equal(got, []string{"0.log"}) {
		t.Fatalf("files %v, want the log back in place", got)
	}
	if got := content(t, log); got != "before the failed rotation\nafter\n" {
		t.Errorf("log %q", got)
	}

	// A container that stopped meanwhile is not a failure.
	rt.reopenErr["a"] = fmt.Errorf("exited: %w", runtime.ErrFailedPrecondition)
	if err := m.Rotate(context.Background()); err != nil {
		t.Errorf("Rotate with a container that stopped = %v", err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0.log"}) {
		t.Fatalf("files %v, want the log back in place", got)
	}
}

// TestReopenFailedAfterReopening keeps both files when the runtime made a
// new log but reported a failure: putting the old one back would replace
// the new one and lose what was written to it.
func TestReopenFailedAfterReopening(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	rt.reopenThenFail["a"] = true
	m, _ := newManager(t, rt, 10, 5)
	rt.write(t, "a", "old line 1")
	if err := m.Rotate(context.Background()); err == nil {
		t.Fatal("Rotate did not report the failure")
	}
	rt.write(t, "a", "new line 2")
	if got := names(t, dir); !slices.Equal(got, []string{"0.log", "0.log.20240101-120000"}) {
		t.Fatalf("files %v", got)
	}
	if a, b := content(t, filepath.Join(dir, "0.log.20240101-120000")), content(t, log); a != "old line 1\n" || b != "new line 2\n" {
		t.Errorf("rotated %q, current %q", a, b)
	}
}

// TestLeftovers removes what interrupted compressions left and nothing
// else.
func TestLeftovers(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	files := map[string]string{
		"0.log.20231231-100000":        "compressed, original not removed\n",
		"0.log.20231231-100000.gz":     "",
		"0.log.20231231-110000.gz.tmp": "half a compression",
		"0.log.20231231-120000.tmp":    "upstream's temporary name",
		"0.log.20231231-130000":        "rotated\n",
		"0.log.backup":                 "not ours",
		"1.log.20231231-130000":        "another attempt's",
	}
	for name, c := range files {
		if name == "0.log.20231231-100000.gz" {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			io.WriteString(zw, "compressed, original not removed\n")
			zw.Close()
			c = b.String()
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	rt.write(t, "a", "current, big enough")
	m, _ := newManager(t, rt, 10, 5)
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{"0.log", "0.log.20231231-100000.gz", "0.log.20231231-130000.gz", "0.log.20240101-120000", "0.log.backup", "1.log.20231231-130000"}
	if got := names(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files %v, want %v", got, want)
	}
	if got := content(t, filepath.Join(dir, "0.log.20231231-130000.gz")); got != "rotated\n" {
		t.Errorf("compressed content %q", got)
	}
	if fi, err := os.Stat(filepath.Join(dir, "0.log.20231231-130000.gz")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("compressed file mode %v, %v; want the original's 0600", fi.Mode(), err)
	}
}

// TestMissingLogRecreated asks the runtime to recreate a log that is gone.
func TestMissingLogRecreated(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	if err := os.Remove(log); err != nil {
		t.Fatal(err)
	}
	m, _ := newManager(t, rt, 10, 5)
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(log); err != nil || rt.reopenCount() != 1 {
		t.Errorf("log after the pass: %v, %d reopens", err, rt.reopenCount())
	}
}

// TestOnlyRunningContainers leaves the logs of containers that do not run.
func TestOnlyRunningContainers(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	for _, st := range []runtime.ContainerState{runtime.ContainerExited, runtime.ContainerCreated} {
		log := filepath.Join(dir, string(st), "0.log")
		rt.addState(t, string(st), log, st)
		rt.write(t, string(st), "a line long enough to rotate")
	}
	m, _ := newManager(t, rt, 10, 5)
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rt.reopenCount() != 0 {
		t.Errorf("%d reopens of containers that do not run", rt.reopenCount())
	}
}

// TestSameSecond waits for the next second rather than reuse a name.
func TestSameSecond(t *testing.T) {
	dir := t.TempDir()
	rt := newFakeRuntime()
	log := filepath.Join(dir, "0.log")
	rt.add(t, "a", log)
	m, clk := newManager(t, rt, 10, 5)
	rt.write(t, "a", "first file's line")
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	rt.write(t, "a", "second file's line")
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0.log", "0.log.20240101-120000"}) || rt.reopenCount() != 1 {
		t.Fatalf("after a second pass within the second: files %v, %d reopens", got, rt.reopenCount())
	}
	clk.Step(time.Second)
	if err := m.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := names(t, dir); !slices.Equal(got, []string{"0.log", "0.log.20240101-120000.gz", "0.log.20240101-120001"}) {
		t.Fatalf("a second later: files %v", got)
	}
	if a, b := content(t, filepath.Join(dir, "0.log.20240101-120000.gz")), content(t, filepath.Join(dir, "0.log.20240101-120001")); a != "first file's line\n" || b != "second file's line\n" {
		t.Errorf("rotated files hold %q and %q", a, b)
	}
}

// TestDisabled does nothing with a negative MaxSize.
func TestDisabled(t *testing.T) {
	rt := newFakeRuntime()
	m, _ := newManager(t, rt, -1, 5)
	if err := m.Rotate(context.Background()); err != nil || rt.lists != 0 {
		t.Errorf("Rotate = %v after %d lists; want nothing done", err, rt.lists)
	}
}

// TestRun makes a pass at once and one a period later, until cancelled.
func TestRun(t *testing.T) {
	rt := newFakeRuntime()
	m, clk := newManager(t, rt, 10, 5)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		m.Run(ctx, time.Minute)
		close(done)
	}()
	lists := func() int {
		rt.mu.Lock()
		defer rt.mu.Unlock()
		return rt.lists
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, func() error {
			if !cond() {
				return errors.New(what)
			}
			return nil
		})
	}
	waitFor("the first pass", func() bool { return lists() == 1 && clk.HasWaiters() })
	clk.Step(59 * time.Second)
	if lists() != 1 {
		t.Fatalf("a pass before the period passed")
	}
	clk.Step(time.Second)
	waitFor("the second pass", func() bool { return lists() == 2 && clk.HasWaiters() })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
