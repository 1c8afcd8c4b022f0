package network

import (
	"bufio"
	"context"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/peapod-dev/peapod/internal/testutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Every test uses its own node name, PodCIDR (10.42.200.0/24 to
// 10.42.215.0/24, which no other package's tests use) and StateDir. The
// cluster and service CIDRs are the defaults, so the unreachable routes are
// the real ones; Reset leaves them while another peapod bridge exists.

// TestMain restores net.ipv4.ip_forward, which EnsureHost turns on, unless
// another peapod (another package's tests running at the same time) has a
// bridge and needs it.
func TestMain(m *testing.M) {
	before, err := os.ReadFile(ipForwardPath)
	code := m.Run()
	if now, nerr := os.ReadFile(ipForwardPath); err == nil && nerr == nil && string(now) != string(before) && !peapodBridges() {
		_ = os.WriteFile(ipForwardPath, before, 0o644)
	}
	os.Exit(code)
}

func peapodBridges() bool {
	links, err := netlink.LinkList()
	if err != nil {
		return true
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, BridgePrefix) {
			return true
		}
	}
	return false
}

const pluginDir = "/usr/lib/cni"

func requireNetwork(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, p := range pluginTypes {
		_, err := os.Stat(filepath.Join(pluginDir, p))
		testutil.Require(t, err == nil, "CNI plugin "+p+" in "+pluginDir+" (apt-get install containernetworking-plugins)")
	}
	testutil.RequireTool(t, "iptables-save", "")
	testutil.RequireTool(t, "iptables-restore", "")
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testConfig(t *testing.T, node, podCIDR string) Config {
	return Config{
		NodeName:   "nettest-" + node,
		PodCIDR:    podCIDR,
		StateDir:   t.TempDir(),
		PluginDirs: []string{pluginDir},
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

// startManager makes a Manager, runs EnsureHost, and resets it when the test
// ends, pass or fail, checking that nothing of it is left.
func startManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resetAndCheck(t, m) })
	if err := m.EnsureHost(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}

// resetAndCheck resets m and checks that its bridge, state, namespaces and
// firewall rules are gone.
func resetAndCheck(t *testing.T, m *Manager) {
	t.Helper()
	if err := m.Reset(context.Background()); err != nil {
		t.Errorf("reset: %v", err)
	}
	if _, err := netlink.LinkByName(m.Name()); err == nil {
		t.Errorf("bridge %s left after reset", m.Name())
	}
	if _, err := os.Stat(m.s.StateDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state dir left after reset: %v", err)
	}
	if lines := natLinesOf(t, m.Name(), ""); len(lines) > 0 {
		t.Errorf("nat rules of %s left after reset:\n%s", m.Name(), strings.Join(lines, "\n"))
	}
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), m.s.StateDir) {
		t.Errorf("mounts under %s left after reset", m.s.StateDir)
	}
}

func setup(t *testing.T, m *Manager, id string, ports ...PortMapping) *Attachment {
	t.Helper()
	att, err := m.Setup(context.Background(), PodRef{Namespace: "default", Name: "pod-" + id, UID: "uid-" + id, SandboxID: id}, ports)
	if err != nil {
		t.Fatalf("setup %s: %v", id, err)
	}
	if len(att.IPs) != 1 || !m.s.podNet.Contains(att.IPs[0]) {
		t.Fatalf("setup %s: IPs %v, want one in %s", id, att.IPs, m.s.podNet)
	}
	if att.NetNSPath != filepath.Join(m.s.StateDir, "netns", id) {
		t.Fatalf("setup %s: netns %s", id, att.NetNSPath)
	}
	return att
}

// inNS runs f in the network namespace at path ("" is the host's).
func inNS(path string, f func() error) error {
	if path == "" {
		return f()
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return f() })
}

// serve listens on addr inside the namespace at path and answers every
// connection with greeting; it stops when the test ends.
func serve(t *testing.T, path, addr, greeting string) net.Addr {
	t.Helper()
	var l net.Listener
	if err := inNS(path, func() (err error) {
		l, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen on %s in %q: %v", addr, path, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, greeting+"\n")
			c.Close()
		}
	}()
	return l.Addr()
}

// call connects to addr from the namespace at path and returns the greeting.
func call(path, addr string) (string, error) {
	var reply string
	err := inNS(path, func() error {
		c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		reply = strings.TrimSpace(line)
		return err
	})
	return reply, err
}

func mustCall(t *testing.T, from, addr, want string) {
	t.Helper()
	got, err := call(from, addr)
	if err != nil || got != want {
		t.Fatalf("from %q to %s: got %q, %v; want %q", from, addr, got, err, want)
	}
}

// natLinesOf returns the nat table's lines that belong to network (and
// sandbox id, unless empty): rules with its comment and the plugins' chains
// named after it.
func natLinesOf(t *testing.T, network, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var lines []string
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		ours := strings.Contains(line, `name: \"`+network+`\"`) && (id == "" || strings.Contains(line, `id: \"`+id+`\"`))
		if id != "" {
			for _, c := range chainNames(network, id) {
				ours = ours || strings.Contains(line, c)
			}
		}
		if ours {
			lines = append(lines, line)
		}
	}
	return lines
}

// natChains returns the nat table's chain names.
func natChains(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("iptables-save", "-t", "nat").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var chains []string
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, ":") {
			chains = append(chains, strings.Fields(line[1:])[0])
		}
	}
	return chains
}

// chainNames are the plugins' per-sandbox chains (utils.FormatChainName of
// the plugins: "CNI-" or "CNI-DN-" and the SHA-512 of network and id, 28
// characters).
func chainNames(network, id string) []string {
	sum := sha512.Sum512([]byte(network + id))
	h := hex.EncodeToString(sum[:])
	return []string{("CNI-" + h)[:28], ("CNI-DN-" + h)[:28]}
}

// bridgePorts lists the interfaces enslaved to the bridge.
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatalf("bridge %s: %v", bridge, err)
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports
}

// allocated lists host-local's allocations (one file per IP).
func allocated(t *testing.T, m *Manager) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(m.s.ipamDir(), m.Name()))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

func netnsFiles(t *testing.T, m *Manager) []string {
	t.Helper()
	entries, err := os.ReadDir(m.s.netnsDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func freeHostPort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func TestPodNetwork(t *testing.T) {
	requireNetwork(t)
	cfg := testConfig(t, "pods", "10.42.201.0/24")
	cfg.MTU = 1450
	m := startManager(t, cfg)
	a := setup(t, m, "sandbox-a")
	b := setup(t, m, "sandbox-b")
	if a.IPs[0].Equal(b.IPs[0]) {
		t.Fatalf("both sandboxes got %s", a.IPs[0])
	}

	addrA := net.JoinHostPort(a.IPs[0].String(), "8080")
	serve(t, a.NetNSPath, addrA, "hello from a")
	t.Run("pod to pod", func(t *testing.T) { mustCall(t, b.NetNSPath, addrA, "hello from a") })
	t.Run("host to pod", func(t *testing.T) { mustCall(t, "", addrA, "hello from a") })
	t.Run("pod to gateway", func(t *testing.T) {
		gw := serve(t, "", net.JoinHostPort(m.Gateway().String(), "0"), "hello from the host")
		mustCall(t, b.NetNSPath, gw.String(), "hello from the host")
	})
	t.Run("loopback in the pod", func(t *testing.T) {
		if err := inNS(a.NetNSPath, func() error {
			lo, err := netlink.LinkByName("lo")
			if err != nil {
				return err
			}
			if lo.Attrs().Flags&net.FlagUp == 0 {
				return errors.New("lo is down")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		lo := serve(t, a.NetNSPath, "127.0.0.1:0", "hello from a's loopback")
		mustCall(t, a.NetNSPath, lo.String(), "hello from a's loopback")
	})
	t.Run("pod interface", func(t *testing.T) {
		if err := inNS(a.NetNSPath, func() error {
			eth0, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			if eth0.Attrs().MTU != 1450 {
				return fmt.Errorf("eth0 MTU %d, want 1450", eth0.Attrs().MTU)
			}
			addrs, err := netlink.AddrList(eth0, netlink.FAMILY_V4)
			if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(a.IPs[0]) || addrs[0].Mask.String() != m.s.podNet.Mask.String() {
				return fmt.Errorf("eth0 addresses %v, %v; want %s in %s", addrs, err, a.IPs[0], m.s.podNet)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		br, err := netlink.LinkByName(m.Name())
		if err != nil {
			t.Fatal(err)
		}
		if br.Attrs().HardwareAddr.String() != bridgeMAC(cfg.NodeName).String() {
			t.Errorf("bridge MAC %s, want the fixed %s", br.Attrs().HardwareAddr, bridgeMAC(cfg.NodeName))
		}
	})
	t.Run("pod routes", func(t *testing.T) {
		if err := inNS(b.NetNSPath, func() error {
			routes, err := netlink.RouteGet(net.ParseIP("192.0.2.77"))
			if err != nil {
				return err
			}
			if len(routes) != 1 || !routes[0].Gw.Equal(m.Gateway()) {
				return fmt.Errorf("default route %+v, want via %s", routes, m.Gateway())
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("host routes", func(t *testing.T) {
		br, err := netlink.LinkByName(m.Name())
		if err != nil {
			t.Fatal(err)
		}
		routes, err := netlink.RouteGet(a.IPs[0])
		if err != nil || len(routes) != 1 || routes[0].LinkIndex != br.Attrs().Index {
			t.Errorf("route to pod %s: %+v, %v; want via %s", a.IPs[0], routes, err, m.Name())
		}
		for _, c := range []struct{ cidr, probe string }{
			{DefaultClusterCIDR, "10.42.251.9"}, // in the cluster, outside every test's PodCIDR
			{DefaultServiceCIDR, "10.43.251.9"},
		} {
			if routes, err := netlink.RouteGet(net.ParseIP(c.probe)); !errors.Is(err, unix.EHOSTUNREACH) {
				t.Errorf("route to %s: %+v, %v; want no route to host", c.probe, routes, err)
			}
			_, dst, _ := net.ParseCIDR(c.cidr)
			if rs, err := unreachableRoutes(dst); err != nil || len(rs) != 1 {
				t.Errorf("unreachable routes for %s: %+v, %v", c.cidr, rs, err)
			}
		}
	})
	t.Run("shared netns dir", func(t *testing.T) {
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		var dirShared, nsMounts int
		for line := range strings.Lines(string(mounts)) {
			f := strings.Fields(line)
			switch {
			case f[4] == m.s.netnsDir() && strings.Contains(line, " shared:"):
				dirShared++
			case strings.HasPrefix(f[4], m.s.netnsDir()+"/"):
				nsMounts++
			}
		}
		if dirShared != 1 || nsMounts != 2 {
			t.Errorf("%s: %d shared mounts (want 1), %d namespace mounts (want 2)", m.s.netnsDir(), dirShared, nsMounts)
		}
	})
	t.Run("list", func(t *testing.T) {
		ids, err := m.List()
		if err != nil || !slices.Equal(ids, []string{"sandbox-a", "sandbox-b"}) {
			t.Errorf("List: %v, %v", ids, err)
		}
	})
	t.Run("ensure host again", func(t *testing.T) {
		if err := m.EnsureHost(context.Background()); err != nil {
			t.Fatal(err)
		}
		_, dst, _ := net.ParseCIDR(DefaultClusterCIDR)
		if rs, _ := unreachableRoutes(dst); len(rs) != 1 {
			t.Errorf("EnsureHost again: %d unreachable routes for the cluster", len(rs))
		}
		mustCall(t, b.NetNSPath, addrA, "hello from a")
	})
}

func TestHostPort(t *testing.T) {
	requireNetwork(t)
	m := startManager(t, testConfig(t, "hostport", "10.42.202.0/24"))
	chainsBefore := natChains(t)
	hp := freeHostPort(t)
	a := setup(t, m, "hostport-a", PortMapping{HostPort: hp, ContainerPort: 8080, Protocol: "TCP"})
	serve(t, a.NetNSPath, net.JoinHostPort(a.IPs[0].String(), "8080"), "hello through the host port")

	// portmap sets route_localnet on the bridge and masquerades 127.0.0.1, so
	// the host port answers on the host's loopback.
	mustCall(t, "", fmt.Sprintf("127.0.0.1:%d", hp), "hello through the host port")
	if lines := natLinesOf(t, m.Name(), "hostport-a"); !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "DNAT") && strings.Contains(l, a.IPs[0].String()+":8080")
	}) {
		t.Errorf("no DNAT rule of the sandbox in the nat table:\n%s", strings.Join(lines, "\n"))
	}

	if err := m.Teardown(context.Background(), "hostport-a"); err != nil {
		t.Fatal(err)
	}
	if lines := natLinesOf(t, m.Name(), "hostport-a"); len(lines) > 0 {
		t.Errorf("nat rules left after teardown:\n%s", strings.Join(lines, "\n"))
	}
	for _, c := range natChains(t) {
		if !slices.Contains(chainsBefore, c) && !slices.Contains(sharedChains, c) {
			t.Errorf("chain %s left after teardown", c)
		}
	}
	if _, err := call("", fmt.Sprintf("127.0.0.1:%d", hp)); err == nil {
		t.Error("the host port still answers after teardown")
	}
}

func TestRestartAndTeardown(t *testing.T) {
	requireNetwork(t)
	cfg := testConfig(t, "restart", "10.42.203.0/24")
	m := startManager(t, cfg)
	hp := freeHostPort(t)
	a := setup(t, m, "restart-a", PortMapping{HostPort: hp, ContainerPort: 80})

	// A new Manager on the same state: what a restarted agent has.
	m2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m2.Status(context.Background(), "restart-a")
	if err != nil || !st.IPs[0].Equal(a.IPs[0]) || st.NetNSPath != a.NetNSPath {
		t.Fatalf("status after restart: %+v, %v; want %+v", st, err, a)
	}
	again := setup(t, m2, "restart-a")
	if !again.IPs[0].Equal(a.IPs[0]) {
		t.Fatalf("setup again after restart: %v, want %v", again.IPs, a.IPs)
	}
	if ids, err := m2.List(); err != nil || !slices.Equal(ids, []string{"restart-a"}) {
		t.Fatalf("List after restart: %v, %v", ids, err)
	}
	if _, err := m2.Status(context.Background(), "unknown"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status of an unknown sandbox: %v", err)
	}

	// Teardown by the new Manager uses the cached port mappings.
	if err := m2.Teardown(context.Background(), "restart-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.NetNSPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("netns file after teardown: %v", err)
	}
	if _, err := m2.Status(context.Background(), "restart-a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("status after teardown: %v", err)
	}
	if lines := natLinesOf(t, m.Name(), "restart-a"); len(lines) > 0 {
		t.Errorf("nat rules left after teardown:\n%s", strings.Join(lines, "\n"))
	}
	if ips := allocated(t, m); len(ips) > 0 {
		t.Errorf("addresses still allocated after teardown: %v", ips)
	}
	if ports := bridgePorts(t, m.Name()); len(ports) > 0 {
		t.Errorf("bridge ports after teardown: %v", ports)
	}
	if err := m2.Teardown(context.Background(), "restart-a"); err != nil {
		t.Errorf("second teardown: %v", err)
	}
	if ids, err := m2.List(); err != nil || len(ids) != 0 {
		t.Errorf("List after teardown: %v, %v", ids, err)
	}
}

// TestAddressReuse uses a /30 with a single pod address: a second sandbox
// fails while the first holds it (leaving nothing behind) and gets it once
// the first is torn down.
func TestAddressReuse(t *testing.T) {
	requireNetwork(t)
	m := startManager(t, testConfig(t, "reuse", "10.42.204.0/30"))
	a := setup(t, m, "reuse-a")
	if _, err := m.Setup(context.Background(), PodRef{SandboxID: "reuse-b"}, nil); err == nil {
		t.Fatal("a second sandbox got an address from a full range")
	}
	if files := netnsFiles(t, m); !slices.Equal(files, []string{"reuse-a"}) {
		t.Errorf("netns files after a failed setup: %v", files)
	}
	if ports := bridgePorts(t, m.Name()); len(ports) != 1 {
		t.Errorf("bridge ports after a failed setup: %v", ports)
	}
	if err := m.Teardown(context.Background(), "reuse-a"); err != nil {
		t.Fatal(err)
	}
	b := setup(t, m, "reuse-b")
	if !b.IPs[0].Equal(a.IPs[0]) {
		t.Errorf("second sandbox got %v, want the freed %v", b.IPs, a.IPs)
	}
}

func TestTwoNodes(t *testing.T) {
	requireNetwork(t)
	m1, err := New(testConfig(t, "node-1", "10.42.205.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	reset1 := false
	t.Cleanup(func() {
		if !reset1 {
			resetAndCheck(t, m1)
		}
	})
	if err := m1.EnsureHost(context.Background()); err != nil {
		t.Fatal(err)
	}
	m2 := startManager(t, testConfig(t, "node-2", "10.42.206.0/24"))
	if m1.Name() == m2.Name() {
		t.Fatalf("both nodes use bridge %s", m1.Name())
	}
	a := setup(t, m1, "node1-a")
	b := setup(t, m2, "node2-b")
	addrB := net.JoinHostPort(b.IPs[0].String(), "8080")
	serve(t, b.NetNSPath, addrB, "hello from node 2")
	mustCall(t, "", addrB, "hello from node 2")

	reset1 = true
	resetAndCheck(t, m1)
	if _, err := os.Stat(a.NetNSPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("node 1's netns after its reset: %v", err)
	}
	if _, err := netlink.LinkByName(m2.Name()); err != nil {
		t.Fatalf("node 2's bridge after node 1's reset: %v", err)
	}
	for _, cidr := range []string{DefaultClusterCIDR, DefaultServiceCIDR} {
		_, dst, _ := net.ParseCIDR(cidr)
		if rs, err := unreachableRoutes(dst); err != nil || len(rs) != 1 {
			t.Errorf("route for %s after node 1's reset: %+v, %v", cidr, rs, err)
		}
	}
	if st, err := m2.Status(context.Background(), "node2-b"); err != nil || !st.IPs[0].Equal(b.IPs[0]) {
		t.Errorf("node 2's sandbox after node 1's reset: %+v, %v", st, err)
	}
	mustCall(t, "", addrB, "hello from node 2")

	if err := m2.Reset(context.Background()); err != nil {
		t.Fatal(err)
	}
	others, err := m2.otherBridges()
	if err != nil {
		t.Fatal(err)
	}
	for _, cidr := range []string{DefaultClusterCIDR, DefaultServiceCIDR} {
		_, dst, _ := net.ParseCIDR(cidr)
		rs, err := unreachableRoutes(dst)
		if err != nil {
			t.Fatal(err)
		}
		// Another peapod on this machine (another package's tests) keeps them.
		if len(others) == 0 && len(rs) != 0 {
			t.Errorf("route for %s left after the last node's reset", cidr)
		}
	}
}

func TestSetupFailureLeavesNothing(t *testing.T) {
	requireNetwork(t)

	t.Run("no plugins", func(t *testing.T) {
		cfg := testConfig(t, "fail-1", "10.42.207.0/24")
		cfg.PluginDirs = []string{t.TempDir()}
		m, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resetAndCheck(t, m) })
		if err := m.EnsureHost(context.Background()); err == nil {
			t.Error("EnsureHost found plugins in an empty dir")
		}
		if _, err := m.Setup(context.Background(), PodRef{SandboxID: "fail-a"}, nil); err == nil {
			t.Fatal("setup without plugins succeeded")
		}
		if files := netnsFiles(t, m); len(files) > 0 {
			t.Errorf("netns files left: %v", files)
		}
		if ids, err := m.List(); err != nil || len(ids) > 0 {
			t.Errorf("List: %v, %v", ids, err)
		}
		if ips := allocated(t, m); len(ips) > 0 {
			t.Errorf("addresses allocated: %v", ips)
		}
	})

	t.Run("portmap fails", func(t *testing.T) {
		// The real bridge, host-local and loopback, and a portmap that fails
		// ADD and DEL: the bridge has made the veth and host-local has given
		// out an address by the time portmap fails.
		dir := t.TempDir()
		for _, p := range []string{"bridge", "host-local", "loopback"} {
			if err := os.Symlink(filepath.Join(pluginDir, p), filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
		script := "#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"injected portmap failure\"}'\nexit 1\n"
		if err := os.WriteFile(filepath.Join(dir, "portmap"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		cfg := testConfig(t, "fail-2", "10.42.208.0/24")
		cfg.PluginDirs = []string{dir}
		m := startManager(t, cfg)
		_, err := m.Setup(context.Background(), PodRef{SandboxID: "fail-b"}, []PortMapping{{HostPort: freeHostPort(t), ContainerPort: 80}})
		if err == nil || !strings.Contains(err.Error(), "injected portmap failure") {
			t.Fatalf("setup: %v, want the injected failure", err)
		}
		if files := netnsFiles(t, m); len(files) > 0 {
			t.Errorf("netns files left: %v", files)
		}
		if ips := allocated(t, m); len(ips) > 0 {
			t.Errorf("addresses allocated: %v", ips)
		}
		if ports := bridgePorts(t, m.Name()); len(ports) > 0 {
			t.Errorf("bridge ports left: %v", ports)
		}
		if lines := natLinesOf(t, m.Name(), "fail-b"); len(lines) > 0 {
			t.Errorf("nat rules left:\n%s", strings.Join(lines, "\n"))
		}
		if ids, err := m.List(); err != nil || len(ids) > 0 {
			t.Errorf("List: %v, %v", ids, err)
		}
	})
}

// TestLostNamespace is what an agent finds when a sandbox's namespace is gone
// but its state is not (the mount was lost, or the host rebooted with a
// persistent StateDir): Status says not found, Setup makes the network anew,
// and Teardown cleans up what the plugins could not see without the
// namespace (the masquerade rules).
func TestLostNamespace(t *testing.T) {
	requireNetwork(t)
	m := startManager(t, testConfig(t, "lost", "10.42.209.0/24"))
	a := setup(t, m, "lost-a")
	if err := unix.Unmount(a.NetNSPath, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Status(context.Background(), "lost-a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("status with the namespace gone: %v", err)
	}
	if lines := natLinesOf(t, m.Name(), "lost-a"); len(lines) == 0 {
		t.Fatal("expected the masquerade rules to outlive the namespace")
	}
	again := setup(t, m, "lost-a")
	addr := net.JoinHostPort(again.IPs[0].String(), "8080")
	serve(t, again.NetNSPath, addr, "hello again")
	mustCall(t, "", addr, "hello again")
	if ips := allocated(t, m); len(ips) != 1 {
		t.Errorf("allocated after setting up again: %v", ips)
	}

	if err := unix.Unmount(again.NetNSPath, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(context.Background(), "lost-a"); err != nil {
		t.Fatal(err)
	}
	if lines := natLinesOf(t, m.Name(), "lost-a"); len(lines) > 0 {
		t.Errorf("nat rules left after teardown:\n%s", strings.Join(lines, "\n"))
	}
	if ips := allocated(t, m); len(ips) > 0 {
		t.Errorf("addresses allocated after teardown: %v", ips)
	}
	if files := netnsFiles(t, m); len(files) > 0 {
		t.Errorf("netns files left: %v", files)
	}
}

// TestConcurrentSandboxes sets up and tears down sandboxes in parallel, as an
// agent starting many pods at once does.
func TestConcurrentSandboxes(t *testing.T) {
	requireNetwork(t)
	m := startManager(t, testConfig(t, "parallel", "10.42.210.0/24"))
	const n = 8
	atts := make([]*Attachment, n)
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			atts[i], err = m.Setup(context.Background(), PodRef{SandboxID: fmt.Sprintf("par-%d", i)},
				[]PortMapping{{HostPort: int32(41000 + i), ContainerPort: 80}})
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	seen := map[string]bool{}
	for _, a := range atts {
		if seen[a.IPs[0].String()] {
			t.Errorf("address %s given twice", a.IPs[0])
		}
		seen[a.IPs[0].String()] = true
	}
	if ports := bridgePorts(t, m.Name()); len(ports) != n {
		t.Errorf("bridge has %d ports, want %d", len(ports), n)
	}
	for i := range n {
		go func() { errs <- m.Teardown(context.Background(), fmt.Sprintf("par-%d", i)) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if ids, err := m.List(); err != nil || len(ids) > 0 {
		t.Errorf("List after teardown: %v, %v", ids, err)
	}
	if ips := allocated(t, m); len(ips) > 0 {
		t.Errorf("addresses allocated after teardown: %v", ips)
	}
	if lines := natLinesOf(t, m.Name(), ""); len(lines) > 0 {
		t.Errorf("nat rules left after teardown:\n%s", strings.Join(lines, "\n"))
	}
	if err := m.Teardown(context.Background(), "../escape"); !errors.Is(err, ErrInvalid) {
		t.Errorf("teardown of a bad ID: %v", err)
	}
}
