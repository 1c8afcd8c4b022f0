package oci

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// syncMessage is what conmon (API version 1) writes to the sync pipe: the
// container's PID, or -1 and the runtime's error output.
type syncMessage struct {
	Data    int    `json:"data"`
	Message string `json:"message"`
}

// createTimeout bounds a container creation that was given no deadline.
const createTimeout = 2 * time.Minute

// launch writes the bundle's config.json (already in dir) into existence
// through conmon and `RUNTIME create`, and fills in the record's PIDs. On
// error the runtime's state of the container may exist; the caller cleans
// up with destroy.
func (r *Runtime) launch(ctx context.Context, rec *containerRecord, dir string) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, createTimeout)
		defer cancel()
	}
	cli := r.cliFor(rec)
	if cli.hide {
		// Written by New for the configured handlers; again here for a
		// handler that is no longer configured (or a removed file).
		if _, err := os.Stat(cli.createPath); err != nil {
			if _, err := writeCreateWrapper(filepath.Join(r.state, "bin"), cli.path, r.cg); err != nil {
				return err
			}
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	defer pr.Close()
	out, err := os.Create(filepath.Join(dir, "conmon.out"))
	if err != nil {
		pw.Close()
		return fmt.Errorf("oci: %w", err)
	}
	defer out.Close()
	name := rec.Config.Name
	if name == "" {
		name = rec.ID
	}
	args := []string{
		"--api-version", "1",
		"-c", rec.ID, "-u", rec.ID, "-n", name,
		"-r", cli.createPath,
		"--runtime-arg", "--root", "--runtime-arg", cli.root,
		"-b", dir,
		"-p", filepath.Join(dir, "container.pid"),
		"-P", filepath.Join(dir, "conmon.pid"),
		"-l", "k8s-file:" + rec.LogPath,
		"--exit-dir", r.exitsDir,
		"--socket-dir-path", r.attachDir,
	}
	args = append(args, stdioArgs(rec.Config)...)
	// Not CommandContext: conmon must outlive a cancelled request; the
	// first conmon process exits as soon as it has forked the monitor.
	cmd := exec.Command(r.conmon, args...)
	cmd.Dir = dir // conmon writes its "oom" file into its working directory
	// TZ=UTC: conmon stamps log lines in local time with a numeric offset;
	// UTC makes them "...+00:00", the same instant as the kubelet's "Z".
	cmd.Env = []string{"PATH=" + hostPath, "TZ=UTC", "_OCI_SYNCPIPE=3"}
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Stdout, cmd.Stderr = out, out
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("oci: starting conmon: %w", err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("oci: conmon: %w: %s", err, readSmall(out.Name()))
	}
	if pid, err := readPidFile(filepath.Join(dir, "conmon.pid")); err == nil {
		rec.ConmonPid = pid
		rec.ConmonStart, _ = pidStart(pid)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = pr.SetReadDeadline(dl)
	}
	msg, err := readSyncMessage(pr)
	if err != nil {
		return fmt.Errorf("oci: waiting for conmon to create the container: %w (conmon: %s)", err, readSmall(out.Name()))
	}
	if msg.Data <= 0 {
		return fmt.Errorf("oci: %s create failed: %s", cli.flavor, strings.TrimSpace(msg.Message))
	}
	rec.Pid = msg.Data
	start, ok := pidStart(rec.Pid)
	if !ok {
		// It was created and died at once (killed by someone): conmon will
		// record the exit; remember the PID so that it is never mistaken
		// for a live process.
		start = 0
	}
	rec.PidStart = start
	return nil
}

// stdioArgs are conmon's options for the container's standard streams:
// -i gives the process a pipe as stdin that conmon holds open and feeds
// from attach sessions; conmon closes it when an attach session ends unless
// --leave-stdin-open (so StdinOnce is -i without it). -t makes conmon pass
// a console socket to the OCI runtime and take the terminal's master: the
// process's output is then one stream, logged as stdout.
func stdioArgs(cfg runtime.ContainerConfig) []string {
	var args []string
	if cfg.Stdin {
		args = append(args, "--stdin")
		if !cfg.StdinOnce {
			args = append(args, "--leave-stdin-open")
		}
	}
	if cfg.TTY {
		args = append(args, "--terminal")
	}
	return args
}

func readSyncMessage(pr *os.File) (syncMessage, error) {
	var msg syncMessage
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return msg, fmt.Errorf("timed out: %w", context.DeadlineExceeded)
		}
		return msg, fmt.Errorf("no message from conmon: %w", err)
	}
	if err := json.Unmarshal(bytes.TrimSpace(line), &msg); err != nil {
		return msg, fmt.Errorf("bad message %q from conmon: %w", line, err)
	}
	return msg, nil
}

func readPidFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// readSmall returns the first KiB of a diagnostic file.
func readSmall(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > 1024 {
		b = b[:1024]
	}
	return string(bytes.TrimSpace(b))
}
