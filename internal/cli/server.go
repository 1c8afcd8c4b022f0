package cli

import (
	"github.com/spf13/cobra"

	"github.com/peapod-dev/peapod/internal/server"
)

func newServerCommand(s Streams) *cobra.Command {
	o := server.DefaultOptions()
	var logLevel string
	cmd := &cobra.Command{
		Use:   "server",
		Short: "Run the control plane (API server, store, controllers) and, unless --disable-agent, a node agent",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(s.Err, logLevel)
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory holding the store, certificates, token and admin kubeconfig")
	f.IntVar(&o.HTTPSPort, "https-listen-port", o.HTTPSPort, "HTTPS port of the Kubernetes API")
	f.StringVar(&o.BindAddress, "bind-address", o.BindAddress, "address the Kubernetes API listens on")
	f.BoolVar(&o.DisableAgent, "disable-agent", o.DisableAgent, "run no node agent in this process (control plane only)")
	f.BoolVar(&o.DisableScheduler, "disable-scheduler", o.DisableScheduler, "run no scheduler in this process")
	f.StringVar(&o.DatastoreEndpoint, "datastore-endpoint", o.DatastoreEndpoint,
		"store: empty for the embedded store in the data dir; etcd://host:port[,...] is reserved for the etcd backend, which is not available yet")
	f.StringVar(&o.Token, "token", o.Token, "node join token (generated on first start and written to <data-dir>/token when empty)")
	f.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "pod network; each node gets a /24 of it")
	f.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "range ClusterIPs are allocated from; its first address is the kubernetes Service")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.BoolVar(&o.Profiling, "profiling", false, "serve /debug/pprof on the API port to authenticated clients")
	addNodeFlags(f, &o.Agent)
	return cmd
}
