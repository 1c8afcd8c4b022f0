package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/peapod-dev/peapod/internal/image/busybox"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// busyboxArchive writes the project's busybox image (from Debian's
// busybox-static) to an OCI archive in a temp dir.
func busyboxArchive(t *testing.T) string {
	t.Helper()
	bin := testutil.RequireTool(t, "busybox", "BUSYBOX")
	path := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := busybox.WriteArchive(f, bin); err != nil {
		t.Fatalf("build busybox archive: %v", err)
	}
	return path
}

// TestImageCLI drives `peapod image load|ls|rm` on a node data dir, with two
// loads racing each other as `peapod image load` does beside a running agent.
func TestImageCLI(t *testing.T) {
	bin := testutil.PeapodBin(t)
	archive := busyboxArchive(t)
	dataDir := t.TempDir()
	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, append([]string{"image", "--data-dir", dataDir, "--registries", filepath.Join(dataDir, "none.yaml")}, args...)...).CombinedOutput()
		return string(out), err
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	outs := make([]string, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = run("load", archive)
		}()
	}
	wg.Wait()
	for i := range 2 {
		if errs[i] != nil || !strings.Contains(outs[i], "Loaded image: docker.io/library/busybox:1.36") {
			t.Fatalf("load %d: %v\n%s", i, errs[i], outs[i])
		}
	}
	ls, err := run("ls")
	if err != nil {
		t.Fatalf("ls: %v\n%s", err, ls)
	}
	lines := strings.Split(strings.TrimSpace(ls), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "IMAGE") ||
		!strings.HasPrefix(lines[1], "docker.io/library/busybox:1.36 ") || !strings.HasPrefix(lines[2], "docker.io/library/busybox:latest ") {
		t.Fatalf("ls after two loads:\n%s", ls)
	}
	if out, err := run("rm", "busybox"); err != nil || !strings.Contains(out, "Deleted: docker.io/library/busybox:latest") {
		t.Fatalf("rm busybox (= busybox:latest): %v\n%s", err, out)
	}
	if ls, _ := run("ls"); strings.Contains(ls, "busybox:latest") || !strings.Contains(ls, "busybox:1.36") {
		t.Fatalf("ls after rm:\n%s", ls)
	}
	if out, err := run("rm", "busybox:nope"); err == nil || !strings.Contains(out, "not found") {
		t.Fatalf("rm of a missing image: want a not found error, got %v\n%s", err, out)
	}
	if out, err := run("pull", "UPPER/case"); err == nil || !strings.Contains(strings.ToLower(out), "invalid") {
		t.Fatalf("pull of an invalid reference: want an error naming it invalid, got %v\n%s", err, out)
	}
}
