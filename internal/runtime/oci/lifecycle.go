package oci

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/peapod-dev/peapod/internal/runtime"
)

const (
	// killWait bounds the wait for a container to exit after SIGKILL.
	killWait = 30 * time.Second
	// conmonWait bounds the wait for conmon to exit once its container is
	// gone, before it is killed.
	conmonWait = 10 * time.Second
	// cleanupTimeout bounds the cleanup after a failed creation, which runs
	// even when the request's context is done.
	cleanupTimeout = time.Minute
)

// poll calls cond with growing pauses (1 ms up to 20 ms) until it returns
// true, timeout passes (false) or ctx ends (its error).
func poll(ctx context.Context, timeout time.Duration, cond func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for {
		ok, err := cond()
		if err != nil || ok {
			return ok, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false, nil
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		case <-t.C:
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// signalProcess sends sig to pid if it is still the process that started at
// start, through a pidfd so that a recycled PID is never signalled.
func signalProcess(pid int, start uint64, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("oci: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(fd)
	if !alive(pid, start) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, sig, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("oci: signalling %d: %w", pid, err)
	}
	return nil
}

// exitedOrLost reports whether the container's exit is known: conmon wrote
// the exit file, or both the process and conmon are gone.
func (r *Runtime) exitedOrLost(rec *containerRecord) (bool, error) {
	if rec.Exit != nil {
		return true, nil
	}
	if _, err := os.Stat(r.exitFile(rec.ID)); err == nil {
		return true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, fmt.Errorf("oci: %w", err)
	}
	return !alive(rec.Pid, rec.PidStart) && !alive(rec.ConmonPid, rec.ConmonStart), nil
}

// stopLocked stops a container (see runtime.ContainerManager.StopContainer)
// and records its exit. The caller holds the container's lock.
func (r *Runtime) stopLocked(ctx context.Context, rec *containerRecord, dir string, timeout time.Duration, sig syscall.Signal) error {
	state, changed, err := r.observe(rec, dir)
	if err != nil {
		return err
	}
	if state == runtime.ContainerExited {
		if changed {
			return writeJSON(filepath.Join(dir, containerFile), rec)
		}
		return nil
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	exitKnown := func() (bool, error) { return r.exitedOrLost(rec) }
	done := false
	if state == runtime.ContainerRunning && sig != syscall.SIGKILL && timeout > 0 {
		if err := signalProcess(rec.Pid, rec.PidStart, sig); err != nil {
			return err
		}
		if done, err = poll(ctx, timeout, exitKnown); err != nil {
			return err
		}
	}
	if !done {
		if rec.OwnPIDNS || state == runtime.ContainerCreated {
			// The kernel kills the rest of a PID namespace with its init.
			err = signalProcess(rec.Pid, rec.PidStart, syscall.SIGKILL)
		} else {
			err = r.cliFor(rec).kill(ctx, rec.ID, syscall.SIGKILL, true)
			if err != nil && !alive(rec.Pid, rec.PidStart) {
				err = nil // it went away by itself meanwhile
			}
		}
		if err != nil {
			return err
		}
		if done, err = poll(ctx, killWait, exitKnown); err != nil {
			return err
		}
		if !done {
			return fmt.Errorf("oci: container %s did not exit %s after SIGKILL", rec.ID, killWait)
		}
	}
	if !rec.OwnPIDNS {
		// Its init is gone, but in a shared PID namespace its other
		// processes are not: kill what is left in its cgroup (as
		// containerd's shim does).
		_ = r.cliFor(rec).kill(ctx, rec.ID, syscall.SIGKILL, true)
	}
	if _, changed, err = r.observe(rec, dir); err != nil {
		return err
	}
	if changed {
		return writeJSON(filepath.Join(dir, containerFile), rec)
	}
	return nil
}

// destroy removes every trace of a container: the OCI runtime's state and
// any process left, conmon, the cgroup, the overlay mount, the exit file and
// dir itself (only once nothing is mounted below it).
func (r *Runtime) destroy(ctx context.Context, rec *containerRecord, dir string) error {
	var errs []error
	if err := r.cliFor(rec).delete(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	conmonGone := func() (bool, error) { return !alive(rec.ConmonPid, rec.ConmonStart), nil }
	if gone, _ := poll(ctx, conmonWait, conmonGone); !gone {
		// A conmon still monitoring (a creation cut short): kill it, and the
		// container it may have made meanwhile.
		r.log.Warn("killing a conmon that outlived its container", "id", rec.ID, "pid", rec.ConmonPid)
		_ = signalProcess(rec.ConmonPid, rec.ConmonStart, syscall.SIGKILL)
		if gone, _ := poll(ctx, conmonWait, conmonGone); !gone {
			errs = append(errs, fmt.Errorf("oci: conmon %d of %s does not exit", rec.ConmonPid, rec.ID))
		}
		if err := r.cliFor(rec).delete(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if alive(rec.Pid, rec.PidStart) {
		errs = append(errs, fmt.Errorf("oci: process %d of container %s still runs after delete", rec.Pid, rec.ID))
	}
	if rec.CgroupPath != "" {
		if err := r.cg.Remove(rec.CgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	if rec.Overlay != "" {
		if err := unmount(rec.Overlay); err != nil {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Join(r.attachDir, rec.ID))
	if err := os.Remove(r.exitFile(rec.ID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if m, err := mountsUnder(dir); err != nil || len(m) > 0 {
		return errors.Join(err, fmt.Errorf("oci: not removing %s: still mounted there: %v", dir, m))
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}

// mountsUnder lists this mount namespace's mount points at or below dir.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := strings.ReplaceAll(fields[4], `\040`, " ")
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// cleanupContext is for cleanups that must run even when ctx is done.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}
