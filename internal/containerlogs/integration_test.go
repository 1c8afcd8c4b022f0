package containerlogs_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	crilogs "k8s.io/cri-client/pkg/logs"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/peapod-dev/peapod/internal/containerlogs"
	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// TestRotateRunningContainer rotates the log of a container that writes
// numbered lines without pause (ten every millisecond or so, so that some
// fall between a rename and the reopen; not faster, so that a slow test,
// as under -race, does not face an ever larger log) through the real
// runtime (runc under conmon), several times, and reads every file left
// with upstream's ReadLogs: the lines form one unbroken sequence, none lost
// or repeated at any rotation boundary.
func TestRotateRunningContainer(t *testing.T) {
	testutil.RequireRoot(t)
	for _, bin := range []string{"runc", "conmon", "catatonit"} {
		testutil.RequireTool(t, bin, "")
	}
	open := func(t testing.TB, state string) runtime.Runtime {
		r, err := oci.New(oci.Config{StateDir: state, Runtime: "runc"})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	f := runtimetest.NewFixture(t, open, runtimetest.BusyboxRootfs(t))
	ctx := f.Ctx()
	sb := f.Sandbox(runtime.SandboxConfig{Name: "chatty"})
	dir := filepath.Join(f.TempDir(), "default_chatty_0123", "talker")
	log := filepath.Join(dir, "0.log")
	id := f.Container(sb, runtime.ContainerConfig{Name: "talker", LogPath: log,
		// read -t on a FIFO nobody writes is a sleep without a fork.
		Args: runtimetest.Sh(`mkfifo /tmp/tick; exec 3<>/tmp/tick; i=0; while :; do
			for j in 0 1 2 3 4 5 6 7 8 9; do i=$((i+1)); echo "line $i"; done; read -t 0.001 -u 3 x; done`)}, true)

	const maxSize, maxFiles, rotations = 32 << 10, 4, 6
	clk := testingclock.NewFakeClock(time.Date(2024, 1, 1, 12, 0, 0, 0, time.Local))
	m, err := containerlogs.New(containerlogs.Config{Runtime: f.RT, MaxSize: maxSize, MaxFiles: maxFiles, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for range rotations {
		err := runtimetest.WaitFor(ctx, 30*time.Second, func() (bool, error) {
			fi, err := os.Stat(log)
			return err == nil && fi.Size() >= maxSize, nil
		})
		if err != nil {
			t.Fatalf("waiting for the log to reach %d bytes: %v", maxSize, err)
		}
		if err := m.Rotate(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(log + "." + clk.Now().Format("20060102-150405")); err != nil {
			t.Fatalf("no rotated file after the pass: %v", err)
		}
		clk.Step(time.Second)
	}
	if err := f.RT.StopContainer(ctx, id, 0, 0); err != nil {
		t.Fatal(err)
	}

	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	name := regexp.MustCompile(`^0\.log(\.[0-9]{8}-[0-9]{6}(\.gz)?)?$`)
	var files []string
	for _, e := range ents {
		if !name.MatchString(e.Name()) {
			t.Errorf("unexpected file %s", e.Name())
		}
		files = append(files, e.Name())
	}
	// Sorted: 0.log, then the rotated files oldest first.
	if len(files) != maxFiles || files[0] != "0.log" || strings.HasSuffix(files[maxFiles-1], ".gz") ||
		!strings.HasSuffix(files[1], ".gz") || !strings.HasSuffix(files[maxFiles-2], ".gz") {
		t.Fatalf("files %v: want 0.log, %d compressed rotated files and the newest uncompressed", files, maxFiles-2)
	}
	var stream bytes.Buffer
	for _, name := range append(files[1:], files[0]) {
		stream.WriteString(readLog(t, filepath.Join(dir, name)))
	}
	lines := strings.Split(strings.TrimSuffix(stream.String(), "\n"), "\n")
	first, err := strconv.Atoi(strings.TrimPrefix(lines[0], "line "))
	if err != nil || first <= 1 {
		t.Fatalf("first line kept %q: the oldest files should have been removed", lines[0])
	}
	for i, l := range lines {
		if l != "line "+strconv.Itoa(first+i) {
			t.Fatalf("after line %d of %d comes %q, want line %d: lost or repeated across a rotation", first+i-1, len(lines), l, first+i)
		}
	}
	t.Logf("%d rotations, lines %d..%d kept in %v", rotations, first, first+len(lines)-1, files)
}

// readLog reads one log file with upstream's reader, decompressing it
// first when it is gzipped.
func readLog(t *testing.T, path string) string {
	t.Helper()
	if strings.HasSuffix(path, ".gz") {
		in, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer in.Close()
		zr, err := gzip.NewReader(in)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		plain := filepath.Join(t.TempDir(), filepath.Base(strings.TrimSuffix(path, ".gz")))
		out, err := os.Create(plain)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(out, zr); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		out.Close()
		path = plain
	}
	var stdout, stderr bytes.Buffer
	opts := crilogs.NewLogOptions(&v1.PodLogOptions{}, time.Now())
	if err := crilogs.ReadLogs(t.Context(), nil, path, "", opts, nil, &stdout, &stderr); err != nil {
		t.Fatalf("ReadLogs(%s): %v", path, err)
	}
	if stderr.Len() > 0 {
		t.Errorf("%s: stderr lines %q", path, stderr.String())
	}
	return stdout.String()
}
