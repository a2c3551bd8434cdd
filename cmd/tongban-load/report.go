package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Targets of the headline comparison (issue 8): the cache-hit path at
// least 60% of the bare server's throughput (goal 80%), its p99 within 2x
// the bare server's, at 64 connections.
const (
	targetThroughputRatio = 0.6
	goalThroughputRatio   = 0.8
	limitP99Ratio         = 2.0
)

// Result is the measurement of one scenario at one concurrency level.
type Result struct {
	Scenario    string `json:"scenario"`
	Connections int    `json:"connections"`
	// Requests counts every operation issued, errors included.
	Requests   uint64 `json:"requests"`
	Errors     uint64 `json:"errors"`
	FirstError string `json:"first_error,omitempty"`
	// Seconds is the wall time from the first request to the last answer.
	Seconds float64 `json:"seconds"`
	// Throughput is successful operations per second.
	Throughput float64 `json:"throughput_rps"`
	// Latencies of successful operations.
	Mean time.Duration `json:"mean_ns"`
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	// CPU used during the run, in cores (CPU seconds per wall second): by
	// the server process (the gateway or the bare server; none for the
	// in-process scenarios), by the connector plugin processes, and by
	// this harness (the load generator, plus the work itself for the
	// in-process scenarios).
	ServerCPU  float64 `json:"server_cores"`
	PluginCPU  float64 `json:"plugin_cores"`
	HarnessCPU float64 `json:"harness_cores"`
	// OtherCPU is what the rest of the machine used meanwhile (machine-wide
	// busy time from /proc/stat minus the three above): other tenants of a
	// shared machine.
	OtherCPU float64 `json:"other_cores"`
}

// Headline compares the cache-hit path with the bare server at one
// concurrency level.
type Headline struct {
	Connections     int           `json:"connections"`
	HitThroughput   float64       `json:"cache_hit_rps"`
	BareThroughput  float64       `json:"bare_rps"`
	ThroughputRatio float64       `json:"throughput_ratio"`
	HitP99          time.Duration `json:"cache_hit_p99_ns"`
	BareP99         time.Duration `json:"bare_p99_ns"`
	P99Ratio        float64       `json:"p99_ratio"`
	MeetsThroughput bool          `json:"meets_throughput_target"`
	MeetsGoal       bool          `json:"meets_throughput_goal"`
	MeetsP99        bool          `json:"meets_p99_target"`
}

// headline computes the comparison at conns connections from results, or
// returns false when either scenario was not run at that level.
func headline(results []Result, conns int) (Headline, bool) {
	var hit, bare *Result
	for i := range results {
		r := &results[i]
		if r.Connections != conns {
			continue
		}
		switch r.Scenario {
		case scenarioHit:
			hit = r
		case scenarioBare:
			bare = r
		}
	}
	if hit == nil || bare == nil || bare.Throughput == 0 || bare.P99 == 0 {
		return Headline{}, false
	}
	h := Headline{
		Connections:     conns,
		HitThroughput:   hit.Throughput,
		BareThroughput:  bare.Throughput,
		ThroughputRatio: hit.Throughput / bare.Throughput,
		HitP99:          hit.P99,
		BareP99:         bare.P99,
		P99Ratio:        float64(hit.P99) / float64(bare.P99),
	}
	h.MeetsThroughput = h.ThroughputRatio >= targetThroughputRatio
	h.MeetsGoal = h.ThroughputRatio >= goalThroughputRatio
	h.MeetsP99 = h.P99Ratio <= limitP99Ratio
	return h, true
}

// ProcMem is the memory of one process, in KiB as /proc reports it.
type ProcMem struct {
	PID  int    `json:"pid"`
	Name string `json:"name"`
	// IdleKiB is VmRSS after start-up and warm-up, before the load.
	IdleKiB uint64 `json:"idle_rss_kib"`
	// AfterKiB is VmRSS after the last scenario.
	AfterKiB uint64 `json:"after_rss_kib"`
	// PeakKiB is VmHWM (peak RSS) after the last scenario.
	PeakKiB uint64 `json:"peak_rss_kib"`
}

// Machine describes where the run happened.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model"`
	Kernel     string `json:"kernel"`
	GoVersion  string `json:"go_version"`
}

// Report is the whole output of a run.
type Report struct {
	Started  time.Time `json:"started"`
	Command  string    `json:"command"`
	Mode     string    `json:"mode"`
	Machine  Machine   `json:"machine"`
	Results  []Result  `json:"results"`
	Headline *Headline `json:"headline,omitempty"`
	Memory   []ProcMem `json:"memory"`
	Notes    []string  `json:"notes,omitempty"`
}

// fmtDur formats a latency with three significant digits in a unit that
// suits it.
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", int64(d))
	case d < time.Millisecond:
		return fmt.Sprintf("%.3gµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.3gs", d.Seconds())
	}
}

// fmtRate formats a throughput in operations per second.
func fmtRate(r float64) string {
	if r >= 100 {
		return fmt.Sprintf("%.0f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

func mib(kib uint64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(kib)/1024)
}

// WriteText writes the report as aligned tables.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "tongban-load  %s  mode=%s\n", r.Started.UTC().Format(time.RFC3339), r.Mode)
	fmt.Fprintf(&b, "machine: %d CPUs (GOMAXPROCS %d), %s, Linux %s, %s\n\n",
		r.Machine.CPUs, r.Machine.GOMAXPROCS, r.Machine.CPUModel, r.Machine.Kernel, r.Machine.GoVersion)

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconns\trequests\terrors\treq/s\tp50\tp99\tp99.9\tmax\tserver CPU\tplugin CPU\tharness CPU\tother CPU\t")
	for _, x := range r.Results {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t\n",
			x.Scenario, x.Connections, x.Requests, x.Errors, fmtRate(x.Throughput),
			fmtDur(x.P50), fmtDur(x.P99), fmtDur(x.P999), fmtDur(x.Max), x.ServerCPU, x.PluginCPU, x.HarnessCPU, x.OtherCPU)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("(CPU columns: cores used during the run, i.e. CPU seconds per wall-clock second; other = the rest of the machine)\n")
	for _, x := range r.Results {
		if x.FirstError != "" {
			fmt.Fprintf(&b, "first error of %s at %d connections: %s\n", x.Scenario, x.Connections, x.FirstError)
		}
	}

	if h := r.Headline; h != nil {
		fmt.Fprintf(&b, "\nHeadline at %d connections (cache-hit path vs bare net/http server, same client, same run):\n", h.Connections)
		fmt.Fprintf(&b, "  throughput ratio  %.2f  (cache-hit %s req/s / bare %s req/s; target >= %.2f, goal %.2f)  %s\n",
			h.ThroughputRatio, fmtRate(h.HitThroughput), fmtRate(h.BareThroughput),
			targetThroughputRatio, goalThroughputRatio, verdict(h.MeetsThroughput, h.MeetsGoal))
		fmt.Fprintf(&b, "  p99 ratio         %.2f  (cache-hit %s / bare %s; limit <= %.1f)  %s\n",
			h.P99Ratio, fmtDur(h.HitP99), fmtDur(h.BareP99), limitP99Ratio, map[bool]string{true: "MEETS TARGET", false: "ABOVE LIMIT"}[h.MeetsP99])
	}

	if len(r.Memory) > 0 {
		b.WriteString("\nMemory (VmRSS, MiB):\n")
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "process\tpid\tidle\tafter load\tpeak\t")
		for _, m := range r.Memory {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t\n", m.Name, m.PID, mib(m.IdleKiB), mib(m.AfterKiB), mib(m.PeakKiB))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(ok, goal bool) string {
	switch {
	case goal:
		return "MEETS GOAL"
	case ok:
		return "MEETS TARGET"
	default:
		return "BELOW TARGET"
	}
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
