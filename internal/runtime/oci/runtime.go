package oci

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// Config configures a Runtime.
type Config struct {
	// StateDir holds everything the runtime keeps (see the package doc).
	StateDir string
	// Runtime is the OCI runtime: "runc", "crun" or a path to either
	// (default "runc"). It is the default runtime handler, "".
	Runtime string
	// Handlers are the other runtime handlers (RuntimeClass handlers) by
	// name, each an OCI runtime like Runtime: "runc", "crun" or a path to
	// either, e.g. {"runc": "runc", "crun": "crun"}. Names are DNS labels;
	// each handler keeps its state in its own --root, STATE/runtime/NAME.
	Handlers map[string]string
	// Conmon and Catatonit are the monitor and the pause binary (default:
	// looked up in PATH).
	Conmon    string
	Catatonit string
	// RuntimeRoot is the default handler's --root (default STATE/runtime).
	RuntimeRoot string
	// HideCgroup2 creates containers with the OCI runtime in a mount
	// namespace of its own without the cgroup2 mount of a hybrid host, for
	// every handler. Default: on for crun on a hybrid host, which crun 1.8
	// refuses otherwise.
	HideCgroup2 *bool
	// Cgroups is the host's cgroup view (default cgroups.LoadHost()).
	Cgroups *cgroups.Host
	Logger  *slog.Logger
}

// Runtime runs sandboxes and containers; it implements runtime.Runtime.
type Runtime struct {
	log       *slog.Logger
	state     string
	exitsDir  string
	attachDir string
	// cli is the default handler's runtime; handlers has every handler,
	// the default under "".
	cli       *ociCLI
	handlers  map[string]*ociCLI
	conmon    string
	catatonit string
	cg        *cgroups.Host
	cgBase    string
	host      hostFacts
	locks     keyedLocks
}

var _ runtime.Runtime = (*Runtime)(nil)

// New prepares the state directory and checks the binaries.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("oci: state dir %q must be an absolute path: %w", cfg.StateDir, runtime.ErrInvalid)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runtime{
		log:       log,
		state:     cfg.StateDir,
		exitsDir:  filepath.Join(cfg.StateDir, "exits"),
		attachDir: filepath.Join(cfg.StateDir, "attach"),
	}
	for _, d := range []string{"sandboxes", "containers", "exits", "attach", "runtime"} {
		if err := os.MkdirAll(filepath.Join(cfg.StateDir, d), 0o711); err != nil {
			return nil, fmt.Errorf("oci: %w", err)
		}
	}
	var err error
	if r.conmon, err = lookPath(cfg.Conmon, "conmon"); err != nil {
		return nil, err
	}
	if r.catatonit, err = lookPath(cfg.Catatonit, "catatonit"); err != nil {
		return nil, err
	}
	r.cg = cfg.Cgroups
	if r.cg == nil {
		if r.cg, err = cgroups.LoadHost(); err != nil {
			return nil, err
		}
	}
	if r.cgBase, err = r.cg.Base(); err != nil {
		return nil, err
	}
	if r.host, err = loadHostFacts(r.cg.Layout.Mode); err != nil {
		return nil, err
	}
	root := cfg.RuntimeRoot
	if root == "" {
		root = filepath.Join(cfg.StateDir, "runtime")
	}
	if r.cli, err = r.newHandler(cfg, "", cfg.Runtime, root); err != nil {
		return nil, err
	}
	r.handlers = map[string]*ociCLI{"": r.cli}
	for name, rt := range cfg.Handlers {
		if err := validHandlerName(name); err != nil {
			return nil, err
		}
		if r.handlers[name], err = r.newHandler(cfg, name, rt, filepath.Join(cfg.StateDir, "runtime", name)); err != nil {
			return nil, err
		}
	}
	log.Debug("oci runtime ready", "runtime", r.cli.path, "flavor", r.cli.flavor, "create-via", r.cli.createPath,
		"handlers", r.Handlers(), "cgroups", r.cg.Layout.Mode.String(), "cgroup-base", r.cgBase)
	return r, nil
}

// Name is the default handler's OCI runtime flavor ("runc" or "crun").
func (r *Runtime) Name() string { return r.cli.flavor }

// CgroupBase is the cgroup under which sandboxes' cgroup parents must lie.
func (r *Runtime) CgroupBase() string { return r.cgBase }

func lookPath(given, def string) (string, error) {
	name := given
	if name == "" {
		name = def
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("oci: %s: %w", name, err)
	}
	return filepath.Abs(p)
}

// runtimeFlavor asks the binary who it is.
func runtimeFlavor(path string) (string, error) {
	out, err := exec.Command(path, "--version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("oci: %s --version: %w: %s", path, err, bytes.TrimSpace(out))
	}
	first, _, _ := strings.Cut(string(out), "\n")
	switch {
	case strings.HasPrefix(first, "runc"):
		return "runc", nil
	case strings.HasPrefix(first, "crun"):
		return "crun", nil
	}
	return "", fmt.Errorf("oci: %s is neither runc nor crun (%q)", path, first)
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validID guards paths built from caller-given IDs.
func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func (r *Runtime) sandboxDir(id string) string   { return filepath.Join(r.state, "sandboxes", id) }
func (r *Runtime) containerDir(id string) string { return filepath.Join(r.state, "containers", id) }
func (r *Runtime) exitFile(id string) string     { return filepath.Join(r.exitsDir, id) }

// keyedLocks is a mutex per ID, dropped when nobody holds or waits for it.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu sync.Mutex
	n  int
}

func (k *keyedLocks) lock(id string) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[id]
	if l == nil {
		l = &keyedLock{}
		k.m[id] = l
	}
	l.n++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.n--; l.n == 0 {
			delete(k.m, id)
		}
		k.mu.Unlock()
	}
}

// notFound wraps runtime.ErrNotFound for id.
func notFound(kind, id string) error {
	return fmt.Errorf("oci: %s %q: %w", kind, id, runtime.ErrNotFound)
}
