// Package cli is peapod's command line: it parses flags into option structs and
// hands them to the component packages through the composition root. It holds no
// behaviour of its own beyond that.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// Streams are the standard streams a command uses.
type Streams struct {
	In  io.Reader
	Out io.Writer
	Err io.Writer
}

// exitError carries a child's exit status (kubectl's) up to main.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// ExitCode is the process exit status for err returned by Run.
func ExitCode(err error) int {
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// Run executes the peapod command line args.
func Run(ctx context.Context, args []string, s Streams) error {
	// kubectl owns its whole argument list, flags included.
	if len(args) > 0 && args[0] == "kubectl" {
		return runKubectl(ctx, args[1:], s)
	}
	root := &cobra.Command{
		Use:           "peapod",
		Short:         "peapod: Kubernetes pods in one binary",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetIn(s.In)
	root.SetOut(s.Out)
	root.SetErr(s.Err)
	root.AddCommand(
		newServerCommand(s),
		newAgentCommand(s),
		newResetCommand(s),
		newVersionCommand(s),
		newImageCommand(s),
		&cobra.Command{
			Use:                "kubectl",
			Short:              "Run the embedded kubectl against this machine's peapod server",
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, a []string) error {
				return runKubectl(cmd.Context(), a, s)
			},
		},
	)
	root.AddCommand(newBenchCommand(s))
	return root.ExecuteContext(ctx)
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	switch strings.ToLower(level) {
	case "debug":
		l = slog.LevelDebug
	case "info", "":
		l = slog.LevelInfo
	case "warn", "warning":
		l = slog.LevelWarn
	case "error":
		l = slog.LevelError
	default:
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
