package network

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
)

// Defaults for the fields of Config left empty.
const (
	DefaultClusterCIDR = "10.42.0.0/16"
	DefaultServiceCIDR = "10.43.0.0/16"
)

// DefaultPluginDirs are where Debian's containernetworking-plugins and the
// upstream release tarball put the CNI plugins.
func DefaultPluginDirs() []string { return []string{"/usr/lib/cni", "/opt/cni/bin"} }

// BridgePrefix starts the name of every bridge peapod makes; Reset keeps the
// cluster and service routes while another bridge with this prefix exists.
const BridgePrefix = "pp-"

// cniVersion is the spec version of the generated conflist: the newest one
// Debian's plugins (1.1.1) speak.
const cniVersion = "1.0.0"

// ifName is the pod's interface.
const ifName = "eth0"

// Config configures one node's pod network.
type Config struct {
	// NodeName derives the bridge and CNI network name (BridgeName), so that
	// several agents with different node names and state dirs can share a
	// machine.
	NodeName string
	// PodCIDR is this node's IPv4 pod range, e.g. 10.42.3.0/24; the bridge
	// gets its first address (.1) and is the pods' gateway.
	PodCIDR string
	// ClusterCIDR holds every node's PodCIDR; DefaultClusterCIDR when empty.
	ClusterCIDR string
	// ServiceCIDR is the range of service cluster IPs; DefaultServiceCIDR
	// when empty.
	ServiceCIDR string
	// StateDir (absolute) holds everything this package keeps: the network
	// namespaces' bind mounts, libcni's cache, host-local's IP allocations
	// and the generated conflist.
	StateDir string
	// PluginDirs are searched for the CNI plugins; DefaultPluginDirs() when
	// empty.
	PluginDirs []string
	// MTU of the bridge and the pods' interfaces; 0 leaves the plugin's
	// default (1500).
	MTU int
	// Logger receives what the package does; nil discards.
	Logger *slog.Logger
}

// BridgeName is the bridge of the node named node: BridgePrefix and 10 hex
// digits of the SHA-256 of the name (13 characters, within Linux's 15). It is
// also the CNI network's name, so firewall rules and cache entries carry it.
func BridgeName(node string) string {
	sum := sha256.Sum256([]byte(node))
	return BridgePrefix + hex.EncodeToString(sum[:5])
}

// bridgeMAC is a fixed locally administered address for the bridge, so that
// it does not follow the lowest MAC of its ports as pods come and go (which
// would leave the pods' ARP entries for the gateway stale).
func bridgeMAC(node string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(node))
	return net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
}

// settings is a validated Config with its derived values.
type settings struct {
	Config
	name    string // bridge and network name
	podNet  *net.IPNet
	gateway net.IP
	cluster *net.IPNet
	service *net.IPNet
}

func parseConfig(cfg Config) (*settings, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("network: NodeName is required")
	}
	if cfg.StateDir == "" || !filepath.IsAbs(cfg.StateDir) {
		return nil, fmt.Errorf("network: StateDir must be an absolute path, got %q", cfg.StateDir)
	}
	cfg.StateDir = filepath.Clean(cfg.StateDir)
	if cfg.ClusterCIDR == "" {
		cfg.ClusterCIDR = DefaultClusterCIDR
	}
	if cfg.ServiceCIDR == "" {
		cfg.ServiceCIDR = DefaultServiceCIDR
	}
	if len(cfg.PluginDirs) == 0 {
		cfg.PluginDirs = DefaultPluginDirs()
	}
	if cfg.MTU < 0 || (cfg.MTU > 0 && cfg.MTU < 576) {
		return nil, fmt.Errorf("network: MTU %d is out of range", cfg.MTU)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &settings{Config: cfg, name: BridgeName(cfg.NodeName)}
	var err error
	if s.podNet, err = parseV4CIDR("PodCIDR", cfg.PodCIDR); err != nil {
		return nil, err
	}
	if ones, _ := s.podNet.Mask.Size(); ones > 30 {
		return nil, fmt.Errorf("network: PodCIDR %s is too small", s.podNet)
	}
	if s.cluster, err = parseV4CIDR("ClusterCIDR", cfg.ClusterCIDR); err != nil {
		return nil, err
	}
	if s.service, err = parseV4CIDR("ServiceCIDR", cfg.ServiceCIDR); err != nil {
		return nil, err
	}
	if !within(s.podNet, s.cluster) {
		return nil, fmt.Errorf("network: PodCIDR %s is not inside ClusterCIDR %s", s.podNet, s.cluster)
	}
	if within(s.cluster, s.service) || within(s.service, s.cluster) {
		return nil, fmt.Errorf("network: ClusterCIDR %s and ServiceCIDR %s overlap", s.cluster, s.service)
	}
	s.gateway = make(net.IP, net.IPv4len)
	copy(s.gateway, s.podNet.IP.To4())
	s.gateway[3]++
	return s, nil
}

func parseV4CIDR(field, v string) (*net.IPNet, error) {
	ip, n, err := net.ParseCIDR(v)
	if err != nil {
		return nil, fmt.Errorf("network: %s: %w", field, err)
	}
	if ip.To4() == nil {
		return nil, fmt.Errorf("network: %s %s: only IPv4 is supported", field, v)
	}
	if !ip.Equal(n.IP) {
		return nil, fmt.Errorf("network: %s %s has host bits set (the network is %s)", field, v, n)
	}
	n.IP = n.IP.To4()
	return n, nil
}

// within reports whether inner lies entirely inside outer.
func within(inner, outer *net.IPNet) bool {
	io, _ := inner.Mask.Size()
	oo, _ := outer.Mask.Size()
	return io >= oo && outer.Contains(inner.IP)
}

func (s *settings) netnsDir() string     { return filepath.Join(s.StateDir, "netns") }
func (s *settings) cacheDir() string     { return filepath.Join(s.StateDir, "cache") }
func (s *settings) ipamDir() string      { return filepath.Join(s.StateDir, "ipam") }
func (s *settings) conflistPath() string { return filepath.Join(s.StateDir, "peapod.conflist") }

// conflist is the CNI network configuration list: bridge (veth into the
// node's bridge, the bridge is the gateway, masquerade to outside the pod
// range, hairpin for a pod reaching itself through a host port), host-local
// IPAM on the PodCIDR with a default route via the gateway, portmap for host
// ports (the portMappings capability), and loopback, which brings up lo and
// passes the bridge's result on.
func (s *settings) conflist() []byte {
	bridge := map[string]any{
		"type":        "bridge",
		"bridge":      s.name,
		"isGateway":   true,
		"ipMasq":      true,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"dataDir": s.ipamDir(),
			"ranges": [][]map[string]string{{{
				"subnet":  s.podNet.String(),
				"gateway": s.gateway.String(),
			}}},
			"routes": []map[string]string{{"dst": "0.0.0.0/0"}},
		},
	}
	if s.MTU > 0 {
		bridge["mtu"] = s.MTU
	}
	list := map[string]any{
		"cniVersion": cniVersion,
		"name":       s.name,
		"plugins": []any{
			bridge,
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
			map[string]any{"type": "loopback"},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("network: marshal conflist: %v", err)) // only maps of strings, bools and ints
	}
	return append(b, '\n')
}

// portMapEntry is one entry of the portMappings capability, as portmap reads it.
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// portMappings validates ports and turns them into the capability's entries,
// dropping those without a host port.
func portMappings(ports []PortMapping) ([]portMapEntry, error) {
	var out []portMapEntry
	for _, p := range ports {
		if p.HostPort == 0 {
			continue
		}
		if p.HostPort < 0 || p.HostPort > 65535 || p.ContainerPort <= 0 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d->%d is out of range", ErrInvalid, p.HostPort, p.ContainerPort)
		}
		proto := strings.ToLower(p.Protocol)
		switch proto {
		case "":
			proto = "tcp"
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("%w: port mapping %d: protocol %q is not tcp, udp or sctp", ErrInvalid, p.HostPort, p.Protocol)
		}
		if p.HostIP != "" {
			ip := net.ParseIP(p.HostIP)
			if ip == nil || ip.To4() == nil {
				return nil, fmt.Errorf("%w: port mapping %d: host IP %q is not an IPv4 address", ErrInvalid, p.HostPort, p.HostIP)
			}
		}
		out = append(out, portMapEntry{
			HostPort:      int(p.HostPort),
			ContainerPort: int(p.ContainerPort),
			Protocol:      proto,
			HostIP:        p.HostIP,
		})
	}
	return out, nil
}
