package oci

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
)

// ociCLI runs the commands of one runtime handler's OCI runtime.
type ociCLI struct {
	// handler is the handler's name ("" for the default).
	handler string
	path    string
	// createPath is what conmon runs to create containers: path, or (with
	// hide) the wrapper that hides cgroup2 from crun on hybrid hosts.
	createPath string
	hide       bool
	// root is the runtime's --root.
	root   string
	flavor string
}

// cliTimeout bounds one runtime command that was given no deadline.
const cliTimeout = 2 * time.Minute

func (c *ociCLI) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.path, append([]string{"--root", c.root}, args...)...)
	cmd.Env = []string{"PATH=" + hostPath}
	return cmd
}

// hostPath is the PATH runtime helpers run with.
const hostPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

func (c *ociCLI) run(ctx context.Context, args ...string) ([]byte, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cliTimeout)
		defer cancel()
	}
	cmd := c.command(ctx, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("oci: %s %s: %w: %s", c.flavor, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

func (c *ociCLI) startContainer(ctx context.Context, id string) error {
	_, err := c.run(ctx, "start", id)
	return err
}

// kill signals the container's init, or with all every process in its
// cgroup.
func (c *ociCLI) kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := c.run(ctx, append(args, id, strconv.Itoa(int(sig)))...)
	return err
}

// delete removes the runtime's state of the container (and its cgroup); a
// container the runtime does not know is not an error.
func (c *ociCLI) delete(ctx context.Context, id string) error {
	_, err := c.run(ctx, "delete", "--force", id)
	if err != nil && isNotExist(err) {
		return nil
	}
	return err
}

// state is the runtime's status of the container ("created", "running",
// "stopped").
func (c *ociCLI) state(id string) (string, error) {
	out, err := c.run(context.Background(), "state", id)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return "", fmt.Errorf("oci: %s state: %w", c.flavor, err)
	}
	return st.Status, nil
}

// isNotExist recognises runc's and crun's "no such container" errors.
func isNotExist(err error) bool {
	s := err.Error()
	return strings.Contains(s, "does not exist") || strings.Contains(s, "No such file or directory") ||
		strings.Contains(s, "not found")
}

// writeCreateWrapper writes the script through which conmon runs `crun
// create` on a hybrid host, and returns its path. crun 1.8 refuses to create
// containers when the cgroup2 hierarchy next to the v1 controllers has
// controllers ("cgroups in hybrid mode not supported"); the script runs it
// in a mount namespace of its own, a slave of the host's (so that later
// host mounts still reach it), in which that hierarchy is unmounted: crun
// then sees a legacy host and uses the v1 controllers. The namespace lives
// only as long as that crun process: the container's own mount namespace is
// made from it but pivots away from its mounts. crun's other commands
// (start, kill, exec, state, delete) work on such containers as they are,
// so only creation pays for the namespace (about 12 ms here).
func writeCreateWrapper(dir, crun string, cg *cgroups.Host) (string, error) {
	if cg.Layout.Mode != cgroups.ModeHybrid {
		return "", fmt.Errorf("oci: hiding cgroup2 needs a hybrid host, this one is %s", cg.Layout.Mode)
	}
	var unified string
	for _, h := range cg.Layout.Hierarchies {
		if h.V2 {
			unified = h.Mountpoint
		}
	}
	if strings.Trim(unified, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-") != "" {
		return "", fmt.Errorf("oci: cgroup2 mount point %q has characters the wrapper script does not quote", unified)
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return "", fmt.Errorf("oci: hiding cgroup2 from %s needs unshare (util-linux): %w", crun, err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	script := fmt.Sprintf(`#!%[1]s
# Written by peapod (internal/runtime/oci): runs crun in a mount namespace
# without the hybrid host's cgroup2 mount %[3]s, which crun 1.8 refuses.
exec %[2]s --mount --propagation slave -- %[1]s -c 'umount -l %[3]s || exit 125; exec "$0" "$@"' %[4]s "$@"
`, sh, shellQuote(unshare), unified, shellQuote(crun))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	path := wrapperPath(dir, crun)
	if old, err := os.ReadFile(path); err == nil && string(old) == script {
		return path, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("oci: %w", err)
	}
	return path, nil
}

// wrapperPath is the create wrapper of the OCI runtime binary crun in dir:
// DIR/NAME-hybrid-HASH, one per binary (handlers may name different ones),
// so that a wrapper's content never changes while containers record it.
func wrapperPath(dir, crun string) string {
	sum := sha256.Sum256([]byte(crun))
	return filepath.Join(dir, filepath.Base(crun)+"-hybrid-"+hex.EncodeToString(sum[:4]))
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
