package kubelet

import (
	"bytes"
	"context"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/peapod-dev/peapod/internal/prober"
	"github.com/peapod-dev/peapod/internal/runtime"
)

// probeExec runs probe commands through the runtime.
type probeExec struct{ rt runtime.Runtime }

func (p probeExec) Exec(ctx context.Context, id string, cmd []string, timeout time.Duration) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out bytes.Buffer
	code, err := p.rt.Exec(ctx, id, runtime.ExecOptions{Cmd: cmd, Stdout: &out, Stderr: &out})
	if err != nil && ctx.Err() != nil {
		return -1, out.Bytes(), ctx.Err()
	}
	return code, out.Bytes(), err
}

func (k *Kubelet) newProber() *prober.Manager {
	return prober.New(prober.Config{
		Exec:     probeExec{k.cfg.Runtime},
		Clock:    k.clock,
		Logger:   k.log.With("component", "prober"),
		OnChange: func(uid types.UID) { k.queue.Add(uid) },
		OnEvent: func(pod *v1.Pod, container, typ, reason, message string) {
			k.event(pod, fieldPath(pod, container), typ, reason, "%s", message)
		},
	})
}

// updateProbes tells the prober which containers of the pod run now.
func (k *Kubelet) updateProbes(pod *v1.Pod, st *podState) {
	if st.sandbox == nil {
		return
	}
	ip, _, _ := strings.Cut(st.sandbox.Annotations[annotationIPs], ",")
	running := map[string]prober.Running{}
	for name := range st.containers {
		if cur := st.current(name, st.sandbox.ID); cur != nil && cur.State == runtime.ContainerRunning {
			running[name] = prober.Running{ID: cur.ID, StartedAt: cur.StartedAt}
		}
	}
	k.prober.UpdatePod(pod, ip, running)
}

// killUnhealthy kills the containers whose liveness or startup probe failed
// past its threshold; they then restart as the pod's policy says.
func (k *Kubelet) killUnhealthy(ctx context.Context, pod *v1.Pod, st *podState) bool {
	killed := false
	for name := range st.containers {
		cur := st.current(name, st.sandbox.ID)
		if cur == nil || cur.State != runtime.ContainerRunning {
			continue
		}
		kill, ok := k.prober.TakeKill(pod.UID, name)
		if !ok || kill.ContainerID != cur.ID {
			continue
		}
		grace := max(kill.GracePeriodSeconds, 2)
		_ = k.killContainer(ctx, pod, cur, k.clock.Now().Add(time.Duration(grace)*time.Second), kill.Message)
		killed = true
	}
	return killed
}
