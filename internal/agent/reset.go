package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"

	"github.com/peapod-dev/peapod/internal/certs"
	"github.com/peapod-dev/peapod/internal/network"
	"github.com/peapod-dev/peapod/internal/runtime"
	"github.com/peapod-dev/peapod/internal/runtime/cgroups"
	"github.com/peapod-dev/peapod/internal/runtime/oci"
	"github.com/peapod-dev/peapod/internal/volume"
)

// PIDFile is the file in a data dir holding the PID of the peapod process
// (server or agent) that uses it.
const PIDFile = "peapod.pid"

// nodeRecord is what a node's reset needs to know about what the agent made:
// written when the agent starts and when its network comes up.
type nodeRecord struct {
	NodeName    string `json:"nodeName"`
	PodCIDR     string `json:"podCIDR,omitempty"`
	ClusterCIDR string `json:"clusterCIDR"`
	ServiceCIDR string `json:"serviceCIDR"`
	// CgroupRoot is the node's cgroup (under the agent's own), holding the
	// pods' QoS tree.
	CgroupRoot string `json:"cgroupRoot"`
}

func (d Dirs) record() string { return filepath.Join(d.Data, "agent", "node.json") }

func writeRecord(d Dirs, r nodeRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return certs.WriteFileAtomic(d.record(), b, 0o600)
}

func readRecord(d Dirs) (nodeRecord, error) {
	var r nodeRecord
	b, err := os.ReadFile(d.record())
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// WritePID records the running process in dataDir.
func WritePID(dataDir string) error {
	return certs.WriteFileAtomic(filepath.Join(dataDir, PIDFile), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600)
}

// Reset stops and removes everything the server and agent of dataDir made on
// this machine: the peapod process itself, containers and their monitors,
// volumes' mounts, the node's network (namespaces, bridge, firewall rules,
// routes when no other node needs them), pod cgroups, then the data dir.
// Other data dirs' nodes are left alone. It keeps going past failures and
// reports them all.
func Reset(ctx context.Context, dataDir string, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dataDir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	d := Dirs{Data: dataDir}
	var errs []error
	fail := func(what string, err error) {
		if err != nil {
			log.Warn("reset: "+what, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	fail("stop peapod process", stopProcess(ctx, filepath.Join(dataDir, PIDFile)))

	rec, recErr := readRecord(d)
	if _, err := os.Stat(d.Runtime()); err == nil {
		var cg *cgroups.Host
		cg, err = cgroups.LoadHost()
		if err == nil {
			var rt *oci.Runtime
			rt, err = oci.New(oci.Config{StateDir: d.Runtime(), Cgroups: cg, Logger: log})
			if err == nil {
				sbs, _ := rt.ListPodSandboxes(ctx)
				for _, sb := range sbs {
					fail("remove sandbox "+sb.ID, rt.RemovePodSandbox(ctx, sb.ID))
				}
				cs, _ := rt.ListContainers(ctx, runtime.ContainerFilter{})
				for _, c := range cs {
					fail("remove container "+c.ID, rt.RemoveContainer(ctx, c.ID))
				}
			}
		}
		fail("runtime", err)
	}
	if _, err := os.Stat(d.Pods()); err == nil {
		vm, err := volume.New(volume.Config{PodsDir: d.Pods(), Source: noSource{}, Logger: log})
		if err == nil {
			uids, _ := vm.PodUIDs()
			for _, uid := range uids {
				fail("remove volumes of pod "+string(uid), vm.Teardown(ctx, uid))
			}
		}
		fail("volumes", err)
	}
	if recErr == nil && rec.PodCIDR != "" {
		m, err := network.New(network.Config{NodeName: rec.NodeName, PodCIDR: rec.PodCIDR, ClusterCIDR: rec.ClusterCIDR,
			ServiceCIDR: rec.ServiceCIDR, StateDir: d.Network(), Logger: log})
		if err == nil {
			err = m.Reset(ctx)
		}
		fail("network", err)
	}
	if recErr == nil && rec.CgroupRoot != "" {
		if cg, err := cgroups.LoadHost(); err == nil {
			fail("cgroups", removeCgroupTree(cg, rec.CgroupRoot))
		}
	}
	fail("unmount", unmountUnder(dataDir))
	fail("remove data dir", os.RemoveAll(dataDir))
	return errors.Join(errs...)
}

// stopProcess ends the peapod process named in pidFile (SIGTERM, then SIGKILL
// after 10 s), when it still runs and is peapod.
func stopProcess(ctx context.Context, pidFile string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 || pid == os.Getpid() {
		return nil
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(filepath.Base(strings.Split(string(cmdline), "\x00")[0]), "peapod") {
		return nil // gone, or the PID was reused by something else
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	return nil
}

// removeCgroupTree removes p and everything below it, deepest first.
func removeCgroupTree(cg *cgroups.Host, p string) error {
	var dirs []string
	for _, root := range cg.Existing(p) {
		_ = filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
	}
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, dir := range dirs {
		if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unmountUnder lazily unmounts every mount below dir, deepest first.
func unmountUnder(dir string) error {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mps = append(mps, mp)
		}
	}
	slices.SortFunc(mps, func(a, b string) int { return len(b) - len(a) })
	var errs []error
	for _, mp := range mps {
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
		}
	}
	return errors.Join(errs...)
}

func unescape(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

// noSource serves nothing: a reset only tears volumes down.
type noSource struct{}

func (noSource) GetConfigMap(context.Context, string, string) (*v1.ConfigMap, error) {
	return nil, errors.New("no API during reset")
}

func (noSource) GetSecret(context.Context, string, string) (*v1.Secret, error) {
	return nil, errors.New("no API during reset")
}

func (noSource) CreateToken(context.Context, string, string, *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	return nil, errors.New("no API during reset")
}
