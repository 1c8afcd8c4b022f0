package oci_test

import (
	"context"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/runtimetest"
)

// BenchmarkPodLifecycle measures one pod's whole life through the runtime
// seam: RunPodSandbox (catatonit infra), CreateContainer (overlay root),
// StartContainer, StopContainer (SIGKILL), RemoveContainer, StopPodSandbox,
// RemovePodSandbox; the phases are reported as ms per pod.
//
//	go test -run '^$' -bench PodLifecycle -benchtime 50x ./internal/runtime/oci/
func BenchmarkPodLifecycle(b *testing.B) {
	for _, rt := range runtimes {
		b.Run(rt, func(b *testing.B) {
			requireTools(b, rt)
			f := runtimetest.NewFixture(b, opener(rt), runtimetest.BusyboxRootfs(b))
			ctx := context.Background()
			var phases [5]time.Duration
			lap := func(i int, start *time.Time) {
				now := time.Now()
				phases[i] += now.Sub(*start)
				*start = now
			}
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				sb, err := f.RT.RunPodSandbox(ctx, runtime.SandboxConfig{Name: "bench", Namespace: "default", CgroupParent: f.Parent})
				if err != nil {
					b.Fatal(err)
				}
				lap(0, &t0)
				id, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: "c", Args: []string{"sleep", "3600"},
					Rootfs: runtime.Rootfs{LowerDirs: []string{f.Rootfs}}})
				if err != nil {
					b.Fatal(err)
				}
				lap(1, &t0)
				if err := f.RT.StartContainer(ctx, id); err != nil {
					b.Fatal(err)
				}
				lap(2, &t0)
				if err := f.RT.StopContainer(ctx, id, 0, 0); err != nil {
					b.Fatal(err)
				}
				lap(3, &t0)
				if err := f.RT.RemoveContainer(ctx, id); err != nil {
					b.Fatal(err)
				}
				if err := f.RT.StopPodSandbox(ctx, sb); err != nil {
					b.Fatal(err)
				}
				if err := f.RT.RemovePodSandbox(ctx, sb); err != nil {
					b.Fatal(err)
				}
				lap(4, &t0)
			}
			b.StopTimer()
			for i, name := range []string{"sandbox-ms", "create-ms", "start-ms", "stop-ms", "remove-ms"} {
				b.ReportMetric(float64(phases[i].Microseconds())/1000/float64(b.N), name)
			}
		})
	}
}
