package runtimetest

import (
	"bytes"
	"strings"
	"syscall"
	"testing"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// testRuntimeHandlers runs a pod with the default handler and with each of
// handlers, reopens the runtime, and checks that every pod is still driven
// (exec, a new container, stop, removal) with the handler it was made
// with. An unknown handler is refused with containerd's words.
func testRuntimeHandlers(t *testing.T, f *Fixture, handlers []string) {
	ctx := f.Ctx()
	_, err := f.RT.RunPodSandbox(ctx, runtime.SandboxConfig{Name: "nohandler", Namespace: "default", UID: randHex(8),
		CgroupParent: f.Parent, RuntimeHandler: "no-such-handler"})
	isErr(t, "RunPodSandbox(unknown handler)", err, runtime.ErrInvalid)
	if err != nil && !strings.Contains(err.Error(), `no runtime for "no-such-handler" is configured`) {
		t.Errorf("unknown handler: %q lacks upstream's words", err)
	}
	if sbs, err := f.RT.ListPodSandboxes(ctx); err != nil || len(sbs) != 0 {
		t.Errorf("a refused handler left %d sandboxes (%v)", len(sbs), err)
	}

	type pod struct{ handler, sandbox, app string }
	var pods []pod
	for _, h := range append([]string{""}, handlers...) {
		name := "handler-" + h
		if h == "" {
			name = "handler-default"
		}
		sb := f.Sandbox(runtime.SandboxConfig{Name: name, RuntimeHandler: h})
		app := f.Container(sb, runtime.ContainerConfig{Name: "app", Args: []string{"sleep", "3600"}}, true)
		pods = append(pods, pod{h, sb, app})
	}
	f.Open() // a new instance takes over every pod
	for _, p := range pods {
		ss, err := f.RT.SandboxStatus(ctx, p.sandbox)
		if err != nil || ss.State != runtime.SandboxReady || ss.RuntimeHandler != p.handler {
			t.Fatalf("handler %q: sandbox after a restart: %+v, %v", p.handler, ss, err)
		}
		var out bytes.Buffer
		code, err := f.RT.Exec(ctx, p.app, runtime.ExecOptions{Cmd: Sh("echo in-$HOSTNAME"), Stdout: &out})
		if err != nil || code != 0 || strings.TrimSpace(out.String()) != "in-"+ss.Hostname {
			t.Errorf("handler %q: exec after a restart: code %d, %v, %q", p.handler, code, err, out.String())
		}
		st, lines := f.Run(p.sandbox, runtime.ContainerConfig{Name: "later", Args: Sh("echo later")})
		if st.ExitCode != 0 || len(lines) != 1 || lines[0] != "later" {
			t.Errorf("handler %q: a container created after a restart: exit %d, %q", p.handler, st.ExitCode, lines)
		}
		if err := f.RT.StopContainer(ctx, p.app, 0, syscall.SIGKILL); err != nil {
			t.Fatalf("handler %q: %v", p.handler, err)
		}
		if st := f.Status(p.app); st.State != runtime.ContainerExited || st.ExitCode != 137 {
			t.Errorf("handler %q: the killed container: %+v", p.handler, st)
		}
		if err := f.RT.RemovePodSandbox(ctx, p.sandbox); err != nil {
			t.Fatalf("handler %q: %v", p.handler, err)
		}
	}
}
