package containerlogs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/peapod-dev/peapod/internal/runtime"
)

// Upstream's kubelet defaults (KubeletConfiguration containerLogMaxSize,
// containerLogMaxFiles, containerLogMonitorInterval).
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 5
	DefaultPeriod   = 10 * time.Second
)

// Runtime is what the manager needs of the container runtime
// (runtime.Runtime has it).
type Runtime interface {
	// ListContainers reports the containers that match filter, with their
	// LogPath.
	ListContainers(ctx context.Context, filter runtime.ContainerFilter) ([]*runtime.ContainerStatus, error)
	// ReopenContainerLog makes the container's monitor close its log and
	// create LogPath anew, and returns once it has. A container that is not
	// running is runtime.ErrFailedPrecondition, an unknown one
	// runtime.ErrNotFound.
	ReopenContainerLog(ctx context.Context, id string) error
}

// Config configures a Manager.
type Config struct {
	Runtime Runtime
	// MaxSize is the size in bytes at which a log is rotated
	// (DefaultMaxSize when 0; negative turns rotation off).
	MaxSize int64
	// MaxFiles is how many files a container's log may have, the current
	// one included (DefaultMaxFiles when 0; at least 2).
	MaxFiles int
	// Clock names rotated files and paces Run (default: the real clock).
	Clock  clock.Clock
	Logger *slog.Logger
}

// Manager rotates container logs.
type Manager struct {
	rt       Runtime
	maxSize  int64
	maxFiles int
	clock    clock.Clock
	log      *slog.Logger
	mu       sync.Mutex // one pass at a time
}

// New checks cfg and fills in the defaults.
func New(cfg Config) (*Manager, error) {
	if cfg.Runtime == nil {
		return nil, errors.New("containerlogs: no runtime")
	}
	m := &Manager{rt: cfg.Runtime, maxSize: cfg.MaxSize, maxFiles: cfg.MaxFiles, clock: cfg.Clock, log: cfg.Logger}
	if m.maxSize == 0 {
		m.maxSize = DefaultMaxSize
	}
	if m.maxFiles == 0 {
		m.maxFiles = DefaultMaxFiles
	}
	if m.maxFiles < 2 {
		return nil, fmt.Errorf("containerlogs: MaxFiles %d: must be at least 2 (the current file and one rotated)", cfg.MaxFiles)
	}
	if m.clock == nil {
		m.clock = clock.RealClock{}
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	return m, nil
}

// Rotate makes one pass over the running containers (see the package doc).
// It goes on past a container whose rotation fails and returns those
// failures joined; a container that stopped or went away meanwhile is not
// a failure.
func (m *Manager) Rotate(ctx context.Context) error {
	if m.maxSize < 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	cs, err := m.rt.ListContainers(ctx, runtime.ContainerFilter{State: runtime.ContainerRunning})
	if err != nil {
		return fmt.Errorf("containerlogs: listing containers: %w", err)
	}
	var errs []error
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if c.State != runtime.ContainerRunning || c.LogPath == "" {
			continue
		}
		err := m.rotateContainer(ctx, c)
		switch {
		case err == nil:
		case errors.Is(err, runtime.ErrFailedPrecondition), errors.Is(err, runtime.ErrNotFound):
			m.log.Debug("container stopped during its log rotation", "id", c.ID, "name", c.Name, "err", err)
		default:
			errs = append(errs, fmt.Errorf("containerlogs: container %s (%s): %w", c.ID, c.Name, err))
		}
	}
	return errors.Join(errs...)
}

// Run makes a pass now and then one a period (DefaultPeriod when not
// positive) after each until ctx ends. Failures are logged.
func (m *Manager) Run(ctx context.Context, period time.Duration) {
	if period <= 0 {
		period = DefaultPeriod
	}
	for {
		if err := m.Rotate(ctx); err != nil && ctx.Err() == nil {
			m.log.Error("rotating container logs", "err", err)
		}
		t := m.clock.NewTimer(period)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
	}
}

// rotateContainer is one container's part of a pass.
func (m *Manager) rotateContainer(ctx context.Context, c *runtime.ContainerStatus) error {
	path := c.LogPath
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		if err := m.rt.ReopenContainerLog(ctx, c.ID); err != nil {
			return fmt.Errorf("recreating the missing log %s: %w", path, err)
		}
		m.log.Info("recreated a missing container log", "id", c.ID, "name", c.Name, "path", path)
		fi, err = os.Stat(path)
	}
	if err != nil {
		return err
	}
	if fi.Size() < m.maxSize {
		return nil
	}
	rotated := path + "." + m.clock.Now().Format(timestampFormat)
	for _, p := range []string{rotated, rotated + compressSuffix} {
		if _, err := os.Lstat(p); err == nil {
			m.log.Debug("log rotated within the same second; next pass", "path", path)
			return nil
		}
	}
	if err := m.tidyRotated(path); err != nil {
		return err
	}
	if err := os.Rename(path, rotated); err != nil {
		return err
	}
	if err := m.rt.ReopenContainerLog(ctx, c.ID); err != nil {
		if rerr := renameNoReplace(rotated, path); rerr != nil {
			m.log.Warn("keeping a rotated log whose container's log was not reopened", "path", rotated, "err", rerr)
		}
		return fmt.Errorf("reopening the log after renaming it to %s: %w", rotated, err)
	}
	m.log.Debug("container log rotated", "id", c.ID, "name", c.Name, "path", path, "to", rotated, "size", fi.Size())
	return nil
}
