package kubeletapi_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/peapod-dev/peapod/internal/kubeletapi"
	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/testutil"
)

// kubectlEnv runs the real kubectl against an apiProxy in front of the
// server.
type kubectlEnv struct {
	t          *testing.T
	bin        string
	kubeconfig string
	home       string
}

func newKubectlEnv(t *testing.T, api *apiProxy) *kubectlEnv {
	bin := testutil.RequireTool(t, "kubectl", "KUBECTL")
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
users:
- name: test
  user: {}
contexts:
- name: test
  context:
    cluster: test
    user: test
    namespace: ns1
current-context: test
`, api.srv.URL)
	if err := os.WriteFile(kubeconfig, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return &kubectlEnv{t: t, bin: bin, kubeconfig: kubeconfig, home: dir}
}

func (k *kubectlEnv) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, k.bin, append([]string{"--cache-dir", filepath.Join(k.home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+k.kubeconfig, "HOME="+k.home)
	cmd.Dir = k.home
	return cmd
}

// run runs kubectl to completion and returns stdout, stderr and exit code.
func (k *kubectlEnv) run(stdin string, args ...string) (string, string, int) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := k.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		return out.String(), errb.String(), exitErr.ExitCode()
	case err != nil:
		k.t.Fatalf("kubectl %v: %v", args, err)
	}
	return out.String(), errb.String(), 0
}

// start starts a long-running kubectl whose stdout is read line by line; it
// is killed (by PID) when the test ends.
func (k *kubectlEnv) start(args ...string) (lines <-chan string, wait func() (int, string)) {
	k.t.Helper()
	cmd := k.command(context.Background(), args...)
	var errb testutil.SyncBuffer
	cmd.Stderr = &errb
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		k.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	ch := make(chan string, 100)
	done := make(chan struct{})
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	var code int
	go func() {
		_ = cmd.Wait()
		code = cmd.ProcessState.ExitCode()
		close(done)
	}()
	k.t.Cleanup(func() {
		select {
		case <-done:
		default:
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return ch, func() (int, string) {
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			k.t.Fatalf("kubectl %v did not exit; stderr: %s", args, errb.String())
		}
		return code, errb.String()
	}
}

// TestKubectl drives the real kubectl (1.32) through the API server's
// handlers to the server: logs, exec, attach, cp and port-forward.
func TestKubectl(t *testing.T) {
	h := newHarness(t)
	api := newAPIProxy(t, h)
	k := newKubectlEnv(t, api)

	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	base := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	writeLog(t, logPath,
		criLine(base, "stdout", "F", "one"),
		criLine(base.Add(time.Second), "stderr", "F", "two"),
		criLine(base.Add(2*time.Second), "stdout", "F", "three"),
	)
	h.addPod("ns1", "web", "uid-web", "app")
	h.rt.add("web-app-1", runtime.ContainerRunning, logPath)
	api.addPod("ns1", "web", corev1.Container{Name: "app", Image: "busybox", Stdin: true})

	t.Run("logs", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{[]string{"logs", "web"}, "one\ntwo\nthree\n"},
			{[]string{"logs", "web", "-c", "app", "--tail=1", "--timestamps"}, base.Add(2*time.Second).Format(criTime) + " three\n"},
			{[]string{"logs", "pod/web", "--limit-bytes=5"}, "one\nt"},
			{[]string{"logs", "web", "--since-time=" + base.Add(time.Second).Format(time.RFC3339)}, "two\nthree\n"},
		} {
			out, errOut, code := k.run("", tc.args...)
			if code != 0 || out != tc.want {
				t.Errorf("kubectl %v: exit %d, stdout %q (want %q), stderr %q", tc.args, code, out, tc.want, errOut)
			}
		}
		_, errOut, code := k.run("", "logs", "web", "--previous")
		if want := "Error from server (BadRequest): previous terminated container \"app\" in pod \"web\" not found\n"; code != 1 || errOut != want {
			t.Errorf("kubectl logs --previous: exit %d, stderr %q, want %q", code, errOut, want)
		}
	})

	t.Run("exec", func(t *testing.T) {
		out, errOut, code := k.run("", "exec", "web", "-c", "app", "--", "echo", "hello", "world")
		if code != 0 || out != "hello world\n" || errOut != "err:hello world\n" {
			t.Errorf("kubectl exec echo: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		// stdin's end reaches the command (WebSocket v5's close signal,
		// SPDY's half-close after translation).
		out, errOut, code = k.run("line 1\nline 2\n", "exec", "-i", "web", "--", "cat")
		if code != 0 || out != "line 1\nline 2\n" {
			t.Errorf("kubectl exec -i cat: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		_, errOut, code = k.run("", "exec", "web", "--", "exit", "3")
		if code != 3 || !strings.Contains(errOut, "command terminated with exit code 3") {
			t.Errorf("kubectl exec exit 3: exit %d, stderr %q", code, errOut)
		}
	})

	t.Run("cp", func(t *testing.T) {
		local := filepath.Join(k.home, "upload.txt")
		if err := os.WriteFile(local, []byte("uploaded content\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		h.rt.mu.Lock()
		h.rt.dirs["/data"] = true
		h.rt.files["/data/report.txt"] = "report from the pod\n"
		h.rt.mu.Unlock()

		if out, errOut, code := k.run("", "cp", "upload.txt", "web:/data/upload.txt", "-c", "app"); code != 0 {
			t.Fatalf("kubectl cp to the pod: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		h.rt.mu.Lock()
		got := h.rt.files["/data/upload.txt"]
		h.rt.mu.Unlock()
		if got != "uploaded content\n" {
			t.Errorf("file in the pod: %q", got)
		}

		if out, errOut, code := k.run("", "cp", "ns1/web:/data/report.txt", "report.txt"); code != 0 {
			t.Fatalf("kubectl cp from the pod: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		b, err := os.ReadFile(filepath.Join(k.home, "report.txt"))
		if err != nil || string(b) != "report from the pod\n" {
			t.Errorf("copied file: %q, %v", b, err)
		}
	})

	t.Run("attach", func(t *testing.T) {
		out, errOut, code := k.run("hi\nbye\n", "attach", "-i", "web", "-c", "app")
		if code != 0 || !strings.Contains(out, "main:hi\n") {
			t.Errorf("kubectl attach -i: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})

	t.Run("logs follow", func(t *testing.T) {
		lines, wait := k.start("logs", "-f", "web", "--tail=1")
		if got := readLine(t, lines, 20*time.Second); got != "three" {
			t.Fatalf("first line %q", got)
		}
		writeLog(t, logPath, criLine(time.Now(), "stdout", "F", "four"))
		if got := readLine(t, lines, 10*time.Second); got != "four" {
			t.Fatalf("appended line %q", got)
		}
		h.rt.setState("web-app-1", runtime.ContainerExited)
		if code, errOut := wait(); code != 0 {
			t.Errorf("kubectl logs -f after the container exited: exit %d, stderr %q", code, errOut)
		}
		h.rt.setState("web-app-1", runtime.ContainerRunning)
	})

	t.Run("port-forward", func(t *testing.T) {
		// A host-network pod: the forward reaches the node's loopback.
		h.pods.mu.Lock()
		h.pods.pods["ns1/web"].sandbox = kubeletapi.SandboxRef{ID: "sb-web"}
		h.pods.mu.Unlock()
		srv := serveTCP(t, "", "127.0.0.1:0", "web")
		lines, _ := k.start("port-forward", "--address", "127.0.0.1", "pod/web", ":"+strconv.Itoa(srv.port()))
		line := readLine(t, lines, 20*time.Second)
		m := regexp.MustCompile(`^Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)$`).FindStringSubmatch(line)
		if m == nil || m[2] != strconv.Itoa(srv.port()) {
			t.Fatalf("kubectl port-forward said %q", line)
		}
		local, _ := strconv.Atoi(m[1])
		for i := range 2 {
			if got := roundTrip(t, local, fmt.Sprint("ping ", i)); got != fmt.Sprint("web\ngot:ping ", i) {
				t.Errorf("connection %d: %q", i, got)
			}
		}
	})

	if n := api.proxied.Load(); n != 0 {
		t.Errorf("%d streaming requests fell back to SPDY; kubectl 1.32 should use WebSockets", n)
	}
}
