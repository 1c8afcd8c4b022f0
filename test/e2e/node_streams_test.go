package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peapod-dev/peapod/internal/testutil"
)

// kubectl logs, exec, attach, port-forward and cp through the API server to
// the node's kubelet API, as upstream's kubectl v1.32 speaks them.
func TestNodeStreams(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: talk}
spec:
  containers:
  - name: counter
    image: busybox:1.36
    command: ["sh", "-c", "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.2; done"]
  - name: web
    image: busybox:1.36
    command: ["sh", "-c", "mkdir /www && echo forwarded > /www/index.html && exec httpd -f -p 8080 -h /www"]
  - name: interactive
    image: busybox:1.36
    command: ["sh"]
    stdin: true
    stdinOnce: true
  - name: terminal
    image: busybox:1.36
    command: ["sh"]
    stdin: true
    tty: true
`, "create", "-f", "-")
	waitReady(t, s, "talk")

	// logs: -c, --tail, --timestamps, --limit-bytes, -f.
	Eventually(t, 10*time.Second, func() error {
		if out := s.MustKubectl("logs", "talk", "-c", "counter", "--tail=2"); strings.Count(out, "line ") != 2 {
			return fmt.Errorf("--tail=2: %q", out)
		}
		return nil
	})
	if out := s.MustKubectl("logs", "talk", "-c", "counter", "--timestamps", "--tail=1"); !strings.Contains(out, "Z line ") {
		t.Errorf("--timestamps: %q", out)
	}
	if out := s.MustKubectl("logs", "talk", "-c", "counter", "--limit-bytes=4"); out != "line" {
		t.Errorf("--limit-bytes=4: %q", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	follow := exec.CommandContext(ctx, s.Kubectl, "--kubeconfig", s.Kubeconfig, "logs", "-f", "talk", "-c", "counter", "--tail=1")
	pipe, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(pipe)
	got := 0
	for sc.Scan() && got < 4 {
		got++
	}
	cancel()
	_ = follow.Wait()
	if got < 4 {
		t.Errorf("logs -f delivered %d lines", got)
	}

	// exec: exit codes, stdin, and a TTY.
	if r := s.KubectlRun("", "exec", "talk", "-c", "web", "--", "sh", "-c", "exit 3"); r.Err == nil || !strings.Contains(r.Stderr, "command terminated with exit code 3") {
		t.Errorf("exec exit code: %v %q", r.Err, r.Stderr)
	}
	if out := s.MustKubectlIn("piped input\n", "exec", "-i", "talk", "-c", "web", "--", "cat"); out != "piped input\n" {
		t.Errorf("exec -i: %q", out)
	}
	// kubectl wants a terminal for -t: script(1) gives it one.
	tty, err := exec.Command("script", "-q", "-e", "-c", s.Kubectl+" --kubeconfig "+s.Kubeconfig+" exec -i -t talk -c web -- tty", "/dev/null").CombinedOutput()
	if err != nil || !strings.Contains(string(tty), "/dev/pts/") {
		t.Errorf("exec -t: %q %v", tty, err)
	}

	// attach to the interactive shell's stdin/tty.
	if r := s.KubectlRun("echo attached-$((6*7))\nexit\n", "attach", "-i", "talk", "-c", "interactive"); !strings.Contains(r.Stdout, "attached-42") {
		t.Errorf("attach -i: %q %v %s", r.Stdout, r.Err, r.Stderr)
	}

	// attach -it to a TTY container (script(1) is kubectl's terminal).
	sc2 := exec.Command("script", "-q", "-e", "-c", s.Kubectl+" --kubeconfig "+s.Kubeconfig+" attach -i -t talk -c terminal", "/dev/null")
	sc2.Stdin = strings.NewReader("echo tty-$((6*7)); tty\nexit\n")
	if out, _ := sc2.CombinedOutput(); !strings.Contains(string(out), "tty-42") || !strings.Contains(string(out), "/dev/pts/") {
		t.Errorf("attach -it: %q", out)
	}

	// port-forward to the web container.
	port := testutil.FreePort(t)
	pf := exec.Command(s.Kubectl, "--kubeconfig", s.Kubeconfig, "port-forward", "pod/talk", fmt.Sprintf("%d:8080", port))
	pf.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pf.Process.Kill(); _ = pf.Wait() })
	Eventually(t, 15*time.Second, func() error {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "forwarded\n" {
			return fmt.Errorf("port-forward answered %q", b)
		}
		return nil
	})

	// cp both ways (kubectl cp runs tar in the container).
	local := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(local, []byte("copied in\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.MustKubectl("cp", local, "talk:/tmp/in.txt", "-c", "web")
	if out := s.MustKubectl("exec", "talk", "-c", "web", "--", "cat", "/tmp/in.txt"); out != "copied in\n" {
		t.Errorf("cp into the pod: %q", out)
	}
	back := filepath.Join(t.TempDir(), "back.txt")
	s.MustKubectl("cp", "talk:/www/index.html", back, "-c", "web")
	if b, err := os.ReadFile(back); err != nil || string(b) != "forwarded\n" {
		t.Errorf("cp out of the pod: %q %v", b, err)
	}
}

// --previous shows the last terminated instance's log.
func TestNodeLogsPrevious(t *testing.T) {
	s := StartNode(t)
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: crasher}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "echo run at $(date +%s%N); sleep 0.5; exit 1"]
`, "create", "-f", "-")
	waitPod(t, s, "crasher", "{.status.containerStatuses[0].restartCount}", "1", 30*time.Second)
	Eventually(t, 30*time.Second, func() error {
		prev := s.KubectlRun("", "logs", "crasher", "--previous")
		cur := s.KubectlRun("", "logs", "crasher")
		if prev.Err != nil || !strings.HasPrefix(prev.Stdout, "run at ") || prev.Stdout == cur.Stdout {
			return fmt.Errorf("--previous %q (%s), current %q", prev.Stdout, prev.Stderr, cur.Stdout)
		}
		return nil
	})
	// The crash loop shows as upstream prints it.
	Eventually(t, 40*time.Second, func() error {
		out := s.MustKubectl("get", "pod", "crasher")
		if !strings.Contains(out, "CrashLoopBackOff") {
			return fmt.Errorf("no CrashLoopBackOff yet:\n%s", out)
		}
		return nil
	})
	msg := s.MustKubectl("get", "pod", "crasher", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message} {.status.containerStatuses[0].lastState.terminated.exitCode}")
	if !strings.Contains(msg, "restarting failed container=c pod=crasher_default(") || !strings.HasSuffix(msg, " 1") {
		t.Errorf("waiting message / last state: %q", msg)
	}
}

// A chatty container's log is rotated (here at 1Mi, 3 files kept).
func TestNodeLogRotation(t *testing.T) {
	s := StartNode(t, "--container-log-max-size", "1Mi", "--container-log-max-files", "3")
	s.MustKubectlIn(`apiVersion: v1
kind: Pod
metadata: {name: chatty}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sh", "-c", "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); echo \"line $i ..............................................................................\"; done; exec sleep 3600"]
`, "create", "-f", "-")
	waitReady(t, s, "chatty")
	uid := s.MustKubectl("get", "pod", "chatty", "-o", "jsonpath={.metadata.uid}")
	dir := filepath.Join(s.DataDir, "agent", "logs", "default_chatty_"+uid, "c")
	Eventually(t, 60*time.Second, func() error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		if len(entries) < 2 {
			return fmt.Errorf("not rotated yet: %v", names)
		}
		if len(entries) > 3 {
			return fmt.Errorf("more than 3 files: %v", names)
		}
		cur, err := os.Stat(filepath.Join(dir, "0.log"))
		if err != nil || cur.Size() > 1<<20 {
			return fmt.Errorf("current log not rotated down yet: %v %v", cur, names)
		}
		return nil
	})
	// Nothing is lost at the rotation boundary: the last line is in the
	// newest files (kubectl logs, like upstream's, reads only the current one).
	Eventually(t, 20*time.Second, func() error {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".gz") {
				continue
			}
			b, _ := os.ReadFile(filepath.Join(dir, e.Name()))
			if strings.Contains(string(b), " line 40000 ") {
				return nil
			}
		}
		return fmt.Errorf("line 40000 is in none of the uncompressed files")
	})
}
