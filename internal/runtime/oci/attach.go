package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// conmon's attach protocol (conmon 2.1.6: src/conn_sock.c, src/ctr_stdio.c).
// Every packet conmon sends is one read of the container's output prefixed
// by the pipe it came from; input is sent raw.
const (
	attachStdout = 2 // STDOUT_PIPE (a terminal's output too)
	attachStderr = 3 // STDERR_PIPE
	// attachReadSize holds any packet: conmon sends a stream byte and at
	// most STDIO_BUF_SIZE (8192) bytes; a SEQPACKET read into a smaller
	// buffer would drop the rest.
	attachReadSize = 32 << 10
	// attachWriteSize bounds one input packet well below what conmon reads
	// at once (CONN_SOCK_BUF_SIZE, 32768), beyond which it would be cut.
	attachWriteSize = 8 << 10
)

// Messages to conmon's control FIFO, DIR/ctl (src/config.h, src/ctrl.c):
// "TYPE HEIGHT WIDTH\n".
const (
	ctlResize    = 1 // WIN_RESIZE_EVENT: resize the container's terminal
	ctlReopenLog = 2 // REOPEN_LOGS_EVENT: reopen the k8s-file log
)

const (
	// ctlDrainWait bounds the wait for conmon to read a control message.
	ctlDrainWait = 5 * time.Second
	// reopenWait bounds the wait for conmon to replace the log file.
	reopenWait = 10 * time.Second
)

// Attach implements runtime.Attacher through conmon's attach socket, a
// SOCK_SEQPACKET socket in the bundle (see the package doc). The session
// ends when conmon closes the socket (the process exited), when ctx ends
// (ctx.Err() is returned) or when opts.Stdin ends: a StdinOnce container
// without a terminal then gets EOF on its stdin and the session goes on
// until the process exits; otherwise the session ends there, as with
// containerd's and docker's attach. A reader in opts.Stdin that blocks is
// left reading when Attach returns; its next read's data is dropped.
func (r *Runtime) Attach(ctx context.Context, id string, opts runtime.AttachOptions) error {
	rec, dir, err := r.runningContainer(id, "attach to")
	if err != nil {
		return err
	}
	conn, err := dialAttach(dir)
	if err != nil {
		return r.explain(rec, fmt.Errorf("oci: attaching to container %s: %w", id, err))
	}
	defer conn.Close()
	cfg := rec.Config

	outDone := make(chan error, 1)
	go func() { outDone <- copyAttachOutput(conn, opts.Stdout, opts.Stderr) }()
	// stop ends the session from this side and waits until nothing more
	// is written to the caller's writers.
	stop := func() {
		conn.Close()
		<-outDone
	}

	var stdinDone chan error
	if cfg.Stdin && opts.Stdin != nil {
		stdinDone = make(chan error, 1)
		go func() {
			err := copyAttachInput(conn, opts.Stdin)
			// conmon reads EOF: it closes the process's stdin unless
			// started with --leave-stdin-open.
			_ = conn.CloseWrite()
			stdinDone <- err
		}()
	}
	if cfg.TTY && opts.Resize != nil {
		done := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.forwardResizes(id, dir, opts.Resize, done)
		}()
		defer func() {
			close(done)
			wg.Wait()
		}()
	}

	select {
	case err := <-outDone:
		return err
	case err := <-stdinDone:
		if err != nil {
			stop()
			return fmt.Errorf("oci: attach to %s: reading stdin: %w", id, err)
		}
		if cfg.StdinOnce && !cfg.TTY {
			select {
			case err := <-outDone:
				return err
			case <-ctx.Done():
				stop()
				return ctx.Err()
			}
		}
		stop()
		return nil
	case <-ctx.Done():
		stop()
		return ctx.Err()
	}
}

// dialAttach connects to the attach socket in the container's bundle dir.
// conmon binds it through STATE/attach/ID, a symlink to dir that keeps the
// path within a socket address's 108 bytes; here any length works the way
// conmon binds it: through the directory's descriptor in /proc/self/fd.
func dialAttach(dir string) (*net.UnixConn, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dir, err)
	}
	defer unix.Close(fd)
	addr := &net.UnixAddr{Net: "unixpacket", Name: fmt.Sprintf("/proc/self/fd/%d/attach", fd)}
	conn, err := net.DialUnix("unixpacket", nil, addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", filepath.Join(dir, "attach"), err)
	}
	return conn, nil
}

// copyAttachOutput demultiplexes conmon's packets to stdout and stderr
// (nil ones discard) until conmon closes the socket (nil) or the
// connection is closed here (nil).
func copyAttachOutput(conn *net.UnixConn, stdout, stderr io.Writer) error {
	buf := make([]byte, attachReadSize)
	for {
		n, err := conn.Read(buf)
		if n > 1 {
			var w io.Writer
			switch buf[0] {
			case attachStdout:
				w = stdout
			case attachStderr:
				w = stderr
			}
			if w != nil {
				if _, werr := w.Write(buf[1:n]); werr != nil {
					return fmt.Errorf("oci: attach: writing output: %w", werr)
				}
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
			// conmon closed the session (the process exited) or the
			// session was ended here.
			return nil
		default:
			return fmt.Errorf("oci: attach: %w", err)
		}
	}
}

// copyAttachInput sends stdin to conmon in packets it reads whole. It
// returns nil at EOF and when the connection is gone (the session ended
// otherwise), else stdin's read error.
func copyAttachInput(conn *net.UnixConn, stdin io.Reader) error {
	buf := make([]byte, attachWriteSize)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if _, werr := conn.Write(buf[:n]); werr != nil {
				return nil
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// forwardResizes passes terminal sizes to conmon until sizes is closed or
// done is.
func (r *Runtime) forwardResizes(id, dir string, sizes <-chan runtime.TerminalSize, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case s, ok := <-sizes:
			if !ok {
				return
			}
			if err := r.conmonControl(id, dir, ctlResize, int(s.Height), int(s.Width)); err != nil {
				r.log.Warn("resizing a container's terminal", "id", id, "err", err)
			}
		}
	}
}

// ReopenContainerLog implements runtime.ContainerManager: conmon closes the
// log and creates LogPath anew (it writes LogPath.tmp and renames it over
// LogPath, so a file the caller left there is replaced). It returns once
// the new file is in place.
func (r *Runtime) ReopenContainerLog(ctx context.Context, id string) error {
	rec, dir, err := r.runningContainer(id, "reopen the log of")
	if err != nil {
		return err
	}
	before, _ := os.Stat(rec.LogPath)
	if err := r.conmonControl(id, dir, ctlReopenLog, 0, 0); err != nil {
		return r.explain(rec, err)
	}
	reopened := func() (bool, error) {
		fi, err := os.Stat(rec.LogPath)
		if err != nil {
			return false, nil
		}
		return before == nil || !os.SameFile(before, fi), nil
	}
	ok, err := poll(ctx, reopenWait, reopened)
	if err != nil {
		return err
	}
	if !ok {
		return r.explain(rec, fmt.Errorf("oci: conmon did not reopen %s within %s", rec.LogPath, reopenWait))
	}
	return nil
}

// conmonControl writes one message to conmon's control FIFO and waits
// until conmon has read it. conmon 2.1.6 acts only on the first message of
// what one read returns (read_from_ctrl_buffer passes the buffer's start for
// every line), so messages to one conmon go one at a time: serialised by a
// lock and each waited for (a resize also through the winsz FIFO, over which
// conmon passes it on to itself the same way).
func (r *Runtime) conmonControl(id, dir string, typ, height, width int) error {
	defer r.locks.lock("ctl/" + id)()
	open := func(name string) (int, error) {
		fd, err := unix.Open(filepath.Join(dir, name), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			// ENXIO: nobody reads it, conmon is gone.
			return -1, fmt.Errorf("oci: conmon's %s fifo of %s: %w", name, id, err)
		}
		return fd, nil
	}
	ctl, err := open("ctl")
	if err != nil {
		return err
	}
	defer unix.Close(ctl)
	fifos := []int{ctl}
	if typ == ctlResize {
		winsz, err := open("winsz")
		if err != nil {
			return err
		}
		defer unix.Close(winsz)
		fifos = append(fifos, winsz)
	}
	msg := fmt.Sprintf("%d %d %d\n", typ, height, width)
	if _, err := unix.Write(ctl, []byte(msg)); err != nil {
		return fmt.Errorf("oci: writing to conmon's control fifo of %s: %w", id, err)
	}
	drained := func() (bool, error) {
		for _, fd := range fifos {
			n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD: bytes not yet read
			if err != nil {
				return false, fmt.Errorf("oci: conmon's control fifo of %s: %w", id, err)
			}
			if n > 0 {
				return false, nil
			}
		}
		return true, nil
	}
	ok, err := poll(context.Background(), ctlDrainWait, drained)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("oci: conmon of %s did not read its control message within %s", id, ctlDrainWait)
	}
	return nil
}

// runningContainer loads a container that must be running.
func (r *Runtime) runningContainer(id, what string) (*containerRecord, string, error) {
	rec, dir, unlock, err := r.lockContainer(id)
	if err != nil {
		return nil, "", err
	}
	st, err := r.statusLocked(rec, dir)
	unlock()
	if err != nil {
		return nil, "", err
	}
	if st.State != runtime.ContainerRunning {
		return nil, "", fmt.Errorf("oci: cannot %s container %s: it is %s: %w", what, id, st.State, runtime.ErrFailedPrecondition)
	}
	return rec, dir, nil
}

// explain turns an error talking to conmon into ErrFailedPrecondition when
// the container stopped running meanwhile (conmon is then gone or going).
func (r *Runtime) explain(rec *containerRecord, err error) error {
	if !alive(rec.Pid, rec.PidStart) {
		return fmt.Errorf("oci: container %s is no longer running: %w (%w)", rec.ID, runtime.ErrFailedPrecondition, err)
	}
	if _, _, serr := r.runningContainer(rec.ID, "reach"); errors.Is(serr, runtime.ErrFailedPrecondition) || errors.Is(serr, runtime.ErrNotFound) {
		return fmt.Errorf("%w (%w)", serr, err)
	}
	return err
}
