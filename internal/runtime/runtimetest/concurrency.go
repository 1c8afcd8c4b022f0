package runtimetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// testConcurrentPods runs several pods of two containers at once, as the
// agent does, then removes them all at once.
func testConcurrentPods(t *testing.T, f *Fixture) {
	ctx := f.Ctx()
	const pods = 4
	sandboxes := make([]string, pods)
	errs := make([]error, pods)
	var wg sync.WaitGroup
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				sb, err := f.RT.RunPodSandbox(ctx, runtime.SandboxConfig{Name: fmt.Sprintf("pod-%d", i), Namespace: "default",
					CgroupParent: f.Parent, SharePID: i%2 == 0})
				if err != nil {
					return err
				}
				sandboxes[i] = sb
				for _, name := range []string{"a", "b"} {
					id, err := f.RT.CreateContainer(ctx, sb, runtime.ContainerConfig{Name: name,
						Args: []string{"sleep", "3600"}, Rootfs: runtime.Rootfs{LowerDirs: []string{f.Rootfs}}})
					if err != nil {
						return err
					}
					if err := f.RT.StartContainer(ctx, id); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
	}
	running, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{State: runtime.ContainerRunning})
	if err != nil || len(running) != 2*pods {
		t.Fatalf("running containers = %d, %v; want %d", len(running), err, 2*pods)
	}
	for _, c := range running {
		f.Track(c.Pid)
	}
	sbs, err := f.RT.ListPodSandboxes(ctx)
	if err != nil || len(sbs) != pods {
		t.Fatalf("sandboxes = %d, %v; want %d", len(sbs), err, pods)
	}
	for _, sb := range sbs {
		f.Track(sb.Pid)
		if sb.State != runtime.SandboxReady {
			t.Errorf("sandbox %s is %s", sb.Name, sb.State)
		}
	}
	for i, sb := range sandboxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f.RT.RemovePodSandbox(ctx, sb)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("removing pod %d: %v", i, err)
		}
	}
	if left, err := f.RT.ListContainers(ctx, runtime.ContainerFilter{}); err != nil || len(left) != 0 {
		t.Errorf("containers left after removing every pod: %d, %v", len(left), err)
	}
}
