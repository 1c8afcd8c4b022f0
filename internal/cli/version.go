package cli

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/component-base/version"
)

func newVersionCommand(s Streams) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print peapod's version and the Kubernetes version it implements",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			v := version.Get()
			_, err := fmt.Fprintf(s.Out, "peapod %s (Kubernetes %s, %s, %s)\n", v.GitVersion, v.Major+"."+v.Minor, v.GoVersion, v.Platform)
			return err
		},
	}
}
