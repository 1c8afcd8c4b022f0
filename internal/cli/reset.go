package cli

import (
	"github.com/spf13/cobra"

	"github.com/peapod-dev/peapod/internal/agent"
	"github.com/peapod-dev/peapod/internal/server"
)

func newResetCommand(s Streams) *cobra.Command {
	dataDir := server.DefaultDataDir
	cmd := &cobra.Command{
		Use:   "reset",
		Short: "Stop and remove everything the server and agent of a data dir made on this machine, then the data dir",
		Long: "reset stops the peapod process of the data dir, removes its containers, volumes' mounts, pod network " +
			"(namespaces, bridge, firewall rules, and the unreachable routes when no other node on this machine needs them) " +
			"and pod cgroups, then deletes the data dir. Nodes of other data dirs are left alone.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(s.Err, "info")
			if err != nil {
				return err
			}
			return agent.Reset(cmd.Context(), dataDir, log)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", dataDir, "data dir of the server or agent to reset")
	return cmd
}
