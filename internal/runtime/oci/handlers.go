package oci

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// runtimeRecord is the OCI runtime a container was made with, its sandbox's
// handler. It is kept in every container record (the infra's too), so that
// a runtime reopened with other handlers configured still drives existing
// containers with the binary and --root they were made with. Records
// written before handlers existed have none and belong to the default
// handler.
type runtimeRecord struct {
	Handler string `json:"handler,omitempty"`
	Path    string `json:"path"`
	Flavor  string `json:"flavor"`
	Root    string `json:"root"`
	// HideCgroup2: containers are created through the wrapper that hides
	// a hybrid host's cgroup2 mount (see writeCreateWrapper).
	HideCgroup2 bool `json:"hideCgroup2,omitempty"`
}

// newHandler resolves one handler's OCI runtime binary (def "runc"), asks
// it what it is, prepares its --root and, where it must hide the cgroup2
// mount, its create wrapper.
func (r *Runtime) newHandler(cfg Config, name, binary, root string) (*ociCLI, error) {
	path, err := lookPath(binary, "runc")
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", name, err)
	}
	flavor, err := runtimeFlavor(path)
	if err != nil {
		return nil, fmt.Errorf("runtime handler %q: %w", name, err)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("oci: %w", err)
	}
	hide := flavor == "crun" && r.cg.Layout.Mode == cgroups.ModeHybrid
	if cfg.HideCgroup2 != nil {
		hide = *cfg.HideCgroup2
	}
	c := &ociCLI{handler: name, path: path, createPath: path, root: root, flavor: flavor, hide: hide}
	if hide {
		if c.createPath, err = writeCreateWrapper(filepath.Join(r.state, "bin"), path, r.cg); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// validHandlerName accepts what Kubernetes accepts as a RuntimeClass
// handler (a DNS label), except a name that could be a container ID: the
// handlers' roots live next to the default handler's containers.
func validHandlerName(name string) error {
	ok := len(name) > 0 && len(name) <= 63
	for i, c := range name {
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(name)-1) {
			ok = false
		}
	}
	if !ok || (len(name) == 32 && validID(name)) {
		return fmt.Errorf("oci: runtime handler name %q is not a DNS label (or looks like a container ID): %w", name, runtime.ErrInvalid)
	}
	return nil
}

// Handlers lists the configured runtime handlers' names, "" (the default)
// first.
func (r *Runtime) Handlers() []string {
	names := make([]string, 0, len(r.handlers))
	for n := range r.handlers {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// handler is the configured handler name, or an error with upstream
// containerd's words.
func (r *Runtime) handler(name string) (*ociCLI, error) {
	if c, ok := r.handlers[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("oci: no runtime for %q is configured: %w", name, runtime.ErrInvalid)
}

// record is what a container's record keeps of its runtime.
func (c *ociCLI) record() *runtimeRecord {
	return &runtimeRecord{Handler: c.handler, Path: c.path, Flavor: c.flavor, Root: c.root, HideCgroup2: c.hide}
}

// cliFor is the OCI runtime of a container: the configured handler it was
// made with, or one rebuilt from its record when the configuration has
// changed since (the create wrapper is then written again by launch).
func (r *Runtime) cliFor(rec *containerRecord) *ociCLI {
	rt := rec.Runtime
	if rt == nil {
		return r.cli
	}
	if c, ok := r.handlers[rt.Handler]; ok && c.path == rt.Path && c.root == rt.Root && c.hide == rt.HideCgroup2 {
		return c
	}
	c := &ociCLI{handler: rt.Handler, path: rt.Path, createPath: rt.Path, root: rt.Root, flavor: rt.Flavor, hide: rt.HideCgroup2}
	if c.hide {
		c.createPath = wrapperPath(filepath.Join(r.state, "bin"), rt.Path)
	}
	return c
}
