// Package testutil holds what the project's tests share: the rule for missing
// prerequisites (fail under CI=true, skip visibly elsewhere), waiting on a
// condition with a deadline, and a harness that runs the real bin/peapod server
// on a free loopback port in a temporary data dir, stopping it by PID when the
// test ends, pass or fail. Only tests import it.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Require fails the test under CI=true and skips it elsewhere when a
// prerequisite (what) is missing (ok false).
func Require(t testing.TB, ok bool, what string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("missing prerequisite: %s", what)
	}
	t.Skipf("missing prerequisite: %s", what)
}

// RequireRoot is Require for running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "must run as root")
}

// RequireTool returns the path of an external tool ($env when set, else from
// PATH); without it the test fails under CI=true and is skipped elsewhere.
func RequireTool(t testing.TB, name, env string) string {
	t.Helper()
	if env != "" {
		if p := os.Getenv(env); p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
			t.Fatalf("%s=%s does not exist", env, p)
		}
	}
	p, err := exec.LookPath(name)
	Require(t, err == nil, fmt.Sprintf("%s not found (install it or set %s)", name, env))
	return p
}

// PeapodBin is the binary under test: $PEAPOD_BIN, or bin/peapod of the
// checkout the test runs in (found by walking up to go.mod).
func PeapodBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("PEAPOD_BIN"); p != "" {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
	p := filepath.Join(dir, "bin", "peapod")
	_, err = os.Stat(p)
	Require(t, err == nil, "bin/peapod (run make build)")
	return p
}

// Server is a running `peapod server` started by a test.
type Server struct {
	t          testing.TB
	Bin        string
	DataDir    string
	Port       int
	Kubeconfig string
	Kubectl    string
	cmd        *exec.Cmd
	logs       *SyncBuffer
	done       chan struct{}
	extraArgs  []string
	// NodeName and KubeletPort are the in-process node agent's (StartNode).
	NodeName    string
	KubeletPort int
}

// SyncBuffer is a goroutine-safe log sink.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// StartServer starts `peapod server --disable-agent` in a fresh data dir and waits
// until it is ready. It is stopped when the test ends. Set Kubectl to use the
// Kubectl* methods.
func StartServer(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	s := &Server{
		t:         t,
		Bin:       PeapodBin(t),
		DataDir:   t.TempDir(),
		Port:      FreePort(t),
		extraArgs: extraArgs,
	}
	s.Kubeconfig = filepath.Join(s.DataDir, "admin.kubeconfig")
	s.Start()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server log (tail):\n%s", Tail(s.Logs(), 60))
		}
	})
	return s
}

// Start (re)starts the server process on the same data dir and port.
func (s *Server) Start() {
	s.t.Helper()
	s.logs = &SyncBuffer{}
	args := []string{"server", "--bind-address", "127.0.0.1",
		"--https-listen-port", strconv.Itoa(s.Port), "--data-dir", s.DataDir}
	if s.NodeName == "" {
		args = append(args, "--disable-agent")
	} else {
		args = append(args, "--node-name", s.NodeName, "--node-ip", "127.0.0.1",
			"--kubelet-port", strconv.Itoa(s.KubeletPort), "--registries", filepath.Join(s.DataDir, "registries.yaml"))
	}
	args = append(args, s.extraArgs...)
	s.cmd = exec.Command(s.Bin, args...)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
	s.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(s.cmd, s.done)
	s.WaitReady(30 * time.Second)
}

// For returns a view of s whose helpers report to t, so that subtests sharing
// one server fail themselves, not their parent.
func (s *Server) For(t testing.TB) *Server {
	c := *s
	c.t = t
	return &c
}

// PID is the server's process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Logs returns everything the server printed so far.
func (s *Server) Logs() string { return s.logs.String() }

// WaitReady waits until the log says the server is ready.
func (s *Server) WaitReady(timeout time.Duration) {
	s.t.Helper()
	Eventually(s.t, timeout, func() error {
		select {
		case <-s.done:
			return fmt.Errorf("server exited early: %s", Tail(s.Logs(), 30))
		default:
		}
		if !strings.Contains(s.Logs(), "peapod server ready") {
			return fmt.Errorf("not ready yet")
		}
		return nil
	})
}

// Stop sends SIGTERM and waits for the process to exit (SIGKILL after 20 s).
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Kill sends SIGKILL and waits for the process to be gone.
func (s *Server) Kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Exited reports whether the server process has exited, and its exit code.
func (s *Server) Exited() (bool, int) {
	select {
	case <-s.done:
		return true, s.cmd.ProcessState.ExitCode()
	default:
		return false, 0
	}
}

// Result is a finished command.
type Result struct {
	Stdout, Stderr string
	Err            error
}

// Kubectl runs the real kubectl against the server with a 60 s deadline.
func (s *Server) KubectlRun(stdin string, args ...string) Result {
	s.t.Helper()
	return s.KubectlEnv(nil, stdin, args...)
}

// KubectlEnv is KubectlRun with extra environment variables.
func (s *Server) KubectlEnv(env []string, stdin string, args ...string) Result {
	s.t.Helper()
	if s.Kubectl == "" {
		s.t.Fatal("Server.Kubectl is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Kubectl, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+s.Kubeconfig), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	err := cmd.Run()
	return Result{Stdout: out.String(), Stderr: errb.String(), Err: err}
}

// MustKubectl runs kubectl and fails the test when it exits non-zero.
func (s *Server) MustKubectl(args ...string) string {
	s.t.Helper()
	r := s.KubectlRun("", args...)
	if r.Err != nil {
		s.t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// MustKubectlIn is MustKubectl with stdin.
func (s *Server) MustKubectlIn(stdin string, args ...string) string {
	s.t.Helper()
	r := s.KubectlRun(stdin, args...)
	if r.Err != nil {
		s.t.Fatalf("kubectl %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
	}
	return r.Stdout
}

// RESTConfig is a client-go configuration for the admin user.
func (s *Server) RESTConfig() *rest.Config {
	s.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		s.t.Fatalf("kubeconfig: %v", err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	return cfg
}

// Client is a clientset for the admin user.
func (s *Server) Client() kubernetes.Interface {
	s.t.Helper()
	return kubernetes.NewForConfigOrDie(s.RESTConfig())
}

// Eventually retries f every 50 ms until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = f(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
