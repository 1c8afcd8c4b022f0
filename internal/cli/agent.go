package cli

import (
	"fmt"
	"net"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/peapod-dev/peapod/internal/agent"
)

func newAgentCommand(s Streams) *cobra.Command {
	o := agent.DefaultOptions()
	var logLevel string
	cmd := &cobra.Command{
		Use:   "agent --server https://HOST:6443 --token TOKEN",
		Short: "Run a node agent that joins a peapod server and runs the pods bound to its node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(s.Err, logLevel)
			if err != nil {
				return err
			}
			return agent.Run(cmd.Context(), o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Server, "server", o.Server, "URL of the peapod server's API (https://HOST:6443)")
	f.StringVar(&o.Token, "token", o.Token, "the server's node join token (<server-data-dir>/token)")
	f.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory holding this node's credentials, images, containers and logs")
	f.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "the server's pod network (its --cluster-cidr)")
	f.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "the server's service range (its --service-cidr)")
	f.StringVar(&o.ClusterDNS, "cluster-dns", o.ClusterDNS, "the cluster DNS address pods' resolv.conf names (ClusterFirst)")
	addNodeFlags(f, &o)
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// addNodeFlags adds the node settings `peapod agent` and `peapod server` share.
func addNodeFlags(f *pflag.FlagSet, o *agent.Options) {
	f.StringVar(&o.NodeName, "node-name", o.NodeName, "node name (default: the hostname, lower case)")
	f.Var(ipsValue{&o.NodeIPs}, "node-ip", "node address(es), comma-separated (default: the address of the first interface with a global IPv4 address)")
	f.IntVar(&o.KubeletPort, "kubelet-port", o.KubeletPort, "HTTPS port of the node's kubelet API (logs, exec, attach, port-forward)")
	f.StringVar(&o.ContainerRuntime, "container-runtime", o.ContainerRuntime, "OCI runtime: runc, crun or a path to either")
	f.IntVar(&o.MaxPods, "max-pods", o.MaxPods, "most pods this node runs")
	f.StringToStringVar(&o.Labels, "node-label", o.Labels, "extra node labels, key=value (repeatable)")
	f.Var(quantityValue{&o.ContainerLogMaxSize}, "container-log-max-size", "size at which a container's log is rotated (e.g. 10Mi)")
	f.IntVar(&o.ContainerLogMaxFiles, "container-log-max-files", o.ContainerLogMaxFiles, "most log files kept per container, the current one included")
	f.DurationVar(&o.RestartBackOff, "restart-backoff", 0, "first wait before restarting a failed container or pulling again (default 10s; for tests)")
	f.DurationVar(&o.MaxRestartBackOff, "max-restart-backoff", 0, "longest such wait (default 5m; for tests)")
	_ = f.MarkHidden("restart-backoff")
	_ = f.MarkHidden("max-restart-backoff")
	f.StringVar(&o.RegistriesFile, "registries", o.RegistriesFile, "registries.yaml with mirrors, rewrites and credentials (used when it exists)")
}

// ipsValue is a comma-separated list of IP addresses.
type ipsValue struct{ ips *[]net.IP }

func (v ipsValue) String() string {
	if v.ips == nil {
		return ""
	}
	var s []string
	for _, ip := range *v.ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

func (v ipsValue) Set(s string) error {
	for _, part := range strings.Split(s, ",") {
		ip := net.ParseIP(strings.TrimSpace(part))
		if ip == nil {
			return fmt.Errorf("%q is not an IP address", part)
		}
		*v.ips = append(*v.ips, ip)
	}
	return nil
}

func (v ipsValue) Type() string { return "ips" }

// quantityValue is a byte size written as a Kubernetes quantity (10Mi).
type quantityValue struct{ n *int64 }

func (v quantityValue) String() string {
	if v.n == nil {
		return ""
	}
	return resource.NewQuantity(*v.n, resource.BinarySI).String()
}

func (v quantityValue) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return err
	}
	*v.n = q.Value()
	return nil
}

func (v quantityValue) Type() string { return "quantity" }
