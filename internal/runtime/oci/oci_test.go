package oci_test

import (
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
)

// runtimes are the OCI runtimes the suite runs with (both from Debian).
var runtimes = []string{"runc", "crun"}

// requireTools fails under CI=true, and skips otherwise, when the machine
// cannot run the suite (root, the runtime, conmon, catatonit).
func requireTools(t testing.TB, rt string) {
	t.Helper()
	runtimetest.Require(t, os.Geteuid() == 0, "the OCI runtime tests need root")
	for _, bin := range []string{rt, "conmon", "catatonit", "unshare"} {
		_, err := exec.LookPath(bin)
		runtimetest.Require(t, err == nil, bin+" is not installed (make deps installs hack/deb-packages.txt)")
	}
}

// handlers are the runtime handlers every test runtime is configured with.
var handlers = map[string]string{"runc": "runc", "crun": "crun"}

func opener(rt string) runtimetest.Opener {
	return func(t testing.TB, state string) runtime.Runtime {
		t.Helper()
		r, err := oci.New(oci.Config{StateDir: state, Runtime: rt, Handlers: handlers, Logger: testLogger(t)})
		if err != nil {
			t.Fatalf("oci.New(%s): %v", rt, err)
		}
		return r
	}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestConformance runs the runtime suite with runc and with crun (through
// the wrapper that hides the cgroup2 mount on hybrid hosts) as the default
// handler, each with both as named handlers too.
func TestConformance(t *testing.T) {
	for _, rt := range runtimes {
		t.Run(rt, func(t *testing.T) {
			for _, h := range runtimes {
				requireTools(t, h)
			}
			runtimetest.RunWith(t, opener(rt), runtimetest.Options{Handlers: slices.Sorted(maps.Keys(handlers))})
		})
	}
}
