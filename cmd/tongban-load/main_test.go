package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"
)

// exactQuantile returns the nearest-rank q-quantile of values (sorted in
// place), the reference the histogram is checked against.
func exactQuantile(values []time.Duration, q float64) time.Duration {
	slices.Sort(values)
	return values[nearestRank(q, uint64(len(values)))-1]
}

func TestNearestRank(t *testing.T) {
	cases := []struct {
		q    float64
		n    uint64
		want uint64
	}{
		{0.5, 1, 1},
		{0.5, 2, 1},
		{0.5, 3, 2},
		{0.99, 100, 99},
		{0.999, 1000, 999},
		{0.999, 1001, 1000},
		{1, 7, 7},
		{0.0001, 7, 1},
	}
	for _, tc := range cases {
		if got := nearestRank(tc.q, tc.n); got != tc.want {
			t.Errorf("nearestRank(%v, %d) = %d, want %d", tc.q, tc.n, got, tc.want)
		}
	}
}

func TestBuckets(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 12345, 1 << 20, 1<<40 + 12345, 1<<63 - 1}
	for _, v := range values {
		i := bucketOf(v)
		hi := bucketHigh(i)
		if hi < v {
			t.Errorf("bucketHigh(bucketOf(%d)) = %d < value", v, hi)
		}
		if float64(hi-v) > float64(v)/subCount {
			t.Errorf("bucket of %d reaches %d: more than 1/%d above", v, hi, subCount)
		}
		if bucketOf(hi) != i {
			t.Errorf("bucketOf(%d) = %d, want %d (same bucket as %d)", hi, bucketOf(hi), i, v)
		}
		if i > 0 && bucketHigh(i-1) >= v {
			t.Errorf("value %d also fits the bucket below (%d)", v, bucketHigh(i-1))
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name string
		gen  func() time.Duration
		n    int
	}{
		{"exact small values", func() time.Duration { return time.Duration(rng.IntN(120)) }, 1000},
		{"uniform 0-10ms", func() time.Duration { return time.Duration(rng.Int64N(int64(10 * time.Millisecond))) }, 20000},
		{"product of exponentials around 1ms", func() time.Duration {
			return time.Duration(float64(time.Millisecond) * rng.ExpFloat64() * rng.ExpFloat64())
		}, 50000},
		{"single value", func() time.Duration { return 1234567 }, 10},
		{"bimodal", func() time.Duration {
			if rng.IntN(100) == 0 {
				return 50*time.Millisecond + time.Duration(rng.IntN(1000))
			}
			return 200*time.Microsecond + time.Duration(rng.IntN(1000))
		}, 10000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Two histograms merged, as the workers' are.
			h, h2 := NewHistogram(), NewHistogram()
			values := make([]time.Duration, tc.n)
			var sum time.Duration
			for i := range values {
				values[i] = tc.gen()
				sum += values[i]
				if i%2 == 0 {
					h.Record(values[i])
				} else {
					h2.Record(values[i])
				}
			}
			h.Merge(h2)
			h.Merge(NewHistogram())
			if h.Count() != uint64(tc.n) {
				t.Fatalf("Count = %d, want %d", h.Count(), tc.n)
			}
			for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
				exact := exactQuantile(values, q)
				got := h.Quantile(q)
				if got < exact || float64(got-exact) > float64(exact)/subCount {
					t.Errorf("Quantile(%v) = %d, exact %d: outside [exact, exact*(1+1/%d)]", q, got, exact, subCount)
				}
			}
			if h.Max() != slices.Max(values) {
				t.Errorf("Max = %v, want %v", h.Max(), slices.Max(values))
			}
			if want := sum / time.Duration(tc.n); (h.Mean() - want).Abs() > time.Microsecond {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
		})
	}
}

func TestHistogramEmpty(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Mean() != 0 || h.Count() != 0 {
		t.Errorf("empty histogram: p50 %v max %v mean %v count %d", h.Quantile(0.5), h.Max(), h.Mean(), h.Count())
	}
	h.Record(-5)
	if h.Quantile(1) != 0 {
		t.Errorf("negative duration recorded as %v", h.Quantile(1))
	}
}

func TestFmtDur(t *testing.T) {
	cases := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{830, "830ns"},
		{67600, "67.6µs"},
		{999_400, "999µs"},
		{3_330_000, "3.33ms"},
		{115_000_000, "115ms"},
		{2_500_000_000, "2.5s"},
	}
	for _, tc := range cases {
		if got := fmtDur(tc.d); got != tc.want {
			t.Errorf("fmtDur(%d) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

func sampleReport() *Report {
	return &Report{
		Started: time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC),
		Mode:    "process",
		Machine: Machine{CPUs: 2, GOMAXPROCS: 2, CPUModel: "Test CPU", Kernel: "6.1", GoVersion: "go1.26"},
		Results: []Result{
			{Scenario: scenarioHit, Connections: 64, Requests: 30000, Throughput: 6000, P50: 9 * time.Millisecond, P99: 30 * time.Millisecond, P999: 60 * time.Millisecond, Max: 70 * time.Millisecond, ServerCPU: 1.2},
			{Scenario: scenarioBare, Connections: 64, Requests: 100000, Throughput: 20000, P50: 2 * time.Millisecond, P99: 10 * time.Millisecond, P999: 20 * time.Millisecond, Max: 25 * time.Millisecond},
			{Scenario: scenarioMiss, Connections: 16, Requests: 2000, Errors: 1, FirstError: "HTTP 503: department down", Throughput: 1500},
		},
		Memory: []ProcMem{{PID: 42, Name: "gateway", IdleKiB: 65536, AfterKiB: 102400, PeakKiB: 110592}},
		Notes:  []string{"noisy"},
	}
}

func TestHeadline(t *testing.T) {
	r := sampleReport()
	h, ok := headline(r.Results, 64)
	if !ok {
		t.Fatal("no headline at 64")
	}
	if h.ThroughputRatio != 0.3 || h.P99Ratio != 3 || h.MeetsThroughput || h.MeetsGoal || h.MeetsP99 {
		t.Errorf("headline = %+v", h)
	}
	if _, ok := headline(r.Results, 16); ok {
		t.Error("headline at 16 without cache-hit and bare runs")
	}
	r.Results[0].Throughput, r.Results[0].P99 = 17000, 15*time.Millisecond
	h, _ = headline(r.Results, 64)
	if !h.MeetsThroughput || !h.MeetsGoal || !h.MeetsP99 {
		t.Errorf("headline = %+v, want every target met", h)
	}
}

func TestWriteText(t *testing.T) {
	r := sampleReport()
	h, _ := headline(r.Results, 64)
	r.Headline = &h
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"machine: 2 CPUs (GOMAXPROCS 2), Test CPU, Linux 6.1, go1.26",
		"throughput ratio  0.30  (cache-hit 6000 req/s / bare 20000 req/s; target >= 0.60, goal 0.80)  BELOW TARGET",
		"p99 ratio         3.00  (cache-hit 30ms / bare 10ms; limit <= 2.0)  ABOVE LIMIT",
		"first error of cache-miss at 16 connections: HTTP 503: department down",
		"note: noisy",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	// Columns are aligned: every row of the results table is as wide as
	// its header.
	lines := strings.Split(out, "\n")
	var header int
	for i, l := range lines {
		if strings.Contains(l, "scenario") && strings.Contains(l, "p99.9") {
			header = i
		}
	}
	w := len([]rune(lines[header]))
	for _, l := range lines[header+1 : header+4] {
		if len([]rune(l)) != w {
			t.Errorf("row %q is %d wide, header %d", l, len([]rune(l)), w)
		}
	}
	// Memory in MiB.
	if !strings.Contains(out, "64.0") || !strings.Contains(out, "108.0") {
		t.Errorf("memory not in MiB:\n%s", out)
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != 3 || back.Results[0].P99 != 30*time.Millisecond || back.Memory[0].PeakKiB != 110592 {
		t.Errorf("round trip = %+v", back)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"--connections", "64, 1,16,16", "--scenarios", "bare,cache-hit"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Connections, []int{1, 16, 64}) || o.Headline != 64 {
		t.Errorf("connections %v headline %d", o.Connections, o.Headline)
	}
	if !slices.Equal(o.Scenarios, []string{scenarioHit, scenarioBare}) {
		t.Errorf("scenarios %v", o.Scenarios)
	}
	o, err = parseFlags([]string{"--cpuprofile", "x.pprof"}, io.Discard)
	if err != nil || !o.InProcess || !slices.Equal(o.Scenarios, allScenarios) {
		t.Errorf("--cpuprofile: %+v, %v", o, err)
	}
	for _, bad := range [][]string{
		{"--connections", "0"},
		{"--connections", "x"},
		{"--scenarios", "cache-hit,unicorn"},
		{"--duration", "0s"},
		{"stray"},
	} {
		if _, err := parseFlags(bad, io.Discard); err == nil {
			t.Errorf("parseFlags(%q) accepted", bad)
		}
	}
}

func TestParseStat(t *testing.T) {
	// The command name may hold spaces and parentheses.
	line := "1234 (tongban (x) y) S 99 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 10 0 1000 1000000 2000 18446744073709551615\n"
	s, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if s.PPID != 99 || s.CPU != 3250*time.Millisecond {
		t.Errorf("parseStat = %+v", s)
	}
	if _, err := parseStat([]byte("1234 (x) S 1")); err == nil {
		t.Error("short stat line accepted")
	}
}

func TestParseStatus(t *testing.T) {
	status := []byte("Name:\ttongban\nVmPeak:\t 1000 kB\nVmHWM:\t   81920 kB\nVmRSS:\t   65536 kB\nThreads:\t9\n")
	rss, err := parseStatusKiB(status, "VmRSS")
	if err != nil || rss != 65536 {
		t.Errorf("VmRSS = %d, %v", rss, err)
	}
	hwm, err := parseStatusKiB(status, "VmHWM")
	if err != nil || hwm != 81920 {
		t.Errorf("VmHWM = %d, %v", hwm, err)
	}
	if _, err := parseStatusKiB(status, "VmSwap"); err == nil {
		t.Error("missing line found")
	}
}

func TestProcStatAndCPUModel(t *testing.T) {
	a, err := parseProcStat([]byte("cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseProcStat([]byte("cpu  250 0 100 850 50 0 0 0 0 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Busy != 150 || a.Total != 1000 {
		t.Errorf("a = %+v", a)
	}
	// 200 busy ticks of 250 on 2 CPUs: 1.6 cores.
	if got := busyCores(a, b, 2); got != 1.6 {
		t.Errorf("busyCores = %v, want 1.6", got)
	}
	if _, err := parseProcStat([]byte("intr 1 2 3\n")); err == nil {
		t.Error("non-cpu line accepted")
	}
	if got := cpuModel([]byte("processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t: fpu\n")); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpuModel = %q", got)
	}
}

func TestRunLoad(t *testing.T) {
	t.Run("request count", func(t *testing.T) {
		seen := make([]int, 1000)
		res := runLoad(context.Background(), loadSpec{Connections: 8, Requests: 1000}, func(_ context.Context, seq uint64) error {
			seen[seq]++ // each seq is handed to exactly one worker
			return nil
		})
		if res.Requests != 1000 || res.Errors != 0 || res.Hist.Count() != 1000 {
			t.Errorf("result = %+v", res)
		}
		for i, n := range seen {
			if n != 1 {
				t.Fatalf("operation %d ran %d times", i, n)
			}
		}
	})
	t.Run("errors stop the run", func(t *testing.T) {
		res := runLoad(context.Background(), loadSpec{Connections: 4, Requests: 100000, MaxErrors: 10}, func(context.Context, uint64) error {
			return errors.New("boom")
		})
		if res.Errors < 10 || res.Errors > 13 || res.FirstError != "boom" || res.Hist.Count() != 0 {
			t.Errorf("result = %+v", res)
		}
	})
	t.Run("duration", func(t *testing.T) {
		res := runLoad(context.Background(), loadSpec{Connections: 2, Duration: 20 * time.Millisecond}, func(context.Context, uint64) error {
			time.Sleep(time.Millisecond)
			return nil
		})
		if res.Requests == 0 || res.Errors != 0 {
			t.Errorf("result = %+v", res)
		}
	})
}

func TestBareAndHTTPTarget(t *testing.T) {
	answer := []byte(`{"records":[{"provenance":{"delivery":"DELIVERY_CACHE"}}]}`)
	srv := httptest.NewServer(bareHandler(answer))
	defer srv.Close()
	client := &http.Client{Transport: newTransport(4), Timeout: 10 * time.Second}
	fn := hitOp(client, srv.URL, []string{"91130109MAAY40HT30", "91130100MA0CXXXX1X"})
	res := runLoad(context.Background(), loadSpec{Connections: 4, Requests: 200}, fn)
	if res.Errors != 0 || res.Hist.Count() != 200 {
		t.Fatalf("result = %+v", res)
	}

	// A wrong answer and an error status are errors carrying the body.
	wrong := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "permits") {
			http.Error(w, `{"error":{"reason":"QUOTA_EXCEEDED"}}`, http.StatusTooManyRequests)
			return
		}
		_, _ = w.Write([]byte(`{"records":[{"provenance":{"delivery":"DELIVERY_LIVE"}}]}`))
	}))
	defer wrong.Close()
	err := hitOp(client, wrong.URL, []string{"x"})(context.Background(), 0)
	if err == nil || !strings.Contains(err.Error(), "DELIVERY_CACHE") {
		t.Errorf("live answer to a cache-hit query: %v", err)
	}
	err = missOp(client, wrong.URL, []string{"p1"})(context.Background(), 0)
	var se *statusError
	if !errors.As(err, &se) || se.Status != 429 || !strings.Contains(se.Body, "QUOTA_EXCEEDED") {
		t.Errorf("429 answer: %v", err)
	}
}

func TestAccumulator(t *testing.T) {
	a := newAccumulator()
	h1, h2 := NewHistogram(), NewHistogram()
	for range 300 {
		h1.Record(time.Millisecond)
	}
	for range 100 {
		h2.Record(3 * time.Millisecond)
	}
	a.add(loadResult{Requests: 301, Errors: 1, FirstError: "first", Elapsed: time.Second, Hist: h1},
		time.Second, 0, 500*time.Millisecond, cpuTimes{Busy: 0, Total: 0}, cpuTimes{Busy: 150, Total: 200})
	a.add(loadResult{Requests: 100, FirstError: "second", Elapsed: time.Second, Hist: h2},
		time.Second, 0, 500*time.Millisecond, cpuTimes{Busy: 150, Total: 200}, cpuTimes{Busy: 300, Total: 400})
	r := a.result(scenarioHit, 64, 2)
	if r.Requests != 401 || r.Errors != 1 || r.FirstError != "first" || r.Seconds != 2 || r.Throughput != 200 {
		t.Errorf("result = %+v", r)
	}
	// Quantiles are the upper ends of their buckets (within 1/128).
	if r.P50 < time.Millisecond || r.P50 > time.Millisecond*129/128 || r.P99 != 3*time.Millisecond {
		t.Errorf("p50 %v p99 %v", r.P50, r.P99)
	}
	// 300 of 400 ticks busy on 2 CPUs = 1.5 cores, of which 1 + 0.5 ours.
	if r.ServerCPU != 1 || r.HarnessCPU != 0.5 || r.OtherCPU != 0 {
		t.Errorf("CPU = server %v harness %v other %v", r.ServerCPU, r.HarnessCPU, r.OtherCPU)
	}
}

func TestParseAuditCommits(t *testing.T) {
	text := "# HELP tongban_audit_commits_total x\n# TYPE tongban_audit_commits_total counter\ntongban_audit_commits_total 120\n" +
		"tongban_audit_appended_entries_total 2.5e+03\ntongban_audit_export_lag_entries 0\n"
	c, e, err := parseAuditCommits(text)
	if err != nil || c != 120 || e != 2500 {
		t.Fatalf("parseAuditCommits = %v, %v, %v; want 120, 2500, nil", c, e, err)
	}
	if _, _, err := parseAuditCommits("tongban_audit_commits_total 1\n"); err == nil {
		t.Fatal("a missing counter was not reported")
	}
	if _, _, err := parseAuditCommits("tongban_audit_commits_total x\ntongban_audit_appended_entries_total 1\n"); err == nil {
		t.Fatal("a malformed value was not reported")
	}
}
