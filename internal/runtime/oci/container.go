package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// CreateContainer implements runtime.ContainerManager.
func (r *Runtime) CreateContainer(ctx context.Context, sandboxID string, cfg runtime.ContainerConfig) (string, error) {
	if !validID(sandboxID) {
		return "", notFound("sandbox", sandboxID)
	}
	if err := validateContainer(cfg); err != nil {
		return "", err
	}
	defer r.locks.lock("s/" + sandboxID)()
	sdir := r.sandboxDir(sandboxID)
	sb, err := loadSandbox(sdir, sandboxID)
	if err != nil {
		return "", err
	}
	infra, err := loadContainer(sdir, sandboxID)
	if err != nil {
		return "", err
	}
	if sb.Stopped || !alive(infra.Pid, infra.PidStart) {
		return "", fmt.Errorf("oci: sandbox %s is not ready: %w", sandboxID, runtime.ErrFailedPrecondition)
	}
	if cfg.Security.Privileged && !sb.Config.Privileged {
		return "", fmt.Errorf("oci: privileged container in an unprivileged sandbox: %w", runtime.ErrInvalid)
	}
	siblings, err := r.listRecords(sandboxID)
	if err != nil {
		return "", err
	}
	for _, s := range siblings {
		if s.Config.Name == cfg.Name && s.Config.Attempt == cfg.Attempt {
			return "", fmt.Errorf("oci: container %q attempt %d exists in sandbox %s as %s: %w",
				cfg.Name, cfg.Attempt, sandboxID, s.ID, runtime.ErrAlreadyExists)
		}
	}
	var target *containerRecord
	if cfg.TargetContainerID != "" {
		if target, err = r.runningTarget(sandboxID, cfg.TargetContainerID); err != nil {
			return "", err
		}
	}

	id := newID()
	// Status and list calls wait until the container is created (or gone).
	defer r.locks.lock("c/" + id)()
	dir := r.containerDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	rec := &containerRecord{
		ID: id, SandboxID: sandboxID, Config: cfg, CreatedAt: time.Now(), LogPath: cfg.LogPath,
		CgroupPath: cgroupParent(sb, r.cgBase) + "/" + id,
		OwnPIDNS:   !sb.Config.SharePID && !sb.Config.HostPID && target == nil,
		Runtime:    infra.Runtime,
	}
	if rec.LogPath == "" {
		rec.LogPath = filepath.Join(dir, "container.log")
	}
	created := false
	defer func() {
		if !created {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			if err := r.destroy(cctx, rec, dir); err != nil {
				r.log.Error("cleaning up after a failed container creation", "id", id, "err", err)
			}
		}
	}()
	if err := writeJSON(filepath.Join(dir, containerFile), rec); err != nil {
		return "", err
	}
	rootPath := cfg.Rootfs.Dir
	if len(cfg.Rootfs.LowerDirs) > 0 {
		rec.Overlay = filepath.Join(dir, "rootfs")
		if err := writeJSON(filepath.Join(dir, containerFile), rec); err != nil {
			return "", err
		}
		if err := mountOverlay(rec.Overlay, filepath.Join(dir, "upper"), filepath.Join(dir, "work"), cfg.Rootfs.LowerDirs); err != nil {
			return "", err
		}
		rootPath = rec.Overlay
	}
	if err := os.MkdirAll(filepath.Dir(rec.LogPath), 0o755); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	spec, err := r.containerSpec(sb, infra, target, rec, rootPath)
	if err != nil {
		return "", err
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), spec); err != nil {
		return "", err
	}
	if err := r.launch(ctx, rec, dir); err != nil {
		return "", err
	}
	if target != nil && !alive(target.Pid, target.PidStart) {
		// The target exited meanwhile: its PID, and so the namespace path,
		// may have named another process by the time the runtime used it.
		return "", fmt.Errorf("oci: target container %s exited while %q was created: %w",
			target.ID, cfg.Name, runtime.ErrFailedPrecondition)
	}
	if err := writeJSON(filepath.Join(dir, containerFile), rec); err != nil {
		return "", err
	}
	created = true
	r.log.Debug("container created", "id", id, "sandbox", sandboxID, "name", cfg.Name, "pid", rec.Pid)
	return id, nil
}

// runningTarget is the record of a running container whose PID namespace
// a new container of sandboxID joins (TargetContainerID).
func (r *Runtime) runningTarget(sandboxID, id string) (*containerRecord, error) {
	rec, dir, unlock, err := r.lockContainer(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil, fmt.Errorf("oci: target container %q does not exist: %w", id, runtime.ErrFailedPrecondition)
	}
	if err != nil {
		return nil, err
	}
	defer unlock()
	if rec.SandboxID != sandboxID {
		return nil, fmt.Errorf("oci: target container %s belongs to sandbox %s, not %s: %w", id, rec.SandboxID, sandboxID, runtime.ErrInvalid)
	}
	st, err := r.statusLocked(rec, dir)
	if err != nil {
		return nil, err
	}
	if st.State != runtime.ContainerRunning {
		return nil, fmt.Errorf("oci: target container %s is %s, not running: %w", id, st.State, runtime.ErrFailedPrecondition)
	}
	return rec, nil
}

func validateContainer(cfg runtime.ContainerConfig) error {
	switch {
	case cfg.Name == "":
		return fmt.Errorf("oci: a container needs a name: %w", runtime.ErrInvalid)
	case len(cfg.Args) == 0:
		return fmt.Errorf("oci: container %q needs a command: %w", cfg.Name, runtime.ErrInvalid)
	case (cfg.Rootfs.Dir == "") == (len(cfg.Rootfs.LowerDirs) == 0):
		return fmt.Errorf("oci: container %q needs either a root directory or lower dirs: %w", cfg.Name, runtime.ErrInvalid)
	case cfg.LogPath != "" && !filepath.IsAbs(cfg.LogPath):
		return fmt.Errorf("oci: log path %q is not absolute: %w", cfg.LogPath, runtime.ErrInvalid)
	}
	for _, d := range append([]string{cfg.Rootfs.Dir}, cfg.Rootfs.LowerDirs...) {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() || !filepath.IsAbs(d) {
			return fmt.Errorf("oci: root filesystem %q is not an absolute directory: %w", d, runtime.ErrInvalid)
		}
	}
	return nil
}

func cgroupParent(sb *sandboxRecord, base string) string {
	if sb.Config.CgroupParent != "" {
		return sb.Config.CgroupParent
	}
	return base
}

// containerSpec builds an app container's spec: it joins the infra's
// namespaces as the sandbox's options say, and target's PID namespace when
// target is not nil.
func (r *Runtime) containerSpec(sb *sandboxRecord, infra, target, rec *containerRecord, rootPath string) (*specs.Spec, error) {
	sc := sb.Config
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !sc.HostNetwork {
		ns = append(ns,
			specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath(infra.Pid, "net")},
			specs.LinuxNamespace{Type: specs.UTSNamespace, Path: nsPath(infra.Pid, "uts")})
	}
	if !sc.HostIPC {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace, Path: nsPath(infra.Pid, "ipc")})
	}
	switch {
	case target != nil:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: nsPath(target.Pid, "pid")})
	case sc.HostPID:
	case sc.SharePID:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: nsPath(infra.Pid, "pid")})
	default:
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	ns, shm, devices, err := r.podSpecParts(sb, ns, rec.Config.Security.Privileged)
	if err != nil {
		return nil, err
	}
	cfg := rec.Config
	return buildSpec(specInput{
		RootPath: rootPath, ReadOnly: cfg.Rootfs.ReadOnly,
		Args: cfg.Args, Env: cfg.Env, Cwd: cfg.WorkingDir, Terminal: cfg.TTY,
		Hostname: podHostname(sc), Mounts: cfg.Mounts, Namespaces: ns,
		CgroupsPath: rec.CgroupPath, Resources: cfg.Resources, Rlimits: cfg.Rlimits,
		Security: cfg.Security, ShmSource: shm, HostDevices: devices, Host: r.host,
		Annotations: map[string]string{
			"io.peapod.container-type": "container", "io.peapod.sandbox-id": sb.ID,
			"io.peapod.container-name": cfg.Name,
		},
	})
}

// podSpecParts completes what infra and app container specs derive alike from
// the sandbox: a cgroup namespace where the host has them, the /dev/shm to
// mount (the host's with hostIPC, else the pod's), and for privileged
// containers the host's devices.
func (r *Runtime) podSpecParts(sb *sandboxRecord, ns []specs.LinuxNamespace, privileged bool) ([]specs.LinuxNamespace, string, []specs.LinuxDevice, error) {
	if r.host.cgroupNS {
		ns = append(ns, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	shm := sb.Shm
	if sb.Config.HostIPC {
		shm = "/dev/shm"
	}
	if !privileged {
		return ns, shm, nil, nil
	}
	devices, err := hostDevices()
	if err != nil {
		return nil, "", nil, err
	}
	return ns, shm, devices, nil
}

// podHostname is the hostname containers of the pod see.
func podHostname(sc runtime.SandboxConfig) string {
	if sc.HostNetwork {
		h, _ := os.Hostname()
		return h
	}
	if sc.Hostname != "" {
		return sc.Hostname
	}
	return sc.Name
}

// StartContainer implements runtime.ContainerManager.
func (r *Runtime) StartContainer(ctx context.Context, id string) error {
	rec, dir, unlock, err := r.lockContainer(id)
	if err != nil {
		return err
	}
	defer unlock()
	state, _, err := r.observe(rec, dir)
	if err != nil {
		return err
	}
	if state != runtime.ContainerCreated {
		return fmt.Errorf("oci: container %s is %s, not created: %w", id, state, runtime.ErrFailedPrecondition)
	}
	rec.StartedAt = time.Now()
	if err := writeJSON(filepath.Join(dir, containerFile), rec); err != nil {
		return err
	}
	if err := r.cliFor(rec).startContainer(ctx, id); err != nil {
		rec.StartedAt = time.Time{}
		if werr := writeJSON(filepath.Join(dir, containerFile), rec); werr != nil {
			return errors.Join(err, werr)
		}
		return err
	}
	rec.Started = true
	return writeJSON(filepath.Join(dir, containerFile), rec)
}

// StopContainer implements runtime.ContainerManager.
func (r *Runtime) StopContainer(ctx context.Context, id string, timeout time.Duration, signal syscall.Signal) error {
	rec, dir, unlock, err := r.lockContainer(id)
	if err != nil {
		return err
	}
	defer unlock()
	return r.stopLocked(ctx, rec, dir, timeout, signal)
}

// RemoveContainer implements runtime.ContainerManager.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	rec, dir, unlock, err := r.lockContainer(id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	return r.removeLocked(ctx, rec, dir)
}

func (r *Runtime) removeLocked(ctx context.Context, rec *containerRecord, dir string) error {
	if err := r.stopLocked(ctx, rec, dir, 0, syscall.SIGKILL); err != nil {
		return err
	}
	if err := r.destroy(ctx, rec, dir); err != nil {
		return err
	}
	r.log.Debug("container removed", "id", rec.ID, "sandbox", rec.SandboxID)
	return nil
}

// ContainerStatus implements runtime.ContainerManager.
func (r *Runtime) ContainerStatus(ctx context.Context, id string) (*runtime.ContainerStatus, error) {
	rec, dir, unlock, err := r.lockContainer(id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return r.statusLocked(rec, dir)
}

func (r *Runtime) statusLocked(rec *containerRecord, dir string) (*runtime.ContainerStatus, error) {
	state, changed, err := r.observe(rec, dir)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := writeJSON(filepath.Join(dir, containerFile), rec); err != nil {
			return nil, err
		}
	}
	return containerStatus(rec, state), nil
}

// ListContainers implements runtime.ContainerManager.
func (r *Runtime) ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.ContainerStatus, error) {
	recs, err := r.listRecords(filter.SandboxID)
	if err != nil {
		return nil, err
	}
	var out []*runtime.ContainerStatus
	for _, rec := range recs {
		s, err := r.ContainerStatus(ctx, rec.ID)
		if errors.Is(err, runtime.ErrNotFound) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		if filter.Matches(s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// lockContainer locks an app container and loads its record.
func (r *Runtime) lockContainer(id string) (*containerRecord, string, func(), error) {
	if !validID(id) {
		return nil, "", nil, notFound("container", id)
	}
	unlock := r.locks.lock("c/" + id)
	dir := r.containerDir(id)
	rec, err := loadContainer(dir, id)
	if err != nil {
		unlock()
		return nil, "", nil, err
	}
	return rec, dir, unlock, nil
}

// listRecords reads the app containers' records (of one sandbox unless
// sandboxID is empty), oldest first, without locking: for listing only.
func (r *Runtime) listRecords(sandboxID string) ([]*containerRecord, error) {
	ents, err := os.ReadDir(filepath.Join(r.state, "containers"))
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	var recs []*containerRecord
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		rec, err := loadContainer(r.containerDir(e.Name()), e.Name())
		if errors.Is(err, runtime.ErrNotFound) {
			continue // being created or removed
		}
		if err != nil {
			return nil, err
		}
		if sandboxID == "" || rec.SandboxID == sandboxID {
			recs = append(recs, rec)
		}
	}
	slices.SortFunc(recs, func(a, b *containerRecord) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return recs, nil
}
