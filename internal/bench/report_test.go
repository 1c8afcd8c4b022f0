package bench

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sampleResult(label string, scale float64) *Result {
	return &Result{
		Label:         label,
		Server:        "https://127.0.0.1:6443",
		ServerVersion: "v1.32.13",
		Started:       time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Host:          Host{CPUs: 2, CPUModel: "Test CPU", MemMiB: 24000, OS: "linux/amd64", Kernel: "6.1", GoClient: "go1.26"},
		Config:        Config{Creates: 2000, Clients: 16, ListPods: 10000, ListRuns: 5, Watchers: 100, WatchPods: 1000},
		CreateSerial: Throughput{Clients: 1, Count: 2000, Seconds: 4, PerSecond: 500 * scale,
			Latency: Latency{Samples: 2000, P50Ms: 1.5 / scale, P99Ms: 12.25 / scale}},
		CreateParallel: Throughput{Clients: 16, Count: 2000, Seconds: 2, PerSecond: 1000 * scale,
			Latency: Latency{Samples: 2000, P50Ms: 14 / scale, P99Ms: 80 / scale}},
		GetDuringLoad:    Latency{Samples: 300, P50Ms: 3 / scale, P99Ms: 25 / scale},
		DeleteCollection: Throughput{Clients: 1, Count: 4001, Seconds: 8, PerSecond: 500 * scale},
		Fill:             Throughput{Clients: 16, Count: 10000, Seconds: 10, PerSecond: 1000 * scale},
		List:             List{Items: 10000, ProtobufMedianMs: 700 / scale, JSONMedianMs: 1500 / scale},
		Watch: Watch{Watchers: 100, Pods: 1000, Events: 100000, CreateSeconds: 2, LastEventSeconds: 2.5 / scale,
			EventsPerSecond: 40000 * scale, LagAfterLastCreateMs: 20, Delivery: Latency{Samples: 100000, P99Ms: 50}},
		DurationSeconds: 61.25,
		LoadStart:       "0.50 0.40 0.30",
		LoadEnd:         "1.50 0.60 0.35",
	}
}

func TestWriteTextNoMemory(t *testing.T) {
	var b bytes.Buffer
	if err := sampleResult("peapod", 1).WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"peapod bench api: peapod",
		"v1.32.13",
		"2 CPUs (Test CPU), 24000 MiB RAM, linux/amd64 6.1, client go1.26",
		"took 61.2s",
		"load:    0.50 0.40 0.30 at start, 1.50 0.60 0.35 at end",
		"METRIC",
		"create, 1 client (2000 pods)",
		"create, 16 clients (2000 pods)",
		"GET one pod p99, during 16-client create",
		"LIST 10000 pods, protobuf (median of 5)",
		"LIST 10000 pods, JSON (median of 5)",
		"watch fan-out: 100 watchers x 1000 pods, events delivered",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "RSS") {
		t.Errorf("report shows memory rows without memory samples:\n%s", out)
	}
	// Values are aligned in one column and formatted by magnitude.
	for _, row := range []struct{ metric, value, unit string }{
		{"create, 1 client (2000 pods)", "500", "pods/s"},
		{"  create latency p50, 1 client", "1.50", "ms"},
		{"  create latency p99, 1 client", "12.2", "ms"},
		{"LIST 10000 pods, protobuf (median of 5)", "700", "ms"},
		{"watch fan-out: 100 watchers x 1000 pods, events delivered", "40000", "events/s"},
	} {
		line := findLine(out, row.metric)
		if f := strings.Fields(strings.TrimPrefix(line, row.metric)); len(f) != 2 || f[0] != row.value || f[1] != row.unit {
			t.Errorf("row %q = %q, want value %s %s", row.metric, line, row.value, row.unit)
		}
	}
	// Every row's value starts in the VALUE column.
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	h := 0
	for h < len(lines) && !strings.HasPrefix(lines[h], "METRIC") {
		h++
	}
	col := strings.Index(lines[h], "VALUE")
	if col < 0 || h+1 >= len(lines) {
		t.Fatalf("no table header:\n%s", out)
	}
	for _, l := range lines[h+1:] {
		if len(l) <= col || l[col-1] != ' ' || l[col] == ' ' {
			t.Errorf("row %q: value not in column %d:\n%s", l, col, out)
		}
	}
}

func findLine(s, prefix string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestWriteTextMemory(t *testing.T) {
	r := sampleResult("upstream", 1)
	r.Memory = []MemorySample{
		{When: memIdle, ServerRSSKiB: 200 * 1024, StoreRSSKiB: 40 * 1024},
		{When: memLoaded, Pods: 10000, ServerRSSKiB: 512 * 1024, StoreRSSKiB: 130 * 1024},
		{When: memEnd, ServerRSSKiB: 600 * 1024, ServerHWMKiB: 860 * 1024, StoreHWMKiB: 200 * 1024},
	}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for metric, want := range map[string]string{
		"server RSS, idle":                                        "200 MiB",
		"server RSS, holding 10000 pods":                          "512 MiB",
		"server peak RSS (VmHWM), end of run":                     "860 MiB",
		"store RSS, idle":                                         "40.0 MiB",
		"total RSS (server + separate store), idle":               "240 MiB",
		"total RSS (server + separate store), holding 10000 pods": "642 MiB",
		"store RSS, holding 10000 pods":                           "130 MiB",
		"store peak RSS (VmHWM), end of run":                      "200 MiB",
	} {
		line := findLine(out, metric)
		if got := strings.Join(strings.Fields(strings.TrimPrefix(line, metric)), " "); got != want {
			t.Errorf("%s: got %q, want %q\n%s", metric, got, want, out)
		}
	}

	// Only the server is known: no store rows.
	for i := range r.Memory {
		r.Memory[i].StoreRSSKiB, r.Memory[i].StoreHWMKiB = 0, 0
	}
	b.Reset()
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if line := findLine(b.String(), "total RSS (server + separate store), idle"); !strings.Contains(line, " 200 ") {
		t.Errorf("total without a store is not the server's RSS: %q", line)
	}
	if strings.Contains(b.String(), "\nstore RSS") {
		t.Errorf("store rows without a store:\n%s", b.String())
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0:        "0.00",
		1.234:    "1.23",
		9.999:    "10.00",
		12.34:    "12.3",
		99.94:    "99.9",
		100:      "100",
		15865.4:  "15865",
		-0.5:     "-0.50",
		123456.7: "123457",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestWriteComparison(t *testing.T) {
	fast, slow := sampleResult("peapod", 2), sampleResult("upstream", 1)
	fast.Memory = []MemorySample{{When: memIdle, ServerRSSKiB: 100 * 1024}}
	slow.Memory = []MemorySample{{When: memIdle, ServerRSSKiB: 250 * 1024, StoreRSSKiB: 40 * 1024}}

	var b bytes.Buffer
	if err := WriteComparison(&b, []*Result{fast}, []*Result{slow}, false); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for metric, want := range map[string]string{
		"create, 1 client (2000 pods)":              "pods/s 1000 500 2.00x (better)",
		"  create latency p50, 1 client":            "ms 0.75 1.50 0.50x (better)",
		"LIST 10000 pods, protobuf (median of 5)":   "ms 350 700 0.50x (better)",
		"server RSS, idle":                          "MiB 100 250 0.40x (better)",
		"store RSS, idle":                           "MiB n/a 40.0 n/a",
		"total RSS (server + separate store), idle": "MiB 100 290 0.34x (better)",
	} {
		line := findLine(out, metric)
		if got := strings.Join(strings.Fields(strings.TrimPrefix(line, metric)), " "); got != want {
			t.Errorf("%s: got %q, want %q\n%s", metric, got, want, out)
		}
	}
	if !strings.HasPrefix(out, "metric") || !strings.Contains(findLine(out, "metric"), "peapod / upstream") {
		t.Errorf("bad header:\n%s", out)
	}

	// The other way round it is worse, and equal is neither.
	b.Reset()
	slow.CreateParallel = fast.CreateParallel
	if err := WriteComparison(&b, []*Result{slow}, []*Result{fast}, true); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{
		"| metric | unit | upstream | peapod | upstream / peapod |\n| --- | --- | ---: | ---: | ---: |\n",
		"| create, 1 client (2000 pods) | pods/s | 500 | 1000 | 0.50x (worse) |",
		"| ↳ create latency p50, 1 client | ms | 1.50 | 0.75 | 2.00x (worse) |",
		"| create, 16 clients (2000 pods) | pods/s | 2000 | 2000 | 1.00x |",
		"| server RSS, idle | MiB | 250 | 100 | 2.50x (worse) |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "store peak RSS") {
		t.Errorf("markdown has a row measured in neither run:\n%s", md)
	}
}

func TestResultJSONRoundTrip(t *testing.T) {
	r := sampleResult("peapod", 1)
	r.Memory = []MemorySample{{When: memLoaded, Pods: 10000, ServerRSSKiB: 1234}}
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"create_serial"`, `"per_second": 500`, `"p99_ms"`, `"protobuf_median_ms": 700`, `"events_per_second": 40000`, `"server_rss_kib": 1234`} {
		if !strings.Contains(b.String(), key) {
			t.Errorf("JSON lacks %s:\n%s", key, b.String())
		}
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.CreateSerial != r.CreateSerial || got.List != r.List || got.Watch != r.Watch || got.Memory[0] != r.Memory[0] || !got.Started.Equal(r.Started) {
		t.Errorf("round trip changed the result:\n got %+v\nwant %+v", got, r)
	}
	if _, err := ReadResult(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("ReadResult of a missing file: no error")
	}
}

func TestWriteComparisonMedianOfRounds(t *testing.T) {
	a := []*Result{sampleResult("peapod", 1), sampleResult("peapod", 3), sampleResult("peapod", 2)}
	b := []*Result{sampleResult("upstream", 1), sampleResult("upstream", 1.5)}
	a[1].Memory = []MemorySample{{When: memIdle, ServerRSSKiB: 300 * 1024}}
	var buf bytes.Buffer
	if err := WriteComparison(&buf, a, b, false); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if h := findLine(out, "metric"); !strings.Contains(h, "peapod (median of 3)") || !strings.Contains(h, "upstream (median of 2)") {
		t.Errorf("header %q", h)
	}
	// peapod: median of 500, 1500, 1000; upstream: mean of 500 and 750.
	for metric, want := range map[string]string{
		"create, 1 client (2000 pods)": "pods/s 1000 625 1.60x (better)",
		// Only one peapod run sampled memory: its figure is that run's.
		"server RSS, idle": "MiB 300 n/a n/a",
	} {
		line := findLine(out, metric)
		if got := strings.Join(strings.Fields(strings.TrimPrefix(line, metric)), " "); got != want {
			t.Errorf("%s: got %q, want %q\n%s", metric, got, want, out)
		}
	}
	if err := WriteComparison(&buf, nil, b, false); err == nil {
		t.Error("no results: no error")
	}
}
