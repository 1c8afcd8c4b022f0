package bench

import (
	"slices"
	"testing"
	"time"
)

func msd(v ...int) []time.Duration {
	d := make([]time.Duration, len(v))
	for i, x := range v {
		d[i] = time.Duration(x) * time.Millisecond
	}
	return d
}

func TestPercentile(t *testing.T) {
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = 100 - i // 100..1, unsorted
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"empty", nil, 50, 0},
		{"single p50", msd(7), 50, 7 * time.Millisecond},
		{"single p99", msd(7), 99, 7 * time.Millisecond},
		{"1..100 p50", msd(hundred...), 50, 50 * time.Millisecond},
		{"1..100 p90", msd(hundred...), 90, 90 * time.Millisecond},
		{"1..100 p99", msd(hundred...), 99, 99 * time.Millisecond},
		{"1..100 p100", msd(hundred...), 100, 100 * time.Millisecond},
		{"1..100 p0 is the minimum", msd(hundred...), 0, 1 * time.Millisecond},
		{"1..100 p0.5 is the minimum", msd(hundred...), 0.5, 1 * time.Millisecond},
		// Nearest rank: ceil(0.5*10) = 5th of 10.
		{"ten p50", msd(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 50, 5 * time.Millisecond},
		// ceil(0.99*10) = 10th: with few samples p99 is the maximum.
		{"ten p99", msd(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 99, 10 * time.Millisecond},
		{"ten p90", msd(10, 9, 8, 7, 6, 5, 4, 3, 2, 1), 90, 9 * time.Millisecond},
		{"duplicates", msd(3, 3, 3, 1), 50, 3 * time.Millisecond},
		{"above 100 clamps", msd(1, 2, 3), 150, 3 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.samples)
			if got := Percentile(tt.samples, tt.p); got != tt.want {
				t.Errorf("Percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
			if !slices.Equal(in, tt.samples) {
				t.Errorf("Percentile modified its input: %v, was %v", tt.samples, in)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		samples []time.Duration
		want    time.Duration
	}{
		{nil, 0},
		{msd(4), 4 * time.Millisecond},
		{msd(5, 1, 3), 3 * time.Millisecond},
		{msd(4, 1, 3, 2), 2500 * time.Microsecond},
		{msd(1, 100, 2, 3, 1000), 3 * time.Millisecond},
	}
	for _, tt := range tests {
		in := slices.Clone(tt.samples)
		if got := Median(tt.samples); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.samples, got, tt.want)
		}
		if !slices.Equal(in, tt.samples) {
			t.Errorf("Median modified its input")
		}
	}
}

func TestSummarize(t *testing.T) {
	if got := Summarize(nil); got != (Latency{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", got)
	}
	s := make([]time.Duration, 0, 1000)
	for i := 1000; i >= 1; i-- {
		s = append(s, time.Duration(i)*100*time.Microsecond) // 0.1ms .. 100ms
	}
	got := Summarize(s)
	want := Latency{Samples: 1000, P50Ms: 50, P90Ms: 90, P99Ms: 99, MaxMs: 100}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
}

func TestRate(t *testing.T) {
	if got := rate(500, 2*time.Second); got != 250 {
		t.Errorf("rate(500, 2s) = %v, want 250", got)
	}
	if got := rate(10, 0); got != 0 {
		t.Errorf("rate(10, 0) = %v, want 0", got)
	}
	if got := ms(1500 * time.Microsecond); got != 1.5 {
		t.Errorf("ms(1.5ms) = %v", got)
	}
}
