package image

import (
	"github.com/peapod-dev/peapod/internal/testutil"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The concurrency and crash tests run child processes: this test binary again,
// running only TestHelperProcess with these variables set.
const (
	helperMode    = "PEAPOD_IMAGE_TEST_HELPER"
	helperRoot    = "PEAPOD_IMAGE_TEST_ROOT"
	helperArchive = "PEAPOD_IMAGE_TEST_ARCHIVE"
)

// TestHelperProcess is not a test of its own: it is the body of the child
// processes the tests below start, and returns at once otherwise.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperMode)
	if mode == "" {
		return
	}
	s, err := Open(Options{Root: os.Getenv(helperRoot), Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	switch mode {
	case "load":
	case "crash-before-index-rename":
		// Die the hard way after the new index is written and synced but before
		// it replaces the old one, as a power cut or SIGKILL would.
		s.SetBeforeIndexRename(func() { os.Exit(3) })
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown mode", mode)
		os.Exit(1)
	}
	if _, err := s.LoadFile(context.Background(), os.Getenv(helperArchive)); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func helperCommand(t *testing.T, mode, root, archive string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperMode+"="+mode, helperRoot+"="+root, helperArchive+"="+archive)
	cmd.Stdout, cmd.Stderr = t.Output(), t.Output()
	return cmd
}

func requireRootInternal(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
}

func openInternal(t *testing.T, root string) *Store {
	t.Helper()
	s, err := Open(Options{Root: root, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// testImages makes n images named example.com/imgN:1; every other one shares a
// base layer with the first.
func testImages(t *testing.T, n int) []ArchiveImage {
	base := MakeLayer(t, "gzip", TarEntry{Name: "base/file", Body: "shared base"})
	var out []ArchiveImage
	for i := range n {
		own := MakeLayer(t, "gzip", TarEntry{Name: fmt.Sprintf("img%d/file", i), Body: fmt.Sprintf("image %d", i)},
			TarEntry{Name: fmt.Sprintf("img%d/big", i), Body: string(make([]byte, 256<<10))})
		layers := []v1.Layer{own}
		if i%2 == 0 {
			layers = []v1.Layer{base, own}
		}
		out = append(out, ArchiveImage{Image: MakeImage(t, v1.Config{Cmd: []string{fmt.Sprint(i)}}, layers...), Names: []string{fmt.Sprintf("example.com/img%d:1", i)}})
	}
	return out
}

// TestConcurrentLoads loads images at the same time from two goroutines on one
// store, a second store instance on the same directory, and two other processes,
// while a fourth goroutine imports and removes an image over and over; then
// checks that the index and the content are exactly what they should be.
func TestConcurrentLoads(t *testing.T) {
	requireRootInternal(t)
	ctx := context.Background()
	dir := t.TempDir()
	root := filepath.Join(dir, "images")
	images := testImages(t, 6)
	archives := make([]string, len(images))
	for i, img := range images {
		archives[i] = WriteArchiveFile(t, filepath.Join(dir, fmt.Sprintf("img%d.tar", i)), img)
	}
	s1, s2 := openInternal(t, root), openInternal(t, root)

	// Other processes load images 0 and 2 (sharing the base layer with 4, loaded
	// here) and 1.
	var procs []*exec.Cmd
	for _, i := range []int{0, 2, 1} {
		cmd := helperCommand(t, "load", root, archives[i])
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	load := func(s *Store, i int) {
		defer wg.Done()
		if _, err := s.LoadFile(ctx, archives[i]); err != nil {
			errs <- fmt.Errorf("load %d: %w", i, err)
		}
	}
	wg.Add(5)
	go load(s1, 0) // the same image as a child process, at the same time
	go load(s1, 3)
	go load(s2, 4)
	go load(s2, 2)
	go func() { // churn: an image that comes and goes
		defer wg.Done()
		for range 5 {
			if _, err := s2.Import(ctx, images[5].Image, images[5].Names...); err != nil {
				errs <- err
				return
			}
			if _, err := s1.Remove(ctx, images[5].Names[0]); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	for _, cmd := range procs {
		if err := cmd.Wait(); err != nil {
			t.Errorf("child %v: %v", cmd.Env[len(cmd.Env)-1], err)
		}
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s3 := openInternal(t, root)
	list, err := s3.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, img := range list {
		got = append(got, img.Name)
	}
	want := []string{"example.com/img0:1", "example.com/img1:1", "example.com/img2:1", "example.com/img3:1", "example.com/img4:1"}
	if !slices.Equal(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
	if err := s3.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		dirs, cfg, err := s3.Rootfs(ctx, want[i])
		if err != nil || !slices.Equal(cfg.Cmd, []string{fmt.Sprint(i)}) {
			t.Fatalf("Rootfs(%s) = %v, %+v, %v", want[i], dirs, cfg, err)
		}
		b, err := os.ReadFile(filepath.Join(dirs[0], fmt.Sprintf("img%d/file", i)))
		if err != nil || string(b) != fmt.Sprintf("image %d", i) {
			t.Errorf("%s: %q, %v", want[i], b, err)
		}
	}
	// 5 own layers + the shared base; 5 manifests + 5 configs + 6 layer blobs.
	if n := len(entries(t, filepath.Join(root, "layers"))); n != 6 {
		t.Errorf("%d layers, want 6", n)
	}
	if n := len(entries(t, filepath.Join(root, "blobs", "sha256"))); n != 16 {
		t.Errorf("%d blobs, want 16", n)
	}
	if left := entries(t, filepath.Join(root, "tmp")); len(left) != 0 {
		t.Errorf("tmp: %v", left)
	}
}

func entries(t *testing.T, dir string) []string {
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

// TestIndexCrashSafety kills a process that is loading an image at the worst
// moment (new index written and synced, not yet renamed into place) and checks
// that the store is intact and its leftovers are collected; and that partial
// work a crash leaves in tmp/ is never mistaken for content.
func TestIndexCrashSafety(t *testing.T) {
	requireRootInternal(t)
	ctx := context.Background()
	dir := t.TempDir()
	root := filepath.Join(dir, "images")
	images := testImages(t, 2)
	a := WriteArchiveFile(t, filepath.Join(dir, "a.tar"), images[0])
	b := WriteArchiveFile(t, filepath.Join(dir, "b.tar"), images[1])
	s := openInternal(t, root)
	if _, err := s.LoadFile(ctx, a); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil {
		t.Fatal(err)
	}

	err = helperCommand(t, "crash-before-index-rename", root, b).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("crashing child: %v, want exit status 3", err)
	}
	after, err := os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil || string(after) != string(before) {
		t.Fatalf("index.json changed by a crashed writer: %v\n%s", err, after)
	}
	var idx v1.IndexManifest
	if err := json.Unmarshal(after, &idx); err != nil {
		t.Fatal(err)
	}
	stale, _ := filepath.Glob(filepath.Join(root, ".index.json.tmp-*"))
	if len(stale) != 1 {
		t.Fatalf("want the crashed writer's temporary index left behind, found %v", stale)
	}
	// Simulate more leftovers: a half-unpacked layer and a half-written blob.
	if err := os.MkdirAll(filepath.Join(root, "tmp", "layer-123", "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "tmp", "blob-456"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}

	s2 := openInternal(t, root)
	list, err := s2.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "example.com/img0:1" {
		t.Fatalf("after the crash: %+v, %v", list, err)
	}
	if err := s2.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if stale, _ := filepath.Glob(filepath.Join(root, ".index.json.tmp-*")); len(stale) != 0 {
		t.Errorf("stale temporary index not collected: %v", stale)
	}
	if left := entries(t, filepath.Join(root, "tmp")); len(left) != 0 {
		t.Errorf("tmp not collected: %v", left)
	}
	// Only image 0's content is left: 2 layers (base, own), 4 blobs.
	if n := len(entries(t, filepath.Join(root, "layers"))); n != 2 {
		t.Errorf("%d layers after collection, want 2", n)
	}
	if n := len(entries(t, filepath.Join(root, "blobs", "sha256"))); n != 4 {
		t.Errorf("%d blobs after collection, want 4", n)
	}
	if _, _, err := s2.Rootfs(ctx, "example.com/img0:1"); err != nil {
		t.Fatal(err)
	}
	// The load that crashed works when run again.
	if _, err := s2.LoadFile(ctx, b); err != nil {
		t.Fatal(err)
	}
	if list, _ := s2.List(ctx); len(list) != 2 {
		t.Fatalf("List = %+v", list)
	}
}

// TestRootfsReunpacksMissingLayer: a layer directory deleted behind the store's
// back is unpacked again from its blob.
func TestRootfsReunpacksMissingLayer(t *testing.T) {
	requireRootInternal(t)
	ctx := context.Background()
	s := openInternal(t, filepath.Join(t.TempDir(), "images"))
	img := testImages(t, 1)[0]
	if _, err := s.Import(ctx, img.Image, img.Names...); err != nil {
		t.Fatal(err)
	}
	dirs, _, err := s.Rootfs(ctx, img.Names[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	dirs2, _, err := s.Rootfs(ctx, img.Names[0])
	if err != nil || !slices.Equal(dirs, dirs2) {
		t.Fatalf("Rootfs = %v, %v", dirs2, err)
	}
	if _, err := os.Stat(filepath.Join(dirs[0], "img0/file")); err != nil {
		t.Fatal(err)
	}
	// A layer blob that no longer matches its digest is refused.
	m, _ := img.Image.Manifest()
	if err := os.RemoveAll(dirs[0]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.blobPath(m.Layers[1].Digest), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Rootfs(ctx, img.Names[0]); !errors.Is(err, ErrInvalidLayer) && !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Rootfs with a corrupt layer blob = %v", err)
	}
}
