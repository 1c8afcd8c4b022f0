package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// execIODelay bounds how long Exec keeps copying output after the command
// exited (a background child may hold the streams open).
const execIODelay = 2 * time.Second

// Exec implements runtime.Execer with `RUNTIME exec` in the foreground: the
// runtime waits for the command and exits with its status. With a TTY the
// runtime's own stdio is a pseudo-terminal made here, so that it proxies the
// container's terminal to it; opts.Resize sizes both (see execResizer).
func (r *Runtime) Exec(ctx context.Context, id string, opts runtime.ExecOptions) (int, error) {
	if len(opts.Cmd) == 0 {
		return -1, fmt.Errorf("oci: exec needs a command: %w", runtime.ErrInvalid)
	}
	rec, dir, err := r.runningContainer(id, "exec in")
	if err != nil {
		return -1, err
	}
	var spec specs.Spec
	if err := readJSON(filepath.Join(dir, "config.json"), &spec); err != nil {
		return -1, err
	}
	proc := *spec.Process
	proc.Args = opts.Cmd
	proc.Env = append(append([]string{}, proc.Env...), opts.Env...)
	proc.Terminal = opts.TTY
	var firstSize *runtime.TerminalSize
	if opts.TTY {
		if !slices.ContainsFunc(proc.Env, func(e string) bool { return strings.HasPrefix(e, "TERM=") }) {
			proc.Env = append(proc.Env, "TERM=xterm")
		}
		// A size already given is the terminal's from the start.
		select {
		case s, ok := <-opts.Resize:
			if ok {
				firstSize = &s
				proc.ConsoleSize = &specs.Box{Height: uint(s.Height), Width: uint(s.Width)}
			}
		default:
		}
	}
	nonce := newID()[:12]
	procFile := filepath.Join(dir, "exec-"+nonce+".json")
	pidFile := filepath.Join(dir, "exec-"+nonce+".pid")
	defer os.Remove(procFile)
	defer os.Remove(pidFile)
	if err := writeJSON(procFile, &proc); err != nil {
		return -1, err
	}
	args := []string{"exec", "--process", procFile, "--pid-file", pidFile}
	if opts.TTY {
		args = append(args, "--tty")
	}
	cmd := r.cliFor(rec).command(context.Background(), append(args, id)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.WaitDelay = execIODelay
	var wg sync.WaitGroup
	if opts.TTY {
		ptmx, pts, err := openPTY()
		if err != nil {
			return -1, err
		}
		defer ptmx.Close()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = pts, pts, pts
		// The terminal is the runtime's controlling terminal, so that a
		// resize of it reaches the runtime as SIGWINCH.
		cmd.SysProcAttr.Setctty = true
		cmd.SysProcAttr.Ctty = 0
		rs := &execResizer{ptmx: ptmx, pidFile: pidFile}
		if firstSize != nil {
			rs.setOwn(*firstSize)
		}
		if opts.Resize != nil {
			done := make(chan struct{})
			var rwg sync.WaitGroup
			rwg.Add(1)
			go func() {
				defer rwg.Done()
				rs.forward(opts.Resize, done)
			}()
			defer func() {
				close(done)
				rwg.Wait()
			}()
		}
		if err := cmd.Start(); err != nil {
			pts.Close()
			return -1, fmt.Errorf("oci: exec: %w", err)
		}
		pts.Close()
		if opts.Stdin != nil {
			go func() {
				_, _ = io.Copy(ptmx, opts.Stdin)
				_, _ = ptmx.Write([]byte{4}) // EOF for the terminal's reader
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := opts.Stdout
			if out == nil {
				out = io.Discard
			}
			_, _ = io.Copy(out, ptmx) // ends with EIO once every slave is closed
		}()
	} else {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = opts.Stdin, opts.Stdout, opts.Stderr
		if err := cmd.Start(); err != nil {
			return -1, fmt.Errorf("oci: exec: %w", err)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		// Kill the command itself; the runtime then exits with 137.
		if pid, err := readPidFile(pidFile); err == nil {
			if start, ok := pidStart(pid); ok {
				_ = signalProcess(pid, start, syscall.SIGKILL)
			}
		}
		time.AfterFunc(execIODelay, func() { _ = cmd.Process.Kill() })
	})
	defer stop()
	err = cmd.Wait()
	if opts.TTY {
		waitTimeout(&wg, execIODelay)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), ctx.Err()
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal()), ctx.Err()
		}
	case errors.Is(err, exec.ErrWaitDelay):
		return cmd.ProcessState.ExitCode(), nil
	}
	return -1, fmt.Errorf("oci: exec: %w", err)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// execResizer resizes an exec's terminal. The size is set on the terminal
// made here, which runc copies to the container's on SIGWINCH; crun 1.8
// copies it only once, when the command starts, so the size is also set on
// the container's terminal itself: the standard stream of the command
// (known from the runtime's pid file) that is a terminal.
type execResizer struct {
	ptmx    *os.File
	pidFile string
	pid     int
	start   uint64
}

// execPidWait bounds the wait for the runtime's pid file of an exec.
const execPidWait = 5 * time.Second

func (e *execResizer) forward(sizes <-chan runtime.TerminalSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case s, ok := <-sizes:
			if !ok {
				return
			}
			e.setOwn(s)
			e.setContainer(s, done)
		}
	}
}

// setOwn sizes the terminal made here.
func (e *execResizer) setOwn(s runtime.TerminalSize) {
	// Not ptmx.Fd(): it would make the descriptor blocking.
	if rc, err := e.ptmx.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: s.Height, Col: s.Width})
		})
	}
}

// setContainer sizes the command's own terminal, waiting for its PID first.
func (e *execResizer) setContainer(s runtime.TerminalSize, done <-chan struct{}) {
	if e.pid == 0 {
		// Stop waiting when the exec ends.
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-done:
				cancel()
			case <-ctx.Done():
			}
		}()
		_, _ = poll(ctx, execPidWait, func() (bool, error) {
			pid, err := readPidFile(e.pidFile)
			if err != nil || pid <= 0 {
				return false, nil
			}
			start, ok := pidStart(pid)
			if ok {
				e.pid, e.start = pid, start
			}
			return true, nil
		})
		cancel()
	}
	if e.pid <= 0 {
		return
	}
	ws := &unix.Winsize{Row: s.Height, Col: s.Width}
	for n := range 3 {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/fd/%d", e.pid, n), unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		_, terr := unix.IoctlGetTermios(fd, unix.TCGETS)
		// Still alive after the open: the descriptor was the command's.
		if terr == nil && alive(e.pid, e.start) {
			_ = unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, ws)
			unix.Close(fd)
			return
		}
		unix.Close(fd)
	}
}

// openPTY opens a pseudo-terminal pair; the master is non-blocking so that
// closing it ends a pending read.
func openPTY() (ptmx, pts *os.File, err error) {
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: opening /dev/ptmx: %w", err)
	}
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("oci: unlocking pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		unix.Close(fd)
		return nil, nil, fmt.Errorf("oci: pty number: %w", err)
	}
	ptmx = os.NewFile(uintptr(fd), "/dev/ptmx")
	pts, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		ptmx.Close()
		return nil, nil, fmt.Errorf("oci: %w", err)
	}
	return ptmx, pts, nil
}
