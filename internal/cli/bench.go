package cli

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/peapod-dev/peapod/internal/bench"
)

func newBenchCommand(s Streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Benchmark a Kubernetes API server (a peapod server it starts, or any kubeconfig's) and a node's pods",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newBenchAPICommand(s), newBenchCompareCommand(s), newBenchPodsCommand(s))
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

Without --kubeconfig it starts "BIN server --disable-agent --disable-scheduler" (BIN: --peapod) in a
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

func newBenchPodsCommand(s Streams) *cobra.Command {
	o := bench.DefaultPodsOptions()
	var out, from string
	var markdown bool
	cmd := &cobra.Command{
		Use:   "pods",
		Short: "Measure how fast a node starts and deletes pods and what they cost it in memory, against podman",
		Long: `Measure a peapod node's pods with client-go watches: create-to-Running and
create-to-Ready latency of --count pods created one after another and of
batches created at once (--parallel), deletion latency, and the memory each
running pod costs the node (PSS of its conmons and infra process, plus the
agent's growth). With --podman, the same pods go through "podman kube play"
too, on podman's own storage in a temporary directory and in namespaces of
its own, and the table shows both.

--kubeconfig names a running peapod server whose node runs the pods (see
hack/bench-pods.sh, which starts one); without it only podman is measured.
--from prints the table of earlier runs' --out files instead of measuring:
with several (rounds of the same runs), each figure is their median.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from != "" {
				return reportPods(s, from, out, markdown)
			}
			if o.DataDir == "" && o.Kubeconfig != "" {
				o.DataDir = filepath.Dir(o.Kubeconfig)
			}
			res, err := bench.RunPods(cmd.Context(), o, s.Err)
			if res == nil {
				return err
			}
			// Report what was measured even when a system failed.
			return errors.Join(writePodsResult(s, res, out, markdown), err)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Kubeconfig, "kubeconfig", "", "admin kubeconfig of the peapod server whose node runs the pods; empty measures only --podman")
	f.StringVar(&o.Node, "node", "", "node to wait for until it is Ready (default: any)")
	f.IntVar(&o.AgentPID, "agent-pid", 0, "PID of the process running the node agent (peapod server, or agent), for its memory")
	f.StringVar(&o.AgentLabel, "agent-label", "", `what that process is, for the report (e.g. "peapod server: control plane + agent")`)
	f.StringVar(&o.DataDir, "data-dir", "", "the agent's data dir, to find its pods' conmon processes (default: the kubeconfig's directory)")
	f.IntVar(&o.Count, "count", o.Count, "pods created one after another (and running when memory is sampled)")
	f.IntSliceVar(&o.AtOnce, "parallel", o.AtOnce, "sizes of the batches of pods created at once")
	f.IntVar(&o.DeleteCount, "delete-count", o.DeleteCount, "how many of the --count pods are deleted one after another (the rest at once, not measured)")
	f.StringVar(&o.Podman, "podman", "", `podman binary to measure as the peer (e.g. "podman"); empty for none`)
	f.StringVar(&o.Image, "image", "", "busybox:1.36 image archive for podman to load (hack/busybox-image.sh makes one)")
	f.DurationVar(&o.Timeout, "timeout", o.Timeout, "how long each batch may take")
	f.StringVar(&out, "out", "", `also write the result as JSON to this file ("-": JSON to stdout instead of the table)`)
	f.BoolVar(&markdown, "markdown", false, "print the table as Markdown")
	f.StringVar(&from, "from", "", "measure nothing: print the table of these --out files (comma-separated rounds: medians)")
	return cmd
}

// reportPods prints the table of the results in the comma-separated files,
// their medians when there are several.
func reportPods(s Streams, files, out string, markdown bool) error {
	var rs []*bench.PodsResult
	var errs []error
	for _, path := range strings.Split(files, ",") {
		r, err := bench.ReadPodsResult(path)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		rs = append(rs, r)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	res, err := bench.MedianPodsResults(rs)
	if err != nil {
		return err
	}
	return writePodsResult(s, res, out, markdown)
}

func writePodsResult(s Streams, res *bench.PodsResult, out string, markdown bool) error {
	if out == "-" {
		return res.WriteJSON(s.Out)
	}
	if err := res.WriteText(s.Out, markdown); err != nil {
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
	fmt.Fprintf(s.Err, "bench pods: wrote %s\n", out)
	return nil
}
