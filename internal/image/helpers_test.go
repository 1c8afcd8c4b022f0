package image_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/peapod-dev/peapod/internal/image"
	"github.com/peapod-dev/peapod/internal/image/busybox"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// prerequisite fails the test under CI=true and skips it elsewhere: CI must
// never pass by skipping what it cannot run.
func prerequisite(t *testing.T, format string, args ...any) {
	t.Helper()
	testutil.Require(t, false, fmt.Sprintf(format, args...))
}

// requireRoot needs root (mknod, trusted.* xattrs, chown, overlay mounts).
func requireRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openStore opens a store in dir (a new temporary directory when empty).
func openStore(t *testing.T, dir string, opts ...func(*image.Options)) *image.Store {
	t.Helper()
	requireRoot(t)
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "images")
	}
	o := image.Options{Root: dir, Logger: testLogger(t), Transport: loopbackTransport(t)}
	for _, f := range opts {
		f(&o)
	}
	s, err := image.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// busyboxArchive builds the busybox test image archive into a temporary file.
func busyboxArchive(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(busybox.DefaultBinary); err != nil {
		prerequisite(t, "%s (Debian's busybox-static): %v", busybox.DefaultBinary, err)
	}
	p := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := busybox.WriteArchive(f, busybox.DefaultBinary); err != nil {
		t.Fatal(err)
	}
	return p
}

// loopbackTransport is an HTTP transport that refuses to dial anything but a
// loopback IP address, so that no test ever reaches an outside host.
func loopbackTransport(t *testing.T) *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	var d net.Dialer
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Errorf("test transport refused to dial %s", addr)
			return nil, errors.New("test transport: only loopback addresses")
		}
		return d.DialContext(ctx, network, addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

func mustLoad(t *testing.T, s *image.Store, path string) []image.Image {
	t.Helper()
	imgs, err := s.LoadFile(context.Background(), path)
	if err != nil {
		t.Fatalf("load %s: %v", path, err)
	}
	return imgs
}

func names(imgs []image.Image) []string {
	out := make([]string, len(imgs))
	for i, img := range imgs {
		out[i] = img.Name
	}
	return out
}

func readDirNames(t *testing.T, dir string) []string {
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
