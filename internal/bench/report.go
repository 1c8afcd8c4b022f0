package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is everything one `peapod bench api` run measured. Its JSON form is
// what --out writes and `peapod bench compare` reads.
type Result struct {
	Label         string    `json:"label"`
	Server        string    `json:"server"`
	ServerVersion string    `json:"server_version"`
	Started       time.Time `json:"started"`
	Host          Host      `json:"host"`
	Config        Config    `json:"config"`

	// CreateSerial is one client creating Config.Creates pods one after the other.
	CreateSerial Throughput `json:"create_serial"`
	// CreateParallel is Config.Clients clients, each on its own connection,
	// creating Config.Creates pods between them.
	CreateParallel Throughput `json:"create_parallel"`
	// GetDuringLoad is a separate client GETting one pod in a loop while
	// CreateParallel runs.
	GetDuringLoad Latency `json:"get_during_parallel_create"`
	// DeleteCollection is the deletion, by deletecollection calls, of the pods
	// the two create scenarios made.
	DeleteCollection Throughput `json:"delete_collection"`
	// Fill is the parallel creation of the LIST namespace's pods.
	Fill  Throughput `json:"fill"`
	List  List       `json:"list"`
	Watch Watch      `json:"watch"`
	// Memory holds the resident set sizes sampled during the run.
	Memory []MemorySample `json:"memory,omitempty"`
	// Duration is the whole run's wall time, server start-up excluded.
	DurationSeconds float64 `json:"duration_seconds"`
	// LoadStart and LoadEnd are the machine's load averages (1, 5, 15
	// minutes) when the run started and ended: other work on the machine
	// skews the figures.
	LoadStart string `json:"load_start,omitempty"`
	LoadEnd   string `json:"load_end,omitempty"`
}

// Host describes the machine the benchmark ran on.
type Host struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model,omitempty"`
	MemMiB   int64  `json:"mem_mib,omitempty"`
	OS       string `json:"os"`
	Kernel   string `json:"kernel,omitempty"`
	GoClient string `json:"go_client"`
}

// Config is the run's parameters.
type Config struct {
	Creates   int `json:"creates"`
	Clients   int `json:"clients"`
	ListPods  int `json:"list_pods"`
	ListRuns  int `json:"list_runs"`
	Watchers  int `json:"watchers"`
	WatchPods int `json:"watch_pods"`
}

// Throughput is a batch of requests of one kind.
type Throughput struct {
	Clients   int     `json:"clients"`
	Count     int     `json:"count"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	Latency   Latency `json:"latency"`
	// ServerCPUSeconds is the CPU time the server (and its separate store,
	// when known) used during the batch; 0 when their PIDs are unknown. Per
	// request it is a measure of efficiency that other work on the machine
	// skews far less than throughput.
	ServerCPUSeconds float64 `json:"server_cpu_seconds,omitempty"`
}

// cpuPerRequest is t's server CPU time per request, in milliseconds.
func (t Throughput) cpuPerRequest() (float64, bool) {
	if t.Count == 0 || t.ServerCPUSeconds <= 0 {
		return 0, false
	}
	return t.ServerCPUSeconds * 1000 / float64(t.Count), true
}

// List is the time of full (unpaginated) LISTs of the LIST namespace's pods:
// consistent reads (no resourceVersion) in protobuf and JSON, and protobuf
// reads at resourceVersion=0 (served from the watch cache).
type List struct {
	Items            int     `json:"items"`
	ProtobufMedianMs float64 `json:"protobuf_median_ms"`
	ProtobufMinMs    float64 `json:"protobuf_min_ms"`
	// ProtobufFirstMs is the run's first protobuf LIST, the one a server
	// that caches encoded items (peapod) answers without its cache.
	ProtobufFirstMs     float64 `json:"protobuf_first_ms,omitempty"`
	JSONMedianMs        float64 `json:"json_median_ms"`
	JSONMinMs           float64 `json:"json_min_ms"`
	ProtobufRV0MedianMs float64 `json:"protobuf_rv0_median_ms"`
	ProtobufRV0MinMs    float64 `json:"protobuf_rv0_min_ms"`
}

// Watch is the watch fan-out scenario: Watchers watches on one namespace while
// Pods pods are created in it.
type Watch struct {
	Watchers int `json:"watchers"`
	Pods     int `json:"pods"`
	// Events is the number of ADDED events delivered across all watchers.
	Events int `json:"events"`
	// CreateSeconds is how long creating the pods took.
	CreateSeconds float64 `json:"create_seconds"`
	// LastEventSeconds is the time from the first create until the last watcher
	// received the last event.
	LastEventSeconds float64 `json:"last_event_seconds"`
	// EventsPerSecond is Events / LastEventSeconds.
	EventsPerSecond float64 `json:"events_per_second"`
	// LagAfterLastCreateMs is how long after the last create returned the last
	// watcher received its last event (0 when that was before).
	LagAfterLastCreateMs float64 `json:"lag_after_last_create_ms"`
	// Delivery is the per-event delay from its create call returning to each
	// watcher receiving it (negative delays, events that beat their create's
	// response, count as 0).
	Delivery Latency `json:"delivery"`
}

// MemorySample is the resident set size of the server (and, when known, of its
// separate store process) at one point of the run.
type MemorySample struct {
	When         string `json:"when"`
	Pods         int    `json:"pods"`
	ServerRSSKiB int64  `json:"server_rss_kib,omitempty"`
	ServerHWMKiB int64  `json:"server_hwm_kib,omitempty"`
	// ServerAnonKiB is the anonymous part of the server's RSS (heap, stacks):
	// the rest is pages of its binary mapped from the page cache.
	ServerAnonKiB int64 `json:"server_anon_kib,omitempty"`
	StoreRSSKiB   int64 `json:"store_rss_kib,omitempty"`
	StoreHWMKiB   int64 `json:"store_hwm_kib,omitempty"`
}

// WriteJSON writes r, indented, to w.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadResult reads a Result written by WriteJSON from path.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// metric is one row of a report: a name, a unit, whether more is better, and
// how to read its value from a Result (ok false when it was not measured).
type metric struct {
	name           string
	unit           string
	higherIsBetter bool
	value          func(*Result) (v float64, ok bool)
}

func positive(v float64) (float64, bool) { return v, v > 0 }

func mib(kib int64) (float64, bool) { return float64(kib) / 1024, kib > 0 }

func memory(when string, store, hwm bool) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		for _, m := range r.Memory {
			if m.When != when {
				continue
			}
			switch {
			case store && hwm:
				return mib(m.StoreHWMKiB)
			case store:
				return mib(m.StoreRSSKiB)
			case hwm:
				return mib(m.ServerHWMKiB)
			default:
				return mib(m.ServerRSSKiB)
			}
		}
		return 0, false
	}
}

// anonMemory is the anonymous part of the server's RSS at when.
func anonMemory(when string) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		for _, m := range r.Memory {
			if m.When == when {
				return mib(m.ServerAnonKiB)
			}
		}
		return 0, false
	}
}

// totalMemory is the server's RSS plus, when it runs apart (etcd), the
// store's: what a peapod server, store inside, compares with a kube-apiserver
// and its etcd.
func totalMemory(when string) func(*Result) (float64, bool) {
	return func(r *Result) (float64, bool) {
		for _, m := range r.Memory {
			if m.When == when && m.ServerRSSKiB > 0 {
				return mib(m.ServerRSSKiB + m.StoreRSSKiB)
			}
		}
		return 0, false
	}
}

// Memory sample names.
const (
	memIdle   = "idle"
	memLoaded = "loaded"
	memEnd    = "end"
)

func metrics(r *Result) []metric {
	c := r.Config
	return []metric{
		{fmt.Sprintf("create, 1 client (%d pods)", c.Creates), "pods/s", true, func(r *Result) (float64, bool) { return positive(r.CreateSerial.PerSecond) }},
		{"  create latency p50, 1 client", "ms", false, func(r *Result) (float64, bool) { return positive(r.CreateSerial.Latency.P50Ms) }},
		{"  create latency p99, 1 client", "ms", false, func(r *Result) (float64, bool) { return positive(r.CreateSerial.Latency.P99Ms) }},
		{"  server CPU per create, 1 client", "ms", false, func(r *Result) (float64, bool) { return r.CreateSerial.cpuPerRequest() }},
		{fmt.Sprintf("create, %d clients (%d pods)", c.Clients, c.Creates), "pods/s", true, func(r *Result) (float64, bool) { return positive(r.CreateParallel.PerSecond) }},
		{fmt.Sprintf("  create latency p50, %d clients", c.Clients), "ms", false, func(r *Result) (float64, bool) { return positive(r.CreateParallel.Latency.P50Ms) }},
		{fmt.Sprintf("  create latency p99, %d clients", c.Clients), "ms", false, func(r *Result) (float64, bool) { return positive(r.CreateParallel.Latency.P99Ms) }},
		{fmt.Sprintf("  server CPU per create, %d clients", c.Clients), "ms", false, func(r *Result) (float64, bool) { return r.CreateParallel.cpuPerRequest() }},
		{fmt.Sprintf("GET one pod p50, during %d-client create", c.Clients), "ms", false, func(r *Result) (float64, bool) { return positive(r.GetDuringLoad.P50Ms) }},
		{fmt.Sprintf("GET one pod p99, during %d-client create", c.Clients), "ms", false, func(r *Result) (float64, bool) { return positive(r.GetDuringLoad.P99Ms) }},
		{fmt.Sprintf("deletecollection (%d pods)", r.DeleteCollection.Count), "pods/s", true, func(r *Result) (float64, bool) { return positive(r.DeleteCollection.PerSecond) }},
		{fmt.Sprintf("fill LIST namespace, %d clients (%d pods)", r.Fill.Clients, r.Fill.Count), "pods/s", true, func(r *Result) (float64, bool) { return positive(r.Fill.PerSecond) }},
		{fmt.Sprintf("LIST %d pods, protobuf (median of %d)", r.List.Items, c.ListRuns), "ms", false, func(r *Result) (float64, bool) { return positive(r.List.ProtobufMedianMs) }},
		{fmt.Sprintf("LIST %d pods, protobuf, first of the run", r.List.Items), "ms", false, func(r *Result) (float64, bool) { return positive(r.List.ProtobufFirstMs) }},
		{fmt.Sprintf("LIST %d pods, JSON (median of %d)", r.List.Items, c.ListRuns), "ms", false, func(r *Result) (float64, bool) { return positive(r.List.JSONMedianMs) }},
		{fmt.Sprintf("LIST %d pods, protobuf, resourceVersion=0 (median of %d)", r.List.Items, c.ListRuns), "ms", false, func(r *Result) (float64, bool) { return positive(r.List.ProtobufRV0MedianMs) }},
		{fmt.Sprintf("watch fan-out: %d watchers x %d pods, events delivered", c.Watchers, c.WatchPods), "events/s", true, func(r *Result) (float64, bool) { return positive(r.Watch.EventsPerSecond) }},
		{"  first create to last event at last watcher", "ms", false, func(r *Result) (float64, bool) { return positive(r.Watch.LastEventSeconds * 1000) }},
		{"  last create returned to last event delivered", "ms", false, func(r *Result) (float64, bool) { return r.Watch.LagAfterLastCreateMs, r.Watch.Events > 0 }},
		{"  event delivery delay p99", "ms", false, func(r *Result) (float64, bool) { return r.Watch.Delivery.P99Ms, r.Watch.Delivery.Samples > 0 }},
		{"server RSS, idle", "MiB", false, memory(memIdle, false, false)},
		{fmt.Sprintf("server RSS, holding %d pods", c.ListPods), "MiB", false, memory(memLoaded, false, false)},
		{"  of which anonymous (heap, stacks), idle", "MiB", false, anonMemory(memIdle)},
		{fmt.Sprintf("  of which anonymous, holding %d pods", c.ListPods), "MiB", false, anonMemory(memLoaded)},
		{"server peak RSS (VmHWM), end of run", "MiB", false, memory(memEnd, false, true)},
		{"total RSS (server + separate store), idle", "MiB", false, totalMemory(memIdle)},
		{fmt.Sprintf("total RSS (server + separate store), holding %d pods", c.ListPods), "MiB", false, totalMemory(memLoaded)},
		{"store RSS, idle", "MiB", false, memory(memIdle, true, false)},
		{fmt.Sprintf("store RSS, holding %d pods", c.ListPods), "MiB", false, memory(memLoaded, true, false)},
		{"store peak RSS (VmHWM), end of run", "MiB", false, memory(memEnd, true, true)},
	}
}

// formatValue renders v with a precision that suits its size.
func formatValue(v float64) string {
	switch a := abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// WriteText writes r as a human-readable table to w.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "peapod bench api: %s\n", r.Label)
	fmt.Fprintf(&b, "  server:  %s (%s)\n", r.Server, r.ServerVersion)
	fmt.Fprintf(&b, "  host:    %s\n", r.Host)
	fmt.Fprintf(&b, "  started: %s, took %.1fs\n", r.Started.Format(time.RFC3339), r.DurationSeconds)
	if r.LoadStart != "" {
		fmt.Fprintf(&b, "  load:    %s at start, %s at end\n", r.LoadStart, r.LoadEnd)
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "METRIC\tVALUE\tUNIT")
	for _, m := range metrics(r) {
		v, ok := m.value(r)
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", m.name, formatValue(v), m.unit)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (h Host) String() string {
	s := fmt.Sprintf("%d CPUs", h.CPUs)
	if h.CPUModel != "" {
		s += " (" + h.CPUModel + ")"
	}
	if h.MemMiB > 0 {
		s += fmt.Sprintf(", %d MiB RAM", h.MemMiB)
	}
	s += ", " + h.OS
	if h.Kernel != "" {
		s += " " + h.Kernel
	}
	return s + ", client " + h.GoClient
}

// WriteComparison writes a table of a's and b's figures side by side with the
// ratio a/b to w, as a Markdown table when markdown is set. The ratio is
// annotated "better" or "worse" from a's point of view. a and b may each hold
// several runs (rounds) of the same configuration: each figure is then the
// median over the runs that measured it.
func WriteComparison(w io.Writer, a, b []*Result, markdown bool) error {
	if len(a) == 0 || len(b) == 0 {
		return errors.New("compare: no results")
	}
	var buf strings.Builder
	var tw *tabwriter.Writer
	row := func(cells ...string) {
		if markdown {
			fmt.Fprintf(&buf, "| %s |\n", strings.Join(cells, " | "))
			return
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if !markdown {
		tw = tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	}
	la, lb := a[0].Label, b[0].Label
	row("metric", "unit", sideLabel(a), sideLabel(b), la+" / "+lb)
	if markdown {
		row("---", "---", "---:", "---:", "---:")
	}
	for i, m := range metrics(a[0]) {
		va, oka := medianMetric(a, i)
		vb, okb := medianMetric(b, i)
		if !oka && !okb {
			continue
		}
		cell := func(v float64, ok bool) string {
			if !ok {
				return "n/a"
			}
			return formatValue(v)
		}
		ratio := "n/a"
		if oka && okb && vb != 0 {
			q := va / vb
			ratio = fmt.Sprintf("%.2fx", q)
			switch {
			case ratio == "1.00x":
			case (q > 1) == m.higherIsBetter:
				ratio += " (better)"
			default:
				ratio += " (worse)"
			}
		}
		name := m.name
		if markdown {
			name = strings.TrimLeft(name, " ")
			if strings.HasPrefix(m.name, "  ") {
				name = "↳ " + name
			}
		}
		row(name, m.unit, cell(va, oka), cell(vb, okb), ratio)
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, buf.String())
	return err
}

func sideLabel(rs []*Result) string {
	if len(rs) == 1 {
		return rs[0].Label
	}
	return fmt.Sprintf("%s (median of %d)", rs[0].Label, len(rs))
}

// medianMetric is the median of metric i over the results that measured it.
func medianMetric(rs []*Result, i int) (float64, bool) {
	var vs []float64
	for _, r := range rs {
		if v, ok := metrics(r)[i].value(r); ok {
			vs = append(vs, v)
		}
	}
	if len(vs) == 0 {
		return 0, false
	}
	slices.Sort(vs)
	n := len(vs)
	if n%2 == 1 {
		return vs[n/2], true
	}
	return (vs[n/2-1] + vs[n/2]) / 2, true
}
