package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// defaultShmSize is the pod's /dev/shm size when not configured (Docker's
// and containerd's 64 MiB).
const defaultShmSize = 64 << 20

// RunPodSandbox implements runtime.SandboxManager.
func (r *Runtime) RunPodSandbox(ctx context.Context, cfg runtime.SandboxConfig) (string, error) {
	if cfg.Name == "" {
		return "", fmt.Errorf("oci: a sandbox needs a name: %w", runtime.ErrInvalid)
	}
	if cfg.CgroupParent != "" {
		if err := r.cg.CheckUnder(cfg.CgroupParent); err != nil {
			return "", fmt.Errorf("oci: cgroup parent: %w: %w", err, runtime.ErrInvalid)
		}
	}
	if cfg.NetNSPath != "" && !cfg.HostNetwork {
		if _, err := os.Stat(cfg.NetNSPath); err != nil {
			return "", fmt.Errorf("oci: network namespace %q: %w: %w", cfg.NetNSPath, err, runtime.ErrInvalid)
		}
	}
	cli, err := r.handler(cfg.RuntimeHandler)
	if err != nil {
		return "", err
	}
	if cfg.ShmSize == 0 {
		cfg.ShmSize = defaultShmSize
	}
	id := newID()
	defer r.locks.lock("s/" + id)()
	dir := r.sandboxDir(id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	sb := &sandboxRecord{ID: id, Config: cfg, CreatedAt: time.Now()}
	infra := &containerRecord{
		ID: id, SandboxID: id, Infra: true, CreatedAt: sb.CreatedAt,
		Config:     runtime.ContainerConfig{Name: "infra", Labels: cfg.Labels, Annotations: cfg.Annotations},
		LogPath:    filepath.Join(dir, "infra.log"),
		CgroupPath: cgroupParent(sb, r.cgBase) + "/" + id,
		OwnPIDNS:   !cfg.HostPID,
		Runtime:    cli.record(),
	}
	ready := false
	defer func() {
		if !ready {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			if err := r.destroySandbox(cctx, sb, infra, dir); err != nil {
				r.log.Error("cleaning up after a failed sandbox creation", "id", id, "err", err)
			}
		}
	}()
	if !cfg.HostIPC {
		sb.Shm = filepath.Join(dir, "shm")
	}
	if err := writeJSON(filepath.Join(dir, sandboxFile), sb); err != nil {
		return "", err
	}
	if err := writeJSON(filepath.Join(dir, containerFile), infra); err != nil {
		return "", err
	}
	if sb.Shm != "" {
		if err := mountShm(sb.Shm, cfg.ShmSize); err != nil {
			return "", err
		}
	}
	rootPath := filepath.Join(dir, "rootfs")
	if err := prepareInfraRoot(rootPath); err != nil {
		return "", err
	}
	spec, err := r.infraSpec(sb, infra, rootPath)
	if err != nil {
		return "", err
	}
	if err := writeJSON(filepath.Join(dir, "config.json"), spec); err != nil {
		return "", err
	}
	if err := r.launch(ctx, infra, dir); err != nil {
		return "", err
	}
	infra.StartedAt = time.Now()
	if err := writeJSON(filepath.Join(dir, containerFile), infra); err != nil {
		return "", err
	}
	if err := r.cliFor(infra).startContainer(ctx, id); err != nil {
		return "", err
	}
	infra.Started = true
	if err := writeJSON(filepath.Join(dir, containerFile), infra); err != nil {
		return "", err
	}
	ready = true
	r.log.Debug("sandbox ready", "id", id, "name", cfg.Name, "namespace", cfg.Namespace, "pid", infra.Pid)
	return id, nil
}

// prepareInfraRoot makes the infra's otherwise empty root: mount points and
// the file catatonit is bind-mounted on.
func prepareInfraRoot(root string) error {
	for _, d := range []string{"proc", "dev", "sys", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("oci: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(root, "catatonit"), os.O_CREATE|os.O_RDONLY, 0o755)
	if err != nil {
		return fmt.Errorf("oci: %w", err)
	}
	return f.Close()
}

// infraSpec builds the pause container's spec: catatonit as PID 1 of new
// namespaces (per the sandbox's host* options), no capabilities, read-only.
func (r *Runtime) infraSpec(sb *sandboxRecord, infra *containerRecord, rootPath string) (*specs.Spec, error) {
	sc := sb.Config
	ns := []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	if !sc.HostNetwork {
		ns = append(ns, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: sc.NetNSPath},
			specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	if !sc.HostIPC {
		ns = append(ns, specs.LinuxNamespace{Type: specs.IPCNamespace})
	}
	if !sc.HostPID {
		ns = append(ns, specs.LinuxNamespace{Type: specs.PIDNamespace})
	}
	ns, shm, devices, err := r.podSpecParts(sb, ns, sc.Privileged)
	if err != nil {
		return nil, err
	}
	return buildSpec(specInput{
		Infra: true, RootPath: rootPath, ReadOnly: true,
		Args:     []string{"/catatonit", "-P"},
		Hostname: podHostname(sc), OwnUTS: !sc.HostNetwork,
		Mounts:     []runtime.Mount{{Source: r.catatonit, Destination: "/catatonit", ReadOnly: true}},
		Namespaces: ns, CgroupsPath: infra.CgroupPath,
		Security:  runtime.SecurityContext{Privileged: sc.Privileged},
		ShmSource: shm, Sysctls: sc.Sysctls, HostDevices: devices, Host: r.host,
		Annotations: map[string]string{
			"io.peapod.container-type": "sandbox", "io.peapod.sandbox-id": sb.ID,
			"io.peapod.sandbox-name": sc.Name, "io.peapod.sandbox-namespace": sc.Namespace,
		},
	})
}

// StopPodSandbox implements runtime.SandboxManager.
func (r *Runtime) StopPodSandbox(ctx context.Context, id string) error {
	if !validID(id) {
		return notFound("sandbox", id)
	}
	defer r.locks.lock("s/" + id)()
	dir := r.sandboxDir(id)
	sb, err := loadSandbox(dir, id)
	if err != nil {
		return err
	}
	return r.stopSandboxLocked(ctx, sb, dir)
}

func (r *Runtime) stopSandboxLocked(ctx context.Context, sb *sandboxRecord, dir string) error {
	recs, err := r.listRecords(sb.ID)
	if err != nil {
		return err
	}
	errs := forEach(recs, func(c *containerRecord) error {
		if err := r.StopContainer(ctx, c.ID, 0, syscall.SIGKILL); err != nil && !errors.Is(err, runtime.ErrNotFound) {
			return err
		}
		return nil
	})
	infra, err := loadContainer(dir, sb.ID)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := r.stopLocked(ctx, infra, dir, 0, syscall.SIGKILL); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if !sb.Stopped {
		sb.Stopped = true
		return writeJSON(filepath.Join(dir, sandboxFile), sb)
	}
	return nil
}

// RemovePodSandbox implements runtime.SandboxManager.
func (r *Runtime) RemovePodSandbox(ctx context.Context, id string) error {
	if !validID(id) {
		return nil
	}
	defer r.locks.lock("s/" + id)()
	dir := r.sandboxDir(id)
	sb, err := loadSandbox(dir, id)
	if errors.Is(err, runtime.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := r.stopSandboxLocked(ctx, sb, dir); err != nil {
		return err
	}
	recs, err := r.listRecords(id)
	if err != nil {
		return err
	}
	errs := forEach(recs, func(c *containerRecord) error { return r.RemoveContainer(ctx, c.ID) })
	if len(errs) > 0 {
		// Keep the sandbox so that the removal can be retried.
		return errors.Join(errs...)
	}
	infra, err := loadContainer(dir, id)
	if err != nil && !errors.Is(err, runtime.ErrNotFound) {
		return err
	}
	if err := r.destroySandbox(ctx, sb, infra, dir); err != nil {
		return err
	}
	r.log.Debug("sandbox removed", "id", id, "name", sb.Config.Name)
	return nil
}

// destroySandbox removes the infra container, the pod's shm mount and the
// sandbox directory. infra may be nil when its record was never written.
func (r *Runtime) destroySandbox(ctx context.Context, sb *sandboxRecord, infra *containerRecord, dir string) error {
	if infra == nil {
		infra = &containerRecord{ID: sb.ID}
	}
	if err := r.stopLocked(ctx, infra, dir, 0, syscall.SIGKILL); err != nil && infra.Pid != 0 {
		return err
	}
	if sb.Shm != "" {
		if err := unmount(sb.Shm); err != nil {
			return err
		}
	}
	return r.destroy(ctx, infra, dir)
}

// SandboxStatus implements runtime.SandboxManager.
func (r *Runtime) SandboxStatus(ctx context.Context, id string) (*runtime.SandboxStatus, error) {
	if !validID(id) {
		return nil, notFound("sandbox", id)
	}
	defer r.locks.lock("s/" + id)()
	dir := r.sandboxDir(id)
	sb, err := loadSandbox(dir, id)
	if err != nil {
		return nil, err
	}
	infra, err := loadContainer(dir, id)
	if err != nil {
		return nil, err
	}
	state, changed, err := r.observe(infra, dir)
	if err != nil {
		return nil, err
	}
	if changed {
		if err := writeJSON(filepath.Join(dir, containerFile), infra); err != nil {
			return nil, err
		}
	}
	sc := sb.Config
	st := &runtime.SandboxStatus{
		ID: id, Name: sc.Name, Namespace: sc.Namespace, UID: sc.UID, Attempt: sc.Attempt,
		State: runtime.SandboxNotReady, CreatedAt: sb.CreatedAt, Labels: sc.Labels, Annotations: sc.Annotations,
		CgroupParent: cgroupParent(sb, r.cgBase), RuntimeHandler: sc.RuntimeHandler,
	}
	if !sc.HostNetwork {
		st.Hostname = podHostname(sc)
	}
	if state == runtime.ContainerRunning && !sb.Stopped {
		st.State = runtime.SandboxReady
		st.Pid = infra.Pid
		if !sc.HostNetwork {
			st.NetNSPath = nsPath(infra.Pid, "net")
			if sc.NetNSPath != "" {
				st.NetNSPath = sc.NetNSPath
			}
		}
	}
	return st, nil
}

// ListPodSandboxes implements runtime.SandboxManager.
func (r *Runtime) ListPodSandboxes(ctx context.Context) ([]*runtime.SandboxStatus, error) {
	ents, err := os.ReadDir(filepath.Join(r.state, "sandboxes"))
	if err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	var out []*runtime.SandboxStatus
	for _, e := range ents {
		if !e.IsDir() || !validID(e.Name()) {
			continue
		}
		st, err := r.SandboxStatus(ctx, e.Name())
		if errors.Is(err, runtime.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b *runtime.SandboxStatus) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out, nil
}

// forEach runs fn for every record concurrently (a pod's containers are
// stopped and removed together, as the kubelet does) and returns the errors.
func forEach(recs []*containerRecord, fn func(*containerRecord) error) []error {
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, c := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = fn(c)
		}()
	}
	wg.Wait()
	return slices.DeleteFunc(errs, func(err error) bool { return err == nil })
}
