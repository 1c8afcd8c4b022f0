package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	"github.com/peapod-dev/peapod/internal/server"
)

// runKubectl runs the real kubectl (k8s.io/kubectl) with args, exactly as the
// kubectl binary's main does: it owns the process's streams and exit status. Unless
// KUBECONFIG or --kubeconfig says otherwise it uses the admin kubeconfig of the
// server whose data dir is given by --data-dir (consumed here) or the default one.
func runKubectl(_ context.Context, args []string, _ Streams) error {
	dataDir := server.DefaultDataDir
	var rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i:]...)
			i = len(args)
		case a == "--data-dir" && i+1 < len(args):
			dataDir = args[i+1]
			i++
		case strings.HasPrefix(a, "--data-dir="):
			dataDir = strings.TrimPrefix(a, "--data-dir=")
		default:
			rest = append(rest, a)
		}
	}
	if os.Getenv("KUBECONFIG") == "" {
		_ = os.Setenv("KUBECONFIG", filepath.Join(dataDir, server.AdminKubeconfigName))
	}
	os.Args = append([]string{"kubectl"}, rest...)
	cmd := kubectlcmd.NewDefaultKubectlCommand()
	cmd.SetArgs(rest)
	if err := cli.RunNoErrOutput(cmd); err != nil {
		util.CheckErr(err) // prints as kubectl does and exits with its status
	}
	return nil
}
