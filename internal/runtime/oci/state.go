package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// containerRecord is a container's (or a sandbox's infra container's) state
// on disk, in DIR/container.json.
type containerRecord struct {
	ID        string                  `json:"id"`
	SandboxID string                  `json:"sandboxID"`
	Infra     bool                    `json:"infra,omitempty"`
	Config    runtime.ContainerConfig `json:"config"`
	CreatedAt time.Time               `json:"createdAt"`
	// StartedAt is written before the runtime's start is called and
	// Started after it returned; a record with StartedAt but not Started
	// (the agent died in between) asks the OCI runtime for the truth.
	StartedAt time.Time `json:"startedAt,omitzero"`
	Started   bool      `json:"started,omitempty"`
	// Pid and PidStart name the main process; ConmonPid and ConmonStart its
	// monitor.
	Pid         int    `json:"pid,omitempty"`
	PidStart    uint64 `json:"pidStart,omitempty"`
	ConmonPid   int    `json:"conmonPid,omitempty"`
	ConmonStart uint64 `json:"conmonStart,omitempty"`
	LogPath     string `json:"logPath"`
	CgroupPath  string `json:"cgroupPath"`
	// OwnPIDNS is false when the container shares the pod's or the host's
	// PID namespace (killing its init does not kill the rest of it).
	OwnPIDNS bool `json:"ownPIDNS,omitempty"`
	// Runtime is the OCI runtime (the sandbox's handler) the container was
	// made with; nil in records older than handlers: the default.
	Runtime *runtimeRecord `json:"runtime,omitempty"`
	// Overlay is the overlay mount point when the runtime mounted the root.
	Overlay string `json:"overlay,omitempty"`
	// Exit is filled the first time the exit is seen.
	Exit *exitRecord `json:"exit,omitempty"`
}

type exitRecord struct {
	Code       int32     `json:"code"`
	FinishedAt time.Time `json:"finishedAt"`
	Reason     string    `json:"reason"`
	Message    string    `json:"message,omitempty"`
}

// sandboxRecord is a sandbox's state on disk, in DIR/sandbox.json.
type sandboxRecord struct {
	ID        string                `json:"id"`
	Config    runtime.SandboxConfig `json:"config"`
	CreatedAt time.Time             `json:"createdAt"`
	// Shm is the tmpfs mount point of the pod's /dev/shm ("" with HostIPC).
	Shm     string `json:"shm,omitempty"`
	Stopped bool   `json:"stopped,omitempty"`
}

const (
	containerFile = "container.json"
	sandboxFile   = "sandbox.json"
)

// writeJSON replaces path atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("oci: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("oci: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("oci: %w", err)
	}
	return nil
}

// readJSON reads path into v; a missing file is os.ErrNotExist.
func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("oci: %s: %w", path, err)
	}
	return nil
}

// loadContainer reads the record in dir; a missing one is ErrNotFound.
func loadContainer(dir, id string) (*containerRecord, error) {
	var rec containerRecord
	if err := readJSON(filepath.Join(dir, containerFile), &rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, notFound("container", id)
		}
		return nil, err
	}
	return &rec, nil
}

func loadSandbox(dir, id string) (*sandboxRecord, error) {
	var rec sandboxRecord
	if err := readJSON(filepath.Join(dir, sandboxFile), &rec); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, notFound("sandbox", id)
		}
		return nil, err
	}
	return &rec, nil
}

// readExitFile reads conmon's exit file: the status and when it was written.
func readExitFile(path string) (code int32, at time.Time, ok bool, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, time.Time{}, false, nil
	}
	if err != nil {
		return 0, time.Time{}, false, fmt.Errorf("oci: %w", err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		// conmon writes the file in one go (g_file_set_contents renames a
		// temporary file), so an empty one is not expected; treat as unknown.
		return 0, time.Time{}, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 32)
	if err != nil {
		return 0, time.Time{}, false, fmt.Errorf("oci: exit file %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0, time.Time{}, false, fmt.Errorf("oci: %w", err)
	}
	return int32(n), fi.ModTime(), true, nil
}

// observe works out a container's state from its record, its exit file and
// the liveness of its processes. When it sees the exit for the first time
// it records it (with the OOM verdict, read while the cgroup still exists)
// and reports changed so that the caller persists the record.
func (r *Runtime) observe(rec *containerRecord, dir string) (state runtime.ContainerState, changed bool, err error) {
	if rec.Exit != nil {
		return runtime.ContainerExited, false, nil
	}
	code, at, exited, err := readExitFile(r.exitFile(rec.ID))
	if err != nil {
		return "", false, err
	}
	if exited {
		rec.Exit = &exitRecord{Code: code, FinishedAt: at, Reason: r.exitReason(rec, dir, code)}
		return runtime.ContainerExited, true, nil
	}
	if alive(rec.Pid, rec.PidStart) || alive(rec.ConmonPid, rec.ConmonStart) {
		// The process runs, or it is gone and conmon is about to write the
		// exit file.
		if rec.StartedAt.IsZero() {
			return runtime.ContainerCreated, false, nil
		}
		if !rec.Started {
			st, err := r.cliFor(rec).state(rec.ID)
			if err == nil && st == "created" {
				rec.StartedAt = time.Time{}
				return runtime.ContainerCreated, true, nil
			}
			rec.Started = true
			changed = true
		}
		return runtime.ContainerRunning, changed, nil
	}
	// Both are gone. conmon may have written the exit file and exited
	// between the first read and the liveness check: read it again before
	// calling the exit lost.
	if code, at, exited, err := readExitFile(r.exitFile(rec.ID)); err != nil {
		return "", false, err
	} else if exited {
		rec.Exit = &exitRecord{Code: code, FinishedAt: at, Reason: r.exitReason(rec, dir, code)}
		return runtime.ContainerExited, true, nil
	}
	// Both the process and its monitor are gone without an exit file.
	rec.Exit = &exitRecord{
		Code: 255, FinishedAt: time.Now(), Reason: runtime.ReasonUnknown,
		Message: "the container's monitor (conmon) is gone without recording the exit code",
	}
	return runtime.ContainerExited, true, nil
}

// exitReason is OOMKilled when the container's memory cgroup saw an OOM
// kill or conmon left its oom file, else Completed or Error.
func (r *Runtime) exitReason(rec *containerRecord, dir string, code int32) string {
	if _, err := os.Stat(filepath.Join(dir, "oom")); err == nil {
		return runtime.ReasonOOMKilled
	}
	if rec.CgroupPath != "" {
		if o, err := r.cg.ReadOOM(rec.CgroupPath); err == nil && o.OOMKilled(int(code)) {
			return runtime.ReasonOOMKilled
		}
	}
	if code == 0 {
		return runtime.ReasonCompleted
	}
	return runtime.ReasonError
}

// containerStatus turns a record into what the interface reports.
func containerStatus(rec *containerRecord, state runtime.ContainerState) *runtime.ContainerStatus {
	s := &runtime.ContainerStatus{
		ID: rec.ID, SandboxID: rec.SandboxID, Name: rec.Config.Name, Attempt: rec.Config.Attempt,
		State: state, Labels: rec.Config.Labels, Annotations: rec.Config.Annotations,
		CreatedAt: rec.CreatedAt, LogPath: rec.LogPath, CgroupPath: rec.CgroupPath,
	}
	if state != runtime.ContainerCreated {
		s.StartedAt = rec.StartedAt
	}
	if state == runtime.ContainerRunning {
		s.Pid = rec.Pid
	}
	if rec.Exit != nil {
		s.FinishedAt, s.ExitCode, s.Reason, s.Message = rec.Exit.FinishedAt, rec.Exit.Code, rec.Exit.Reason, rec.Exit.Message
	}
	return s
}
