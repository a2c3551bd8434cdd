// Command tongban-load is the load harness of Tongban. In one run on this
// machine it starts the demo gateway (the real tongban binary, with its
// connector plugin processes and simulated departments) and a bare
// net/http server process answering with the bytes of one cache-hit
// answer, drives both with the same HTTP/1.1 keep-alive client, measures
// the gateway's request paths and the policy engine and audit log in
// process, and reports throughput, latency percentiles, CPU use, memory
// and the cache-hit path as a ratio of the bare server.
//
//	go run ./cmd/tongban-load                      # every scenario at 1, 16 and 64 connections
//	go run ./cmd/tongban-load --json bench.json    # also write the report as JSON
//	go run ./cmd/tongban-load --cpuprofile hit.pprof --scenarios cache-hit --connections 64
//
// With --cpuprofile the gateway runs inside the harness process (demo.Start;
// plugins remain processes) and the cache-hit run at the headline level is
// profiled; the load generator's goroutines carry the label side=client,
// so `go tool pprof -tagignore side=client` shows the gateway alone.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the harness's flags.
type options struct {
	Duration     time.Duration
	Requests     uint64
	MissRequests uint64
	Connections  []int
	Headline     int
	Scenarios    []string
	Warmup       time.Duration
	Rounds       int
	HitKeys      int
	Applicants   int
	Keep         bool
	Tongban      string
	InProcess    bool
	CPUProfile   string
	BlockProfile string
	MutexProfile string
	AllocProfile string
	Goroutines   string
	Trace        string
	JSON         string
	Dir          string
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "bare" {
		if err := cmdBare(args[1:], stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "tongban-load bare: %v\n", err)
			return 1
		}
		return 0
	}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tongban-load: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := bench(ctx, o, stdout, stderr, strings.Join(append([]string{"tongban-load"}, args...), " "))
	if err != nil {
		fmt.Fprintf(stderr, "tongban-load: %v\n", err)
		return 1
	}
	for _, r := range rep.Results {
		if r.Errors > 0 {
			return 1
		}
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("tongban-load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "length of each scenario run at each concurrency level (ignored when --requests is set)")
	fs.Uint64Var(&o.Requests, "requests", 0, "fixed number of requests per scenario run instead of --duration")
	fs.Uint64Var(&o.MissRequests, "miss-requests", 2000, "requests of each cache-miss run (each key is asked once; 6127 keys in all)")
	conns := fs.String("connections", "1,16,64", "comma-separated concurrency levels (connections, or goroutines in process)")
	fs.IntVar(&o.Headline, "headline", 0, "concurrency level of the cache-hit / bare comparison (default: the largest of --connections)")
	scen := fs.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios: "+strings.Join(allScenarios, ", "))
	fs.DurationVar(&o.Warmup, "warmup", time.Second, "unmeasured warm-up before each run (not for cache-miss)")
	fs.IntVar(&o.Rounds, "rounds", 3, "cache-hit and bare alternate in this many rounds at each level (each --duration/rounds long)")
	fs.IntVar(&o.HitKeys, "hit-keys", 64, "number of warmed credit codes the cache-hit scenario cycles through")
	fs.IntVar(&o.Applicants, "applicants", 32, "number of warmed applicants the auto-fill scenario cycles through")
	fs.BoolVar(&o.Keep, "keep", false, "leave the demo running after the report (until Ctrl-C) and keep --dir")
	fs.StringVar(&o.Tongban, "tongban", "", "tongban binary to run (default: go build ./cmd/tongban into --dir)")
	fs.BoolVar(&o.InProcess, "inprocess", false, "run the gateway inside this process (demo.Start) instead of as `tongban demo`")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the cache-hit run at the headline level to FILE (implies --inprocess)")
	fs.StringVar(&o.BlockProfile, "blockprofile", "", "write a blocking profile of the cache-hit run at the headline level to FILE (implies --inprocess)")
	fs.StringVar(&o.AllocProfile, "allocprofile", "", "write an allocation profile (bytes and objects allocated, sampled) of the cache-hit run at the headline level to FILE (implies --inprocess)")
	fs.StringVar(&o.MutexProfile, "mutexprofile", "", "write a mutex contention profile of the cache-hit run at the headline level to FILE (implies --inprocess)")
	fs.StringVar(&o.Goroutines, "goroutines", "", "write the goroutine stacks halfway through the cache-hit run at the headline level to FILE (implies --inprocess)")
	fs.StringVar(&o.Trace, "trace", "", "write an execution trace of the cache-hit run at the headline level to FILE (implies --inprocess; see go tool trace -pprof=sched|syscall)")
	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to FILE")
	fs.StringVar(&o.Dir, "dir", "", "working directory for the binary, the demo state and logs (default: a temporary one, removed)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: tongban-load [flags]\n\nScenarios:\n")
		for _, s := range allScenarios {
			fmt.Fprintf(stderr, "  %-10s %s\n", s, scenarioHelp[s])
		}
		fmt.Fprintf(stderr, "\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if o.Connections, err = parseConnections(*conns); err != nil {
		return o, err
	}
	if o.Scenarios, err = parseScenarios(*scen); err != nil {
		return o, err
	}
	if o.Headline == 0 {
		o.Headline = slices.Max(o.Connections)
	}
	if o.Duration <= 0 && o.Requests == 0 {
		return o, errors.New("--duration must be positive (or set --requests)")
	}
	if o.HitKeys < 1 || o.Applicants < 1 || o.Rounds < 1 {
		return o, errors.New("--hit-keys, --applicants and --rounds must be at least 1")
	}
	if o.profiling() {
		o.InProcess = true
	}
	return o, nil
}

// parseConnections parses "1,16,64" into sorted, distinct levels.
func parseConnections(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 4096 {
			return nil, fmt.Errorf("--connections: %q is not a number from 1 to 4096", f)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// parseScenarios parses a comma-separated list of scenario names into the
// canonical order.
func parseScenarios(s string) ([]string, error) {
	want := map[string]bool{}
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if !slices.Contains(allScenarios, f) {
			return nil, fmt.Errorf("--scenarios: unknown scenario %q (known: %s)", f, strings.Join(allScenarios, ", "))
		}
		want[f] = true
	}
	var out []string
	for _, n := range allScenarios {
		if want[n] {
			out = append(out, n)
		}
	}
	return out, nil
}

// bench runs the whole measurement and writes the report.
func bench(ctx context.Context, o options, stdout, stderr io.Writer, command string) (*Report, error) {
	progress := func(format string, args ...any) { fmt.Fprintf(stderr, "tongban-load: "+format+"\n", args...) }
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tongban-load-")
		if err != nil {
			return nil, err
		}
		dir = d
		if !o.Keep {
			defer os.RemoveAll(dir)
		}
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}

	bin := o.Tongban
	if bin == "" {
		progress("building tongban into %s", dir)
		b, err := buildTongban(ctx, dir)
		if err != nil {
			return nil, err
		}
		bin = b
	}
	mode := "process"
	start := startDemoProcess
	if o.InProcess {
		mode, start = "in-process", startDemoInProcess
	}
	progress("starting the demo gateway (%s mode)", mode)
	gw, err := start(ctx, bin, dir)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := gw.stop(); err != nil {
			progress("stopping the demo: %v", err)
		}
	}()
	maxConns := slices.Max(o.Connections)
	client := &http.Client{Transport: newTransport(maxConns), Timeout: 30 * time.Second}

	progress("gateway at %s; re-issuing the approval bureau's grants with a load-sized quota", gw.URL)
	newIDs, err := reissueGrants(ctx, client, gw.URL)
	if err != nil {
		return nil, err
	}
	w := newWorkload(o.HitKeys, o.Applicants)
	progress("warming %d credit codes and %d auto-fill applicants", len(w.hitCodes), len(w.applicants))
	answer, err := warmHits(ctx, client, gw.URL, w.hitCodes, newIDs["demo-approval-licences"])
	if err != nil {
		return nil, err
	}
	var summaries map[string]string
	if slices.Contains(o.Scenarios, scenarioAutofill) {
		if summaries, err = warmAutofill(ctx, client, gw.URL, w.applicants); err != nil {
			return nil, err
		}
	}
	bodyFile := filepath.Join(dir, "cache-hit-answer.json")
	if err := os.WriteFile(bodyFile, answer, 0o600); err != nil {
		return nil, err
	}
	bare, err := startBare(ctx, bodyFile)
	if err != nil {
		return nil, err
	}
	defer func() { _ = bare.stop() }()

	plugins, err := pluginPIDs(gw.PID)
	if err != nil {
		return nil, fmt.Errorf("finding the plugin processes: %w", err)
	}
	procs := append([]int{gw.PID}, plugins...)
	idle := map[int]uint64{}
	for _, p := range procs {
		rss, _, err := memoryOf(p)
		if err != nil {
			return nil, fmt.Errorf("reading the memory of process %d: %w", p, err)
		}
		idle[p] = rss
	}

	ops := map[string]op{
		scenarioHit:      hitOp(client, gw.URL, w.hitCodes),
		scenarioBare:     hitOp(client, bare.URL, w.hitCodes),
		scenarioAutofill: autofillOp(client, gw.URL, w.applicants, summaries),
	}
	if ops[scenarioPolicy], err = policyOp(time.Now()); err != nil {
		return nil, err
	}
	if slices.Contains(o.Scenarios, scenarioAudit) {
		l, err := auditLog(ctx, filepath.Join(dir, "audit-bench"))
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ops[scenarioAudit] = auditOp(l, w.hitCodes)
	}

	rep := &Report{Started: time.Now(), Command: command, Mode: mode, Machine: machine()}
	missNext := 0
	self := os.Getpid()
	// Audit group commits during the cache-hit runs, by connections.
	commits, entries, commitsBad := map[int]float64{}, map[int]float64{}, map[int]bool{}
	for _, conns := range o.Connections {
		bareDone := false
		for _, name := range o.Scenarios {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if name == scenarioBare && bareDone {
				continue
			}
			settle()
			spec := loadSpec{Connections: conns, Duration: o.Duration, Requests: o.Requests}
			fn := ops[name]
			if name == scenarioMiss {
				n := o.MissRequests
				if o.Requests > 0 {
					n = o.Requests
				}
				n = min(n, uint64(len(w.missKeys)-missNext))
				if n == 0 {
					progress("cache-miss at %d connections skipped: all %d keys were used", conns, len(w.missKeys))
					continue
				}
				spec.Requests = n
				fn = missOp(client, gw.URL, w.missKeys[missNext:missNext+int(n)])
				missNext += int(n)
			} else if o.Warmup > 0 {
				runLoad(ctx, loadSpec{Connections: conns, Duration: o.Warmup}, fn)
			}
			serverOf := func(name string) int {
				switch {
				case name == scenarioBare:
					return bare.PID
				case o.InProcess || name == scenarioPolicy || name == scenarioAudit:
					return 0
				}
				return gw.PID
			}
			measure := func(name string, spec loadSpec, fn op, acc *accumulator) {
				server := serverOf(name)
				var c0, e0 float64
				var baseErr error
				if name == scenarioHit {
					c0, e0, baseErr = auditCommits(ctx, client, gw.URL)
				}
				cpu0s, cpu0p, cpu0h, m0 := cpuOf(server), cpuOf(plugins...), cpuOf(self), machineCPU()
				res := runLoad(ctx, spec, fn)
				cpu1s, cpu1p, cpu1h, m1 := cpuOf(server), cpuOf(plugins...), cpuOf(self), machineCPU()
				acc.add(res, cpu1s-cpu0s, cpu1p-cpu0p, cpu1h-cpu0h, m0, m1)
				if name == scenarioHit {
					if c1, e1, err := auditCommits(ctx, client, gw.URL); err != nil || baseErr != nil {
						err = errors.Join(baseErr, err)
						progress("reading the audit commit counters: %v", err)
						commitsBad[conns] = true
					} else {
						commits[conns] += c1 - c0
						entries[conns] += e1 - e0
					}
				}
			}

			var stopProfiles func() error
			if name == scenarioHit && conns == o.Headline && o.profiling() {
				if stopProfiles, err = startProfiles(o, o.Duration/2); err != nil {
					return nil, err
				}
			}
			accs := map[string]*accumulator{name: newAccumulator()}
			if name == scenarioHit && slices.Contains(o.Scenarios, scenarioBare) {
				// The headline pair runs in alternating rounds, so that a
				// burst of load from other tenants of the machine weighs
				// on both alike.
				bareDone = true
				accs[scenarioBare] = newAccumulator()
				if o.Warmup > 0 {
					runLoad(ctx, loadSpec{Connections: conns, Duration: o.Warmup}, ops[scenarioBare])
				}
				progress("cache-hit and bare at %d connections, %d alternating rounds", conns, o.Rounds)
				for i := range o.Rounds {
					rs := loadSpec{Connections: conns, Duration: o.Duration / time.Duration(o.Rounds)}
					if o.Requests > 0 {
						rs.Requests = o.Requests / uint64(o.Rounds)
						if i == 0 {
							rs.Requests += o.Requests % uint64(o.Rounds)
						}
					}
					measure(scenarioHit, rs, fn, accs[scenarioHit])
					measure(scenarioBare, rs, ops[scenarioBare], accs[scenarioBare])
				}
			} else {
				progress("%s at %d connections", name, conns)
				measure(name, spec, fn, accs[name])
			}
			if stopProfiles != nil {
				if err := stopProfiles(); err != nil {
					return nil, err
				}
				progress("profiles of %s at %d connections written", name, conns)
			}
			for _, n := range []string{name, scenarioBare} {
				if a := accs[n]; a != nil {
					rep.Results = append(rep.Results, a.result(n, conns, rep.Machine.CPUs))
				}
			}
		}
	}

	for _, p := range procs {
		rss, hwm, err := memoryOf(p)
		if err != nil {
			progress("reading the memory of process %d: %v", p, err)
		}
		name := "gateway + simulators (tongban demo)"
		if p == gw.PID && o.InProcess {
			name = "harness + gateway + simulators (in process)"
		} else if p != gw.PID {
			name = connectorName(p)
		}
		rep.Memory = append(rep.Memory, ProcMem{PID: p, Name: name, IdleKiB: idle[p], AfterKiB: rss, PeakKiB: hwm})
	}
	if rss, hwm, err := memoryOf(bare.PID); err == nil {
		rep.Memory = append(rep.Memory, ProcMem{PID: bare.PID, Name: "bare net/http server", AfterKiB: rss, PeakKiB: hwm})
	}
	if h, ok := headline(rep.Results, o.Headline); ok {
		rep.Headline = &h
	}
	rep.Notes = append(rep.Notes,
		fmt.Sprintf("the approval bureau's demo grants were re-issued through the grant workflow with a quota of %d/min, %d/day (quota checks stay in the path)", loadQuota["per_minute"], loadQuota["per_day"]),
		"policy and audit run in the harness process (no HTTP); their CPU is in the harness column",
		"the machine is shared and noisy: one run, compare numbers within it")
	for _, conns := range o.Connections {
		if commits[conns] > 0 && !commitsBad[conns] {
			rep.Notes = append(rep.Notes, fmt.Sprintf("cache-hit at %d connections: %.1f audit entries per group commit (write + fsync)", conns, entries[conns]/commits[conns]))
		}
	}
	if o.InProcess {
		rep.Notes = append(rep.Notes, "in-process mode: gateway and load generator share one Go runtime; use process mode for the headline numbers")
	}
	if err := rep.WriteText(stdout); err != nil {
		return nil, err
	}
	if o.JSON != "" {
		f, err := os.Create(o.JSON)
		if err != nil {
			return nil, err
		}
		if err := rep.WriteJSON(f); err != nil {
			f.Close()
			return nil, err
		}
		if err := f.Close(); err != nil {
			return nil, err
		}
	}
	if o.Keep {
		fmt.Fprintf(stdout, "\nThe demo keeps running at %s (state in %s); Ctrl-C stops it.\n", gw.URL, dir)
		<-ctx.Done()
	}
	return rep, nil
}

// profiling reports whether any profile or trace is asked for.
func (o options) profiling() bool {
	return o.CPUProfile != "" || o.BlockProfile != "" || o.MutexProfile != "" || o.AllocProfile != "" || o.Goroutines != "" || o.Trace != ""
}

// accumulator sums the runs (rounds) of one scenario at one level.
type accumulator struct {
	res                       loadResult
	server, plugins, harness  time.Duration
	machineBusy, machineTotal uint64
}

func newAccumulator() *accumulator { return &accumulator{res: loadResult{Hist: NewHistogram()}} }

// add adds a run with the CPU its processes used and the machine-wide CPU
// counters before (m0) and after (m1) it.
func (a *accumulator) add(r loadResult, server, plugins, harness time.Duration, m0, m1 cpuTimes) {
	a.res.Requests += r.Requests
	a.res.Errors += r.Errors
	if a.res.FirstError == "" {
		a.res.FirstError = r.FirstError
	}
	a.res.Elapsed += r.Elapsed
	a.res.Hist.Merge(r.Hist)
	a.server += server
	a.plugins += plugins
	a.harness += harness
	if m1.Total > m0.Total {
		a.machineBusy += m1.Busy - m0.Busy
		a.machineTotal += m1.Total - m0.Total
	}
}

// result turns the accumulated runs into a report row.
func (a *accumulator) result(name string, conns, cpus int) Result {
	r := a.res
	secs := r.Elapsed.Seconds()
	res := Result{
		Scenario:    name,
		Connections: conns,
		Requests:    r.Requests,
		Errors:      r.Errors,
		FirstError:  r.FirstError,
		Seconds:     secs,
		Mean:        r.Hist.Mean(),
		P50:         r.Hist.Quantile(0.50),
		P99:         r.Hist.Quantile(0.99),
		P999:        r.Hist.Quantile(0.999),
		Max:         r.Hist.Max(),
	}
	if secs > 0 {
		res.Throughput = float64(r.Hist.Count()) / secs
		res.ServerCPU = a.server.Seconds() / secs
		res.PluginCPU = a.plugins.Seconds() / secs
		res.HarnessCPU = a.harness.Seconds() / secs
	}
	if a.machineTotal > 0 {
		busy := float64(a.machineBusy) / float64(a.machineTotal) * float64(cpus)
		res.OtherCPU = max(0, busy-res.ServerCPU-res.PluginCPU-res.HarnessCPU)
	}
	return res
}

// startProfiles starts the profiles the options ask for and returns the
// function that stops them and writes them out.
func startProfiles(o options, half time.Duration) (func() error, error) {
	var cpu *os.File
	if o.CPUProfile != "" {
		f, err := os.Create(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("starting the CPU profile: %w", err)
		}
		cpu = f
	}
	var tr *os.File
	if o.Trace != "" {
		f, err := os.Create(o.Trace)
		if err != nil {
			return nil, err
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return nil, fmt.Errorf("starting the execution trace: %w", err)
		}
		tr = f
	}
	if o.BlockProfile != "" {
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
	}
	if o.MutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
	}
	if o.AllocProfile != "" {
		// Only what is allocated from here on counts (the profile is
		// cumulative since start-up; compare with pprof -base if needed).
		runtime.GC()
		if err := writeProfile("allocs", o.AllocProfile+".base"); err != nil {
			return nil, err
		}
	}
	snap := make(chan error, 1)
	if o.Goroutines != "" {
		t := time.AfterFunc(half, func() { snap <- writeProfile("goroutine", o.Goroutines) })
		defer func() { _ = t }()
	} else {
		snap <- nil
	}
	return func() error {
		errs := []error{<-snap}
		if cpu != nil {
			pprof.StopCPUProfile()
			errs = append(errs, cpu.Close())
		}
		if tr != nil {
			trace.Stop()
			errs = append(errs, tr.Close())
		}
		if o.BlockProfile != "" {
			errs = append(errs, writeProfile("block", o.BlockProfile))
			runtime.SetBlockProfileRate(0)
		}
		if o.AllocProfile != "" {
			errs = append(errs, writeProfile("allocs", o.AllocProfile))
		}
		if o.MutexProfile != "" {
			errs = append(errs, writeProfile("mutex", o.MutexProfile))
			runtime.SetMutexProfileFraction(0)
		}
		return errors.Join(errs...)
	}, nil
}

func writeProfile(name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	debug := 0
	if name == "goroutine" {
		debug = 1
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		f.Close()
		return fmt.Errorf("writing the %s profile: %w", name, err)
	}
	return f.Close()
}
