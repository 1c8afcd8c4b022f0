package network

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

func TestBridgeName(t *testing.T) {
	a, b := BridgeName("node-a"), BridgeName("node-b")
	if a == b {
		t.Fatalf("two nodes share bridge %s", a)
	}
	for _, n := range []string{a, b, BridgeName(""), BridgeName(strings.Repeat("x", 253))} {
		if len(n) > 15 || len(n) != 13 || !strings.HasPrefix(n, BridgePrefix) {
			t.Errorf("bridge name %q: want %q and 10 hex digits", n, BridgePrefix)
		}
	}
	if BridgeName("node-a") != a {
		t.Error("bridge name is not stable")
	}
	// sha256("node-a") starts with these bytes; the MAC carries them too.
	mac := bridgeMAC("node-a")
	if mac[0] != 0x02 || mac.String()[3:] != strings.Join([]string{a[3:5], a[5:7], a[7:9], a[9:11], a[11:13]}, ":") {
		t.Errorf("bridge MAC %s does not match bridge %s", mac, a)
	}
}

func TestParseConfig(t *testing.T) {
	ok := Config{NodeName: "n", PodCIDR: "10.42.3.0/24", StateDir: "/var/lib/peapod/network"}
	s, err := parseConfig(ok)
	if err != nil {
		t.Fatal(err)
	}
	if s.gateway.String() != "10.42.3.1" || s.cluster.String() != DefaultClusterCIDR || s.service.String() != DefaultServiceCIDR {
		t.Errorf("derived gateway %s cluster %s service %s", s.gateway, s.cluster, s.service)
	}
	if len(s.PluginDirs) != 2 || s.Logger == nil || s.name != BridgeName("n") {
		t.Errorf("defaults not applied: %+v", s)
	}
	for name, mod := range map[string]func(*Config){
		"no node":            func(c *Config) { c.NodeName = "" },
		"relative state":     func(c *Config) { c.StateDir = "state" },
		"no pod cidr":        func(c *Config) { c.PodCIDR = "" },
		"host bits":          func(c *Config) { c.PodCIDR = "10.42.3.1/24" },
		"ipv6":               func(c *Config) { c.PodCIDR = "fd00::/64" },
		"tiny":               func(c *Config) { c.PodCIDR = "10.42.3.0/31" },
		"outside cluster":    func(c *Config) { c.PodCIDR = "10.50.3.0/24" },
		"service in cluster": func(c *Config) { c.ServiceCIDR = "10.42.128.0/17" },
		"mtu":                func(c *Config) { c.MTU = 100 },
	} {
		c := ok
		mod(&c)
		if _, err := parseConfig(c); err == nil {
			t.Errorf("%s: accepted %+v", name, c)
		}
	}
}

func TestConflist(t *testing.T) {
	s, err := parseConfig(Config{NodeName: "n", PodCIDR: "10.42.3.0/24", StateDir: "/st", MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.NetworkConfFromBytes(s.conflist())
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != BridgeName("n") || list.CNIVersion != "1.0.0" {
		t.Errorf("name %q version %q", list.Name, list.CNIVersion)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	if strings.Join(types, ",") != "bridge,portmap,loopback" {
		t.Errorf("plugins %v", types)
	}
	if !list.Plugins[1].Network.Capabilities["portMappings"] {
		t.Error("portmap lacks the portMappings capability")
	}
	var br struct {
		Bridge      string `json:"bridge"`
		IsGateway   bool   `json:"isGateway"`
		IPMasq      bool   `json:"ipMasq"`
		HairpinMode bool   `json:"hairpinMode"`
		MTU         int    `json:"mtu"`
		IPAM        struct {
			Type    string `json:"type"`
			DataDir string `json:"dataDir"`
			Ranges  [][]struct {
				Subnet, Gateway string
			} `json:"ranges"`
			Routes []struct{ Dst string } `json:"routes"`
		} `json:"ipam"`
	}
	if err := json.Unmarshal(list.Plugins[0].Bytes, &br); err != nil {
		t.Fatal(err)
	}
	if br.Bridge != s.name || !br.IsGateway || !br.IPMasq || !br.HairpinMode || br.MTU != 1400 {
		t.Errorf("bridge config %+v", br)
	}
	if br.IPAM.Type != "host-local" || br.IPAM.DataDir != "/st/ipam" ||
		len(br.IPAM.Ranges) != 1 || br.IPAM.Ranges[0][0].Subnet != "10.42.3.0/24" || br.IPAM.Ranges[0][0].Gateway != "10.42.3.1" ||
		len(br.IPAM.Routes) != 1 || br.IPAM.Routes[0].Dst != "0.0.0.0/0" {
		t.Errorf("ipam config %+v", br.IPAM)
	}
	s.MTU = 0
	if strings.Contains(string(s.conflist()), "mtu") {
		t.Error("MTU 0 should leave the plugin default")
	}
}

func TestPortMappings(t *testing.T) {
	got, err := portMappings([]PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
		{HostPort: 0, ContainerPort: 81}, // no host port: not forwarded
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
		{HostPort: 9000, ContainerPort: 9000},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []portMapEntry{{8080, 80, "tcp", ""}, {5353, 53, "udp", "127.0.0.1"}, {9000, 9000, "tcp", ""}}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	for _, bad := range []PortMapping{
		{HostPort: 70000, ContainerPort: 80},
		{HostPort: 80, ContainerPort: 0},
		{HostPort: 80, ContainerPort: 80, Protocol: "icmp"},
		{HostPort: 80, ContainerPort: 80, HostIP: "::1"},
	} {
		if _, err := portMappings([]PortMapping{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: got %v, want ErrInvalid", bad, err)
		}
	}
}

func TestValidateID(t *testing.T) {
	for _, id := range []string{"", "../x", "a/b", ".hidden", "a b"} {
		if err := validateID(id); !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: got %v, want ErrInvalid", id, err)
		}
	}
	if err := validateID("0123abcdef_x.y-z"); err != nil {
		t.Error(err)
	}
}

const sampleSave = `# Generated by iptables-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
-A INPUT -m comment --comment "name: \"pp-aaaa\" id: \"s1\"" -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-1111 - [0:0]
:CNI-2222 - [0:0]
:CNI-DN-1111 - [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 10.42.1.2/32 -m comment --comment "name: \"pp-aaaa\" id: \"s1\"" -j CNI-1111
-A POSTROUTING -s 10.42.2.2/32 -m comment --comment "name: \"pp-bbbb\" id: \"s9\"" -j CNI-2222
-A CNI-1111 -d 10.42.1.0/24 -m comment --comment "name: \"pp-aaaa\" id: \"s1\"" -j ACCEPT
-A CNI-1111 ! -d 224.0.0.0/4 -m comment --comment "name: \"pp-aaaa\" id: \"s1\"" -j MASQUERADE
-A CNI-2222 ! -d 224.0.0.0/4 -m comment --comment "name: \"pp-bbbb\" id: \"s9\"" -j MASQUERADE
-A CNI-DN-1111 -s 10.42.1.0/24 -p tcp -m tcp --dport 8080 -j CNI-HOSTPORT-SETMARK
-A CNI-DN-1111 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.42.1.2:80
-A CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"pp-aaaa\" id: \"s1\"" -m multiport --dports 8080 -j CNI-DN-1111
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
`

func TestSweepScript(t *testing.T) {
	want := `*nat
-D POSTROUTING -s 10.42.1.2/32 -m comment --comment "name: \"pp-aaaa\" id: \"s1\"" -j CNI-1111
-D CNI-HOSTPORT-DNAT -p tcp -m comment --comment "dnat name: \"pp-aaaa\" id: \"s1\"" -m multiport --dports 8080 -j CNI-DN-1111
-F CNI-1111
-F CNI-DN-1111
-X CNI-1111
-X CNI-DN-1111
COMMIT
`
	for _, id := range []string{"", "s1"} {
		if got := string(sweepScript([]byte(sampleSave), "pp-aaaa", id)); got != want {
			t.Errorf("sweep of pp-aaaa id %q:\n%s\nwant:\n%s", id, got, want)
		}
	}
	if got := sweepScript([]byte(sampleSave), "pp-aaaa", "s2"); got != nil {
		t.Errorf("sweep of an unknown sandbox: %s", got)
	}
	if got := sweepScript([]byte(sampleSave), "pp-cccc", ""); got != nil {
		t.Errorf("sweep of an unknown network: %s", got)
	}
	got := string(sweepScript([]byte(sampleSave), "pp-bbbb", ""))
	if strings.Contains(got, "pp-aaaa") || strings.Contains(got, "HOSTPORT") || !strings.Contains(got, "-X CNI-2222") {
		t.Errorf("sweep of pp-bbbb:\n%s", got)
	}
}

func TestSharedSweepScript(t *testing.T) {
	// In use: CNI-HOSTPORT-DNAT has a sandbox's jump.
	if got := sharedSweepScript([]byte(sampleSave)); got != nil {
		t.Errorf("shared chains in use were swept:\n%s", got)
	}
	unused := `*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:CNI-HOSTPORT-DNAT - [0:0]
:CNI-HOSTPORT-MASQ - [0:0]
:CNI-HOSTPORT-SETMARK - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-A POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-A POSTROUTING -s 10.0.0.0/8 -j MASQUERADE
-A CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE
-A CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" -j MARK --set-xmark 0x2000/0x2000
COMMIT
`
	want := `*nat
-D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT
-D POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ
-F CNI-HOSTPORT-DNAT
-F CNI-HOSTPORT-SETMARK
-F CNI-HOSTPORT-MASQ
-X CNI-HOSTPORT-DNAT
-X CNI-HOSTPORT-SETMARK
-X CNI-HOSTPORT-MASQ
COMMIT
`
	if got := string(sharedSweepScript([]byte(unused))); got != want {
		t.Errorf("sweep of unused shared chains:\n%s\nwant:\n%s", got, want)
	}
	// A leftover sandbox chain of some CNI user still marks through SETMARK.
	inUse := strings.Replace(unused, "COMMIT", ":CNI-DN-9999 - [0:0]\n-A CNI-DN-9999 -j CNI-HOSTPORT-SETMARK\nCOMMIT", 1)
	if got := sharedSweepScript([]byte(inUse)); got != nil {
		t.Errorf("shared chains referenced by a sandbox chain were swept:\n%s", got)
	}
	if got := sharedSweepScript([]byte("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n")); got != nil {
		t.Errorf("sweep without shared chains: %s", got)
	}
}
