package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// ProcMemory is a process's resident set size and its peak, in KiB, from
// /proc/PID/status; AnonKiB and FileKiB split the resident set into
// anonymous memory (heap, stacks) and file-backed pages (the binary, shared
// libraries).
type ProcMemory struct {
	RSSKiB  int64
	HWMKiB  int64
	AnonKiB int64
	FileKiB int64
}

// ReadProcCPU returns the CPU time (user + system) pid has used so far, from
// /proc/PID/stat, in the kernel's user-visible clock ticks (USER_HZ, 100 per
// second on Linux).
func ReadProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (time.Duration, error) {
	// The command name (field 2) is in parentheses and may contain spaces:
	// count fields after its closing parenthesis. utime and stime are fields
	// 14 and 15, so the 12th and 13th after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed /proc stat line: %d fields after the command", len(f))
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("malformed /proc stat line: %w", err)
		}
		ticks += n
	}
	const userHZ = 100
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// ReadProcMemory reads pid's VmRSS and VmHWM.
func ReadProcMemory(pid int) (ProcMemory, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return ProcMemory{}, err
	}
	return parseProcStatus(b)
}

func parseProcStatus(b []byte) (ProcMemory, error) {
	var m ProcMemory
	var found bool
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst, found = &m.RSSKiB, true
		case "VmHWM":
			dst = &m.HWMKiB
		case "RssAnon":
			dst = &m.AnonKiB
		case "RssFile":
			dst = &m.FileKiB
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("unexpected /proc status line %q", sc.Text())
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("unexpected /proc status line %q: %w", sc.Text(), err)
		}
		*dst = v
	}
	if !found {
		return m, errors.New("no VmRSS in /proc status (a kernel thread or a zombie?)")
	}
	return m, nil
}

// hostInfo describes this machine.
func hostInfo() Host {
	h := Host{CPUs: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, GoClient: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.Join(strings.Fields(v), " ")
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				if kib, err := strconv.ParseInt(f[1], 10, 64); err == nil {
					h.MemMiB = kib / 1024
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		h.Kernel = strings.TrimSpace(string(b))
	}
	return h
}

// ownServer is a `peapod server --disable-agent --disable-scheduler` the benchmark started in a
// temporary data dir on a free loopback port.
type ownServer struct {
	cmd        *exec.Cmd
	dir        string
	kubeconfig string
	logPath    string
	logFile    *os.File
	done       chan struct{}
	waitErr    error
}

// startServer starts bin as a control-plane-only peapod server and waits
// until its /readyz answers ok.
func startServer(ctx context.Context, bin string, timeout time.Duration, progress io.Writer) (_ *ownServer, err error) {
	dir, err := os.MkdirTemp("", "peapod-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(dir)
		}
	}()
	port, err := freeLoopbackPort()
	if err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	s := &ownServer{
		dir:        dir,
		kubeconfig: filepath.Join(dataDir, "admin.kubeconfig"),
		logPath:    filepath.Join(dir, "server.log"),
		done:       make(chan struct{}),
	}
	if s.logFile, err = os.Create(s.logPath); err != nil {
		return nil, err
	}
	// No agent and no scheduler: the API server, its store and the
	// controllers, as comparable as peapod gets to a bare kube-apiserver over
	// etcd. (A scheduler would add a FailedScheduling event and a status
	// write to every benchmark pod, none of which has a node to go to.)
	s.cmd = exec.Command(bin, "server", "--disable-agent", "--disable-scheduler",
		"--data-dir", dataDir,
		"--https-listen-port", strconv.Itoa(port),
		"--bind-address", "127.0.0.1")
	s.cmd.Stdout = s.logFile
	s.cmd.Stderr = s.logFile
	// Should the benchmark die without stopping it, the server goes too.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	fmt.Fprintf(progress, "bench: starting %s server on 127.0.0.1:%d, data dir %s\n", bin, port, dataDir)
	if err := s.cmd.Start(); err != nil {
		_ = s.logFile.Close()
		return nil, fmt.Errorf("start %s server: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.done)
	}()
	defer func() {
		if err != nil {
			s.stop(false, io.Discard)
		}
	}()

	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var client *kubernetes.Clientset
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.done:
			return nil, fmt.Errorf("server exited before it was ready (%v); its log ends:\n%s", s.waitErr, s.logTail(20))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("server not ready after %s; its log ends:\n%s", timeout, s.logTail(20))
		}
		if client == nil {
			// The kubeconfig appears once the server has its certificates.
			cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
			if err != nil {
				continue
			}
			if client, err = newClientset(cfg, contentJSON); err != nil {
				return nil, err
			}
		}
		if readyz(ctx, client) == nil {
			return s, nil
		}
	}
}

func (s *ownServer) pid() int { return s.cmd.Process.Pid }

// stop sends the server SIGTERM, waits for it (SIGKILL after 30s) and removes
// its temporary directory unless keep.
func (s *ownServer) stop(keep bool, progress io.Writer) {
	select {
	case <-s.done:
	default:
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(30 * time.Second):
			fmt.Fprintf(progress, "bench: server (pid %d) still running 30s after SIGTERM; killing it\n", s.pid())
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = s.logFile.Close()
	if keep {
		fmt.Fprintf(progress, "bench: kept the server's directory %s\n", s.dir)
		return
	}
	if err := os.RemoveAll(s.dir); err != nil {
		fmt.Fprintf(progress, "bench: removing %s: %v\n", s.dir, err)
	}
}

// logTail is the end of the server's log: its last lines above INFO level
// when it has any (the error, not the noise before it), else its last lines.
func (s *ownServer) logTail(lines int) string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), lines)
}

func tail(log string, lines int) string {
	all := strings.Split(strings.TrimRight(log, "\n"), "\n")
	var important []string
	for _, l := range all {
		if !strings.Contains(l, "level=INFO") && !strings.Contains(l, "level=DEBUG") {
			important = append(important, l)
		}
	}
	if len(important) > 0 {
		all = important
	}
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// loadAverage is the 1, 5 and 15 minute load averages, or "" where unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
