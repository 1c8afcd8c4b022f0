package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/peapod-dev/peapod/internal/bench"
)

func newBenchCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark a Kubernetes API server (a peapod server it starts, or any kubeconfig's)",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchAPICommand(s), newBenchCompareCommand(s))
	return cmd
}

func newBenchAPICommand(s Streams) *cobra.Command {
	o := bench.DefaultOptions()
	var out string
	cmd := &cobra.Command{
		Use:   "api",
		Short: "Measure pod create, GET, LIST and watch performance and server memory",
		Long: `Measure an API server's pod handling with client-go: creates per second with
one and with many clients (each on its own connection) and their latencies,
GET latency under load, full LIST time (protobuf and JSON), watch fan-out, and
the server's RSS idle and holding --pods pods.

Without --kubeconfig it starts "BIN server --disable-agent" (BIN: --peapod) in a
temporary data dir on a free loopback port and stops it at the end. With
--kubeconfig, pass --server-pid (and --store-pid for a separate etcd) to get
memory figures; the namespaces it made are deleted at the end unless --keep.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := bench.Run(cmd.Context(), o, s.Err)
			if res == nil {
				return err
			}
			// A result comes with an error only when the cleanup failed:
			// report it all the same.
			return errors.Join(writeBenchResult(s, res, out), err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig of the server to measure; empty starts a peapod server of its own")
	f.IntVar(&o.ServerPID, "server-pid", 0, "PID of the API server, for its memory (known when the benchmark starts the server)")
	f.IntVar(&o.StorePID, "store-pid", 0, "PID of a separate store process (etcd), for its memory")
	f.StringVar(&o.PeapodBin, "peapod", "", "peapod binary to start the server from (default: this binary)")
	f.StringVar(&o.Label, "label", "", `name of this run in reports (default "peapod" for a started server, else the server's URL)`)
	f.IntVar(&o.Pods, "pods", o.Pods, "pods to create in the LIST namespace and LIST")
	f.IntVar(&o.Creates, "creates", o.Creates, "pods to create in each create scenario")
	f.IntVar(&o.Clients, "clients", o.Clients, "concurrent clients, each on its own connection, in the parallel scenarios")
	f.IntVar(&o.ListRuns, "list-runs", o.ListRuns, "full LISTs per content type (the median is reported)")
	f.IntVar(&o.Watchers, "watchers", o.Watchers, "concurrent watches in the fan-out scenario")
	f.IntVar(&o.WatchPods, "watch-pods", o.WatchPods, "pods created while the watchers watch")
	f.BoolVar(&o.Keep, "keep", false, "keep the namespaces (and a started server's data dir) instead of deleting them")
	f.DurationVar(&o.StartTimeout, "start-timeout", o.StartTimeout, "how long a started server may take to become ready")
	f.StringVar(&out, "out", "", `also write the result as JSON to this file ("-": JSON to stdout instead of the table)`)
	return cmd
}

func writeBenchResult(s Streams, res *bench.Result, out string) error {
	if out == "-" {
		return res.WriteJSON(s.Out)
	}
	if err := res.WriteText(s.Out); err != nil {
		return err
	}
	if out == "" {
		return nil
	}
	var b bytes.Buffer
	if err := res.WriteJSON(&b); err != nil {
		return err
	}
	if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(s.Err, "bench: wrote %s\n", out)
	return nil
}

func newBenchCompareCommand(s Streams) *cobra.Command {
	var markdown bool
	cmd := &cobra.Command{
		Use:   "compare A.json[,A2.json...] B.json[,B2.json...]",
		Short: "Print `bench api --out` results side by side with their ratios (A/B)",
		Long: `Print two sides' results side by side with the ratio A/B of every figure.
A side may name several results, comma-separated (rounds of the same runs):
its figures are then the medians over them.`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			var sides [2][]*bench.Result
			var errs []error
			for i, arg := range args {
				for _, path := range strings.Split(arg, ",") {
					r, err := bench.ReadResult(path)
					if err != nil {
						errs = append(errs, err)
						continue
					}
					sides[i] = append(sides[i], r)
				}
			}
			if err := errors.Join(errs...); err != nil {
				return err
			}
			return bench.WriteComparison(s.Out, sides[0], sides[1], markdown)
		},
	}
	cmd.Flags().BoolVar(&markdown, "markdown", false, "print a Markdown table")
	return cmd
}
