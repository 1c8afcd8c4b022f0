package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const ipForwardPath = "/proc/sys/net/ipv4/ip_forward"

// pluginTypes are the CNI plugins the conflist uses (host-local through the
// bridge).
var pluginTypes = []string{"bridge", "host-local", "portmap", "loopback"}

// EnsureHost makes the host ready for Setup: it checks that the plugins are
// in PluginDirs, writes the conflist into StateDir, makes StateDir/netns a
// shared mount point, sets net.ipv4.ip_forward to 1 when it is 0 (logged at
// Info: the bridge plugin would set it anyway), creates the node's bridge
// (gateway address, fixed MAC, up), and adds unreachable routes for
// ClusterCIDR and ServiceCIDR so that no packet for a pod or service address
// leaves by the default route (the bridge's more specific route wins for
// this node's pods). It is idempotent. An existing route of another type for
// exactly one of those ranges is left alone (logged).
func (m *Manager) EnsureHost(ctx context.Context) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for _, t := range pluginTypes {
		if _, err := invoke.FindInPath(t, m.s.PluginDirs); err != nil {
			return fmt.Errorf("network: CNI plugin %s: %w", t, err)
		}
	}
	if err := os.MkdirAll(m.s.StateDir, 0o700); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := writeFileAtomic(m.s.conflistPath(), m.s.conflist()); err != nil {
		return fmt.Errorf("network: write conflist: %w", err)
	}
	if err := m.ensureNetnsDir(); err != nil {
		return err
	}
	if err := m.ensureIPForward(); err != nil {
		return err
	}
	if err := m.ensureBridge(); err != nil {
		return err
	}
	for _, dst := range []*net.IPNet{m.s.cluster, m.s.service} {
		if err := m.ensureUnreachable(dst); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ensureNetnsDir makes StateDir/netns a shared mount point (once per
// Manager, again after Reset).
func (m *Manager) ensureNetnsDir() error {
	m.nsDirMu.Lock()
	defer m.nsDirMu.Unlock()
	if m.nsDirReady {
		return nil
	}
	if err := os.MkdirAll(m.s.StateDir, 0o700); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := ensureSharedDir(m.s.netnsDir()); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	m.nsDirReady = true
	return nil
}

func (m *Manager) ensureIPForward() error {
	b, err := os.ReadFile(ipForwardPath)
	if err != nil {
		return fmt.Errorf("network: read ip_forward: %w", err)
	}
	if strings.TrimSpace(string(b)) != "0" {
		return nil
	}
	if err := os.WriteFile(ipForwardPath, []byte("1\n"), 0o644); err != nil {
		return fmt.Errorf("network: enable ip_forward: %w", err)
	}
	m.log.Info("set net.ipv4.ip_forward=1 (was 0): pods need it to reach other networks")
	return nil
}

// ensureBridge creates the node's bridge the way the bridge plugin expects to
// find it (the gateway address with the pod range's prefix), with a fixed MAC.
// Creating it here rather than on the first pod makes the pod range's route
// exist from the start and marks the node as present for other managers'
// Reset.
func (m *Manager) ensureBridge() error {
	la := netlink.NewLinkAttrs()
	la.Name = m.s.name
	la.MTU = m.s.MTU
	la.HardwareAddr = bridgeMAC(m.s.NodeName)
	err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("network: create bridge %s: %w", m.s.name, err)
	}
	link, err := netlink.LinkByName(m.s.name)
	if err != nil {
		return fmt.Errorf("network: bridge %s: %w", m.s.name, err)
	}
	if link.Type() != "bridge" {
		return fmt.Errorf("network: %s exists and is a %s, not a bridge", m.s.name, link.Type())
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: m.s.gateway, Mask: m.s.podNet.Mask}}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("network: addresses of %s: %w", m.s.name, err)
	}
	for _, a := range addrs {
		// The bridge plugin refuses a bridge with another IPv4 address (a
		// PodCIDR this node had before).
		if a.IPNet.String() != addr.IPNet.String() {
			if err := netlink.AddrDel(link, &a); err != nil {
				return fmt.Errorf("network: remove stale address %s from %s: %w", a.IPNet, m.s.name, err)
			}
			m.log.Info("removed a stale address from the bridge", "bridge", m.s.name, "address", a.IPNet.String())
		}
	}
	if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("network: address %s on %s: %w", addr.IPNet, m.s.name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("network: set %s up: %w", m.s.name, err)
	}
	return nil
}

// unreachableRoutes lists the main table's unreachable routes for exactly dst.
func unreachableRoutes(dst *net.IPNet) ([]netlink.Route, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Dst: dst, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_DST|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Type == unix.RTN_UNREACHABLE {
			out = append(out, r)
		}
	}
	return out, nil
}

func (m *Manager) ensureUnreachable(dst *net.IPNet) error {
	have, err := unreachableRoutes(dst)
	if err != nil {
		return fmt.Errorf("network: list routes to %s: %w", dst, err)
	}
	if len(have) > 0 {
		return nil
	}
	r := &netlink.Route{Dst: dst, Type: unix.RTN_UNREACHABLE, Table: unix.RT_TABLE_MAIN}
	if err := netlink.RouteAdd(r); err != nil {
		if errors.Is(err, unix.EEXIST) {
			m.log.Info("a route for the range exists already; not adding an unreachable one", "dst", dst.String())
			return nil
		}
		return fmt.Errorf("network: add unreachable route %s: %w", dst, err)
	}
	m.log.Debug("added unreachable route", "dst", dst.String())
	return nil
}

// otherBridges lists the peapod bridges on the machine other than this
// node's.
func (m *Manager) otherBridges() ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, l := range links {
		n := l.Attrs().Name
		if l.Type() == "bridge" && strings.HasPrefix(n, BridgePrefix) && n != m.s.name {
			out = append(out, n)
		}
	}
	return out, nil
}

// inCluster reports whether bridge name has an IPv4 address in this node's
// cluster range, or none at all (a bridge being set up).
func (m *Manager) inCluster(name string) bool {
	link, err := netlink.LinkByName(name)
	if err != nil {
		return false
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil || len(addrs) == 0 {
		return true
	}
	for _, a := range addrs {
		if m.s.cluster.Contains(a.IP) {
			return true
		}
	}
	return false
}

// removeHostState deletes the bridge; the unreachable routes when no other
// node of the same cluster range remains on the machine; and, when no peapod
// bridge remains at all, portmap's shared chains if no CNI user has host
// ports.
func (m *Manager) removeHostState(ctx context.Context) error {
	var errs []error
	if link, err := netlink.LinkByName(m.s.name); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", m.s.name, err))
		}
	} else if _, ok := err.(netlink.LinkNotFoundError); !ok {
		errs = append(errs, fmt.Errorf("bridge %s: %w", m.s.name, err))
	}
	others, err := m.otherBridges()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list links: %w", err))...)
	}
	// The routes belong to every node of this cluster on the machine: they
	// stay while another bridge has an address in the cluster range (or no
	// address yet). Bridges of other clusters (other ranges) do not need them.
	var sameCluster []string
	for _, name := range others {
		if m.inCluster(name) {
			sameCluster = append(sameCluster, name)
		}
	}
	if len(sameCluster) > 0 {
		m.log.Info("keeping the cluster and service routes: other nodes of the cluster remain", "bridges", sameCluster)
		return errors.Join(errs...)
	}
	for _, dst := range []*net.IPNet{m.s.cluster, m.s.service} {
		routes, err := unreachableRoutes(dst)
		if err != nil {
			errs = append(errs, fmt.Errorf("list routes to %s: %w", dst, err))
			continue
		}
		for _, r := range routes {
			if err := netlink.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = append(errs, fmt.Errorf("delete route %s: %w", dst, err))
			}
		}
	}
	if len(others) > 0 {
		// portmap's chains are shared by every CNI user on the machine.
		return errors.Join(errs...)
	}
	if err := sweepSharedChains(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// writeFileAtomic writes data to path through a temporary file and a rename;
// an unchanged file is left alone.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
