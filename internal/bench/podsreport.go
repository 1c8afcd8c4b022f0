package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// PodsResult is everything one `peapod bench pods` run measured, for each
// system (peapod, and podman as the peer). Its JSON form is what --out
// writes.
type PodsResult struct {
	Started time.Time `json:"started"`
	Host    Host      `json:"host"`
	// Count is the number of pods created one after another, DeleteCount
	// how many of them were deleted one after another; AtOnce the sizes of
	// the batches created at once.
	Count       int           `json:"count"`
	DeleteCount int           `json:"delete_count"`
	AtOnce      []int         `json:"at_once"`
	Systems     []*PodsSystem `json:"systems"`
	// Pod describes the benchmark's pod.
	Pod string `json:"pod"`
	// Rounds is the number of runs whose medians these figures are (0 or
	// 1: a single run).
	Rounds int `json:"rounds,omitempty"`
	// Errors holds each failed system's error.
	Errors map[string]string `json:"errors,omitempty"`
	// DurationSeconds is the whole run's wall time.
	DurationSeconds float64 `json:"duration_seconds"`
	LoadStart       string  `json:"load_start,omitempty"`
	LoadEnd         string  `json:"load_end,omitempty"`
}

// PodsSystem is one system's figures.
type PodsSystem struct {
	Name    string `json:"name"`
	Version string `json:"version,omitempty"`
	// HasReady says whether the system reports readiness apart from
	// running (podman has no Ready: its Ready figures are its Running ones).
	HasReady bool `json:"has_ready"`
	// Agent names the process whose memory is the agent's.
	Agent string `json:"agent,omitempty"`
	// OneAtATime is Count pods created one after another (each waited for
	// before the next), then DeleteCount of them deleted one after another.
	OneAtATime PodsBatch `json:"one_at_a_time"`
	// AtOnce are batches created at once, then deleted at once.
	AtOnce []PodsBatch `json:"at_once"`
	// Memory is sampled with OneAtATime's pods running.
	Memory NodeMemory `json:"memory"`
	// MemoryNote explains a memory sample that is incomplete.
	MemoryNote string   `json:"memory_note,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

// PodsBatch is the latencies of one batch of pods.
type PodsBatch struct {
	Pods   int  `json:"pods"`
	AtOnce bool `json:"at_once"`
	// Request is the create request's own time: the API call (peapod),
	// `podman kube play` until it exits (podman).
	Request Latency `json:"request"`
	// Running and Ready are from each pod's create request to the moment
	// it was seen Running (phase) and Ready (condition).
	Running Latency `json:"running"`
	Ready   Latency `json:"ready"`
	// Delete is from each pod's delete request until it was gone (the API
	// object deleted, which the agent does once the containers are gone;
	// `podman pod rm -f` returned).
	Delete Latency `json:"delete"`
	// All*Seconds are from the first request of the batch to the last pod
	// Running, Ready or gone.
	AllRunningSeconds float64 `json:"all_running_seconds"`
	AllReadySeconds   float64 `json:"all_ready_seconds"`
	AllDeletedSeconds float64 `json:"all_deleted_seconds"`
}

// WriteJSON writes r, indented, to w.
func (r *PodsResult) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadPodsResult reads a PodsResult written by WriteJSON from path.
func ReadPodsResult(path string) (*PodsResult, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r PodsResult
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// The targets for peapod's node.
const (
	targetRunningP50Ms  = 200
	targetRunningP99Ms  = 500
	targetPerPodMB      = 1.5
	targetAgentRSSMB    = 60
	targetAgentRSSAtPod = 100
)

// targetAllRunning is the issue's target for "N pods at once all Running
// within S seconds", for the batch sizes it names.
var targetAllRunning = map[int]float64{30: 2, 100: 8}

// megabytes converts KiB to MB (10^6 bytes), the unit of the targets.
func megabytes(kib float64) float64 { return kib * 1024 / 1e6 }

// podsRow is one line of the pods report: a name, the target (empty for
// none), and each system's cell.
type podsRow struct {
	name   string
	target string
	cell   func(s *PodsSystem) string
}

// check renders v with its unit and, when a target applies, whether v meets it.
func check(v float64, unit string, ok bool, hasTarget bool) string {
	s := formatValue(v) + " " + unit
	if !hasTarget {
		return s
	}
	if ok {
		return s + " (met)"
	}
	return s + " (NOT met)"
}

func latencyCell(l Latency, p99 bool) string {
	if l.Samples == 0 {
		return "n/a"
	}
	if p99 {
		return formatValue(l.P99Ms) + " ms"
	}
	return formatValue(l.P50Ms) + " ms"
}

func secondsCell(s float64) string {
	if s <= 0 {
		return "n/a"
	}
	return formatValue(s) + " s"
}

// readyCell is a Ready figure, or a pointer to the Running one for a system
// without readiness.
func readyCell(s *PodsSystem, v string) string {
	if !s.HasReady {
		return "= Running"
	}
	return v
}

func podsRows(r *PodsResult) []podsRow {
	one := func(f func(b PodsBatch) string) func(*PodsSystem) string {
		return func(s *PodsSystem) string { return f(s.OneAtATime) }
	}
	rows := []podsRow{
		{fmt.Sprintf("create→Running p50, one at a time (%d pods)", r.Count), fmt.Sprintf("< %d ms", targetRunningP50Ms), func(s *PodsSystem) string {
			l := s.OneAtATime.Running
			if l.Samples == 0 {
				return "n/a"
			}
			return check(l.P50Ms, "ms", l.P50Ms < targetRunningP50Ms, s.Name == "peapod")
		}},
		{"create→Running p99, one at a time", fmt.Sprintf("< %d ms", targetRunningP99Ms), func(s *PodsSystem) string {
			l := s.OneAtATime.Running
			if l.Samples == 0 {
				return "n/a"
			}
			return check(l.P99Ms, "ms", l.P99Ms < targetRunningP99Ms, s.Name == "peapod")
		}},
		{"create→Ready p50, one at a time", "", func(s *PodsSystem) string { return readyCell(s, latencyCell(s.OneAtATime.Ready, false)) }},
		{"create→Ready p99, one at a time", "", func(s *PodsSystem) string { return readyCell(s, latencyCell(s.OneAtATime.Ready, true)) }},
		{fmt.Sprintf("delete→gone p50, one at a time (%d pods)", r.DeleteCount), "", one(func(b PodsBatch) string { return latencyCell(b.Delete, false) })},
		{"delete→gone p99, one at a time", "", one(func(b PodsBatch) string { return latencyCell(b.Delete, true) })},
	}
	for i, n := range r.AtOnce {
		batch := func(s *PodsSystem) (PodsBatch, bool) {
			if i >= len(s.AtOnce) || s.AtOnce[i].Pods == 0 {
				return PodsBatch{}, false
			}
			return s.AtOnce[i], true
		}
		in := func(f func(b PodsBatch) string) func(*PodsSystem) string {
			return func(s *PodsSystem) string {
				b, ok := batch(s)
				if !ok {
					return "n/a"
				}
				return f(b)
			}
		}
		target, hasTarget := targetAllRunning[n]
		targetText := ""
		if hasTarget {
			targetText = fmt.Sprintf("≤ %s s", formatValue(target))
		}
		rows = append(rows,
			podsRow{fmt.Sprintf("%d at once: all Running", n), targetText, func(s *PodsSystem) string {
				b, ok := batch(s)
				if !ok || b.AllRunningSeconds <= 0 {
					return "n/a"
				}
				return check(b.AllRunningSeconds, "s", b.AllRunningSeconds <= target, hasTarget && s.Name == "peapod")
			}},
			podsRow{fmt.Sprintf("%d at once: all Ready", n), "", func(s *PodsSystem) string {
				return readyCell(s, in(func(b PodsBatch) string { return secondsCell(b.AllReadySeconds) })(s))
			}},
			podsRow{fmt.Sprintf("%d at once: create→Running p50", n), "", in(func(b PodsBatch) string { return latencyCell(b.Running, false) })},
			podsRow{fmt.Sprintf("%d at once: create→Running p99", n), "", in(func(b PodsBatch) string { return latencyCell(b.Running, true) })},
			podsRow{fmt.Sprintf("%d at once: create→Ready p50", n), "", func(s *PodsSystem) string {
				return readyCell(s, in(func(b PodsBatch) string { return latencyCell(b.Ready, false) })(s))
			}},
			podsRow{fmt.Sprintf("%d at once: create→Ready p99", n), "", func(s *PodsSystem) string {
				return readyCell(s, in(func(b PodsBatch) string { return latencyCell(b.Ready, true) })(s))
			}},
			podsRow{fmt.Sprintf("%d at once: all deleted", n), "", in(func(b PodsBatch) string { return secondsCell(b.AllDeletedSeconds) })},
			podsRow{fmt.Sprintf("%d at once: delete→gone p50", n), "", in(func(b PodsBatch) string { return latencyCell(b.Delete, false) })},
			podsRow{fmt.Sprintf("%d at once: delete→gone p99", n), "", in(func(b PodsBatch) string { return latencyCell(b.Delete, true) })},
		)
	}
	mem := func(f func(m NodeMemory) string) func(*PodsSystem) string {
		return func(s *PodsSystem) string {
			if s.Memory.Pods == 0 {
				return "n/a"
			}
			return f(s.Memory)
		}
	}
	perPod := func(kib int64, m NodeMemory) string {
		return formatValue(megabytes(float64(kib)/float64(m.Pods))) + " MB"
	}
	rows = append(rows,
		podsRow{fmt.Sprintf("node memory per pod, %d pods (PSS: conmons + infra + agent growth)", r.Count), fmt.Sprintf("≤ %s MB", formatValue(targetPerPodMB)), func(s *PodsSystem) string {
			if s.Memory.Pods == 0 {
				return "n/a"
			}
			v := megabytes(s.Memory.PerPodKiB())
			return check(v, "MB", v <= targetPerPodMB, s.Name == "peapod")
		}},
		podsRow{"  conmon PSS per pod (2 conmons: infra + container)", "", mem(func(m NodeMemory) string { return perPod(m.Conmon.PSSKiB, m) })},
		podsRow{"  infra (catatonit) PSS per pod", "", mem(func(m NodeMemory) string { return perPod(m.Infra.PSSKiB, m) })},
		podsRow{"  agent PSS growth per pod", "", mem(func(m NodeMemory) string {
			if m.AgentIdle.PSSKiB == 0 {
				return "no agent"
			}
			return perPod(m.AgentGrowthKiB(), m)
		})},
		podsRow{"  workload (sleep) PSS per pod, not counted", "", mem(func(m NodeMemory) string { return perPod(m.Workload.PSSKiB, m) })},
		podsRow{fmt.Sprintf("agent RSS with %d pods", r.Count), fmt.Sprintf("< %d MB at %d pods", targetAgentRSSMB, targetAgentRSSAtPod), func(s *PodsSystem) string {
			m := s.Memory
			if m.Pods == 0 || m.Agent.RSSKiB == 0 {
				if s.Memory.Pods > 0 {
					return "no agent"
				}
				return "n/a"
			}
			v := megabytes(float64(m.Agent.RSSKiB))
			return check(v, "MB", v < targetAgentRSSMB, s.Name == "peapod" && m.Pods == targetAgentRSSAtPod)
		}},
		podsRow{"  of which anonymous / file-backed (binary)", "", mem(func(m NodeMemory) string {
			if m.Agent.RSSKiB == 0 {
				return "no agent"
			}
			return formatValue(megabytes(float64(m.Agent.AnonKiB))) + " / " + formatValue(megabytes(float64(m.Agent.FileKiB))) + " MB"
		})},
		podsRow{"  agent RSS with no pods", "", mem(func(m NodeMemory) string {
			if m.AgentIdle.RSSKiB == 0 {
				return "no agent"
			}
			return formatValue(megabytes(float64(m.AgentIdle.RSSKiB))) + " MB"
		})},
		podsRow{"  agent PSS with no pods → with the pods", "", mem(func(m NodeMemory) string {
			if m.AgentIdle.PSSKiB == 0 {
				return "no agent"
			}
			return formatValue(megabytes(float64(m.AgentIdle.PSSKiB))) + " → " + formatValue(megabytes(float64(m.Agent.PSSKiB))) + " MB"
		})},
	)
	return rows
}

// WriteText writes r as a table, systems side by side, to w; as a Markdown
// table when markdown is set.
func (r *PodsResult) WriteText(w io.Writer, markdown bool) error {
	var b strings.Builder
	if !markdown {
		fmt.Fprintf(&b, "peapod bench pods: %d pods one after another; %s at once\n", r.Count, joinInts(r.AtOnce))
		if r.Rounds > 1 {
			fmt.Fprintf(&b, "  figures: medians of %d rounds\n", r.Rounds)
		}
		fmt.Fprintf(&b, "  pod:     %s\n", r.Pod)
		for _, s := range r.Systems {
			fmt.Fprintf(&b, "  %-8s %s", s.Name+":", s.Version)
			if s.Agent != "" {
				fmt.Fprintf(&b, "; agent memory: %s", s.Agent)
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "  host:    %s\n", r.Host)
		fmt.Fprintf(&b, "  started: %s, took %.0fs", r.Started.Format(time.RFC3339), r.DurationSeconds)
		if r.LoadStart != "" {
			fmt.Fprintf(&b, "; load %s at start, %s at end", r.LoadStart, r.LoadEnd)
		}
		b.WriteString("\n")
	}
	var tw *tabwriter.Writer
	row := func(cells ...string) {
		if markdown {
			fmt.Fprintf(&b, "| %s |\n", strings.Join(cells, " | "))
			return
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if !markdown {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	}
	head := []string{"metric", "target (peapod)"}
	for _, s := range r.Systems {
		head = append(head, s.Name)
	}
	row(head...)
	if markdown {
		sep := []string{"---", "---"}
		for range r.Systems {
			sep = append(sep, "---:")
		}
		row(sep...)
	}
	for _, pr := range podsRows(r) {
		cells := []string{pr.name, pr.target}
		if markdown {
			if rest, ok := strings.CutPrefix(pr.name, "  "); ok {
				cells[0] = "↳ " + rest
			}
		}
		if cells[1] == "" {
			cells[1] = "–"
		}
		for _, s := range r.Systems {
			cells = append(cells, pr.cell(s))
		}
		row(cells...)
	}
	if tw != nil {
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if !markdown {
		for _, s := range r.Systems {
			if s.MemoryNote != "" {
				fmt.Fprintf(&b, "%s: memory: %s\n", s.Name, s.MemoryNote)
			}
			for _, n := range s.Notes {
				fmt.Fprintf(&b, "%s: %s\n", s.Name, n)
			}
		}
		for name, e := range r.Errors {
			fmt.Fprintf(&b, "%s: FAILED: %s\n", name, e)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmt.Sprint(n)
	}
	return strings.Join(s, " and ")
}

// MedianPodsResults merges rounds of the same benchmark into one result
// whose every figure is the median of the rounds' (the mean of the middle
// two for an even count); text and counts come from the first round. The
// rounds must have measured the same systems in the same order.
func MedianPodsResults(rs []*PodsResult) (*PodsResult, error) {
	if len(rs) == 0 {
		return nil, errors.New("no results")
	}
	trees := make([]any, len(rs))
	for i, r := range rs {
		if len(r.Systems) != len(rs[0].Systems) {
			return nil, fmt.Errorf("round %d measured %d systems, round 1 %d", i+1, len(r.Systems), len(rs[0].Systems))
		}
		for j, s := range r.Systems {
			if s.Name != rs[0].Systems[j].Name {
				return nil, fmt.Errorf("round %d measured %s where round 1 measured %s", i+1, s.Name, rs[0].Systems[j].Name)
			}
		}
		b, err := json.Marshal(r)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &trees[i]); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(medianTree(trees))
	if err != nil {
		return nil, err
	}
	var out PodsResult
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	out.Rounds = len(rs)
	out.DurationSeconds = rs[0].DurationSeconds
	out.LoadStart, out.LoadEnd = rs[0].LoadStart, rs[len(rs)-1].LoadEnd
	return &out, nil
}

// medianTree takes, at every path of the decoded JSON trees, the median of
// the numbers found there and the first tree's other values.
func medianTree(trees []any) any {
	switch first := trees[0].(type) {
	case float64:
		var vs []float64
		for _, t := range trees {
			if v, ok := t.(float64); ok {
				vs = append(vs, v)
			}
		}
		slices.Sort(vs)
		n := len(vs)
		if n%2 == 1 {
			return vs[n/2]
		}
		m := (vs[n/2-1] + vs[n/2]) / 2
		if vs[n/2-1] == math.Trunc(vs[n/2-1]) && vs[n/2] == math.Trunc(vs[n/2]) {
			m = math.Round(m) // integer fields stay integers
		}
		return m
	case map[string]any:
		out := make(map[string]any, len(first))
		for k := range first {
			var sub []any
			for _, t := range trees {
				if m, ok := t.(map[string]any); ok {
					if v, ok := m[k]; ok {
						sub = append(sub, v)
					}
				}
			}
			out[k] = medianTree(sub)
		}
		return out
	case []any:
		out := make([]any, len(first))
		for i := range first {
			var sub []any
			for _, t := range trees {
				if l, ok := t.([]any); ok && i < len(l) {
					sub = append(sub, l[i])
				}
			}
			out[i] = medianTree(sub)
		}
		return out
	default:
		return first
	}
}
