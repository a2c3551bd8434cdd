package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"

	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Process states reported in ConnectorStatus.Process.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateStopped    = "stopped"
)

// ErrChecksumMismatch is wrapped by the error refusing an external connector
// binary whose SHA-256 digest is not the configured one.
var ErrChecksumMismatch = errors.New("connector binary checksum mismatch")

// exitPoll is how often a supervisor checks whether its plugin process has
// exited; a failed call checks at once.
const exitPoll = 100 * time.Millisecond

// connector is one configured connector and its plugin process.
type connector struct {
	h       *Host
	cfg     ConnectorConfig
	log     *slog.Logger
	sem     chan struct{}
	breaker *gobreaker.CircuitBreaker[*v1.FetchResponse]
	win     *window
	kick    chan struct{} // asks the supervisor to check the process now

	mu      sync.Mutex
	state   string
	inst    *instance
	desc    *v1.Descriptor // from the first start; routing is fixed to it
	health  string
	changed chan struct{} // closed and replaced whenever inst changes
	// cursors holds, per watched dataset set (watchKey), the last non-empty
	// ChangeEvent.cursor delivered by a watch of this connector.
	cursors map[string]string
}

// instance is one running plugin process.
type instance struct {
	pc *plugin.Client
	cl *sdk.Client
}

func newConnector(h *Host, cc ConnectorConfig) *connector {
	c := &connector{
		h:       h,
		cfg:     cc,
		log:     h.log.With("connector", cc.Name),
		sem:     make(chan struct{}, cc.MaxConcurrent),
		win:     newWindow(h.cfg.StatusWindow),
		kick:    make(chan struct{}, 1),
		state:   StateStopped,
		health:  "unknown",
		changed: make(chan struct{}),
	}
	c.breaker = gobreaker.NewCircuitBreaker[*v1.FetchResponse](gobreaker.Settings{
		Name:        cc.Name,
		MaxRequests: uint32(cc.Breaker.HalfOpenMaxRequests),
		Interval:    cc.Breaker.Interval,
		Timeout:     cc.Breaker.Timeout,
		ReadyToTrip: func(n gobreaker.Counts) bool {
			return n.ConsecutiveFailures >= uint32(cc.Breaker.ConsecutiveFailures)
		},
		IsSuccessful: func(err error) bool { return !departmentFailure(err) },
		IsExcluded: func(err error) bool {
			var ex excluded
			return errors.As(err, &ex)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			h.metrics.breaker.WithLabelValues(cc.Name).Set(float64(breakerGauge(to)))
			c.log.Warn("circuit breaker changed state", "from", from.String(), "to", to.String())
		},
	})
	h.metrics.breaker.WithLabelValues(cc.Name).Set(0)
	h.metrics.up.WithLabelValues(cc.Name).Set(0)
	h.metrics.inFlight.WithLabelValues(cc.Name).Set(0)
	h.metrics.restarts.WithLabelValues(cc.Name).Add(0)
	return c
}

func breakerGauge(s gobreaker.State) int {
	switch s {
	case gobreaker.StateHalfOpen:
		return 1
	case gobreaker.StateOpen:
		return 2
	default:
		return 0
	}
}

// departmentFailure reports whether err counts against the department in the
// breaker and the error rate. A bad or unknown key, a refused permission, a
// query matching more records than the connector may return, or a caller
// who gave up says nothing about the department's health.
func departmentFailure(err error) bool {
	if err == nil {
		return false
	}
	switch apierr.CodeOf(err) {
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Canceled, codes.ResourceExhausted:
		return false
	}
	var ex excluded
	return !errors.As(err, &ex)
}

// excluded marks an error the breaker must not count: the caller's own
// context ended.
type excluded struct{ err error }

func (e excluded) Error() string { return e.err.Error() }
func (e excluded) Unwrap() error { return e.err }

// --- lifecycle ---

// startFirst launches the plugin for Start.
func (c *connector) startFirst(ctx context.Context) error {
	c.setState(StateStarting)
	inst, desc, err := c.launch(ctx)
	if err != nil {
		c.setState(StateStopped)
		c.win.setLastError(time.Now(), err.Error())
		return err
	}
	c.mu.Lock()
	c.desc = desc
	c.mu.Unlock()
	c.setInstance(inst)
	c.checkHealth(ctx)
	return nil
}

// launch starts a plugin process, negotiates the protocol and asks it to
// describe itself.
func (c *connector) launch(ctx context.Context) (*instance, *v1.Descriptor, error) {
	cmd, err := c.command()
	if err != nil {
		return nil, nil, err
	}
	pc := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.PluginSet(nil),
		Cmd:              cmd,
		SkipHostEnv:      true, // command() set the whole environment
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     c.cfg.StartTimeout,
		Logger:           hclogAdapter(c.h.log, c.h.opts.PluginLogLevel, "connector."+c.cfg.Name),
		// Within a traced request every plugin call is a client span whose
		// W3C traceparent travels to the plugin in the call's metadata.
		GRPCDialOptions: []grpc.DialOption{grpc.WithStatsHandler(newPluginTracing())},
	})
	cl, err := sdk.Dispense(c.cfg.Name, pc)
	if err != nil {
		return nil, nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	desc, err := cl.Describe(dctx)
	if err != nil {
		pc.Kill()
		return nil, nil, fmt.Errorf("connector %q: describe: %w", c.cfg.Name, err)
	}
	if err := checkDescriptor(desc); err != nil {
		pc.Kill()
		return nil, nil, fmt.Errorf("connector %q: %w", c.cfg.Name, err)
	}
	return &instance{pc: pc, cl: cl}, desc, nil
}

// checkDescriptor checks what routing relies on: a department and datasets
// named after it.
func checkDescriptor(d *v1.Descriptor) error {
	if d.GetDepartment() == "" {
		return errors.New("descriptor names no department")
	}
	if len(d.GetDatasets()) == 0 {
		return fmt.Errorf("department %q describes no dataset", d.GetDepartment())
	}
	for _, ds := range d.GetDatasets() {
		if !strings.HasPrefix(ds.GetName(), d.GetDepartment()+".") {
			return fmt.Errorf("dataset %q is not named %q", ds.GetName(), d.GetDepartment()+".<dataset>")
		}
	}
	return nil
}

// command builds the plugin command with the connector's environment. For an
// external connector it verifies the binary's checksum first.
func (c *connector) command() (*exec.Cmd, error) {
	var cmd *exec.Cmd
	if c.cfg.Type == TypeExternal {
		if err := verifyChecksum(c.cfg.Path, c.cfg.SHA256); err != nil {
			return nil, fmt.Errorf("connector %q: %w", c.cfg.Name, err)
		}
		cmd = exec.Command(c.cfg.Path)
	} else {
		var err error
		if cmd, err = c.h.opts.Launcher(c.cfg.Type); err != nil {
			return nil, fmt.Errorf("connector %q: launching type %s: %w", c.cfg.Name, c.cfg.Type, err)
		}
	}
	settings, err := json.Marshal(jsonable(c.cfg.Settings))
	if err != nil {
		return nil, fmt.Errorf("connector %q: encoding settings as JSON: %w", c.cfg.Name, err)
	}
	if c.cfg.Settings == nil {
		settings = []byte("{}")
	}
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, c.h.opts.PluginEnv...)
	cmd.Env = append(cmd.Env,
		sdk.EnvName+"="+c.cfg.Name,
		sdk.EnvConfig+"="+string(settings),
		sdk.EnvLogLevel+"="+c.h.opts.PluginLogLevel.String(),
	)
	return cmd, nil
}

// jsonable converts the map[any]any values YAML decoders may produce into
// map[string]any, which encoding/json accepts.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = jsonable(x)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[fmt.Sprint(k)] = jsonable(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = jsonable(x)
		}
		return out
	default:
		return v
	}
}

// verifyChecksum refuses the file at path unless its SHA-256 digest is want.
func verifyChecksum(path, want string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening connector binary: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("reading connector binary %s: %w", path, err)
	}
	got := hex.EncodeToString(h.Sum(nil))
	if !strings.EqualFold(got, want) {
		return fmt.Errorf("%w: %s: expected sha256 %s, actual sha256 %s", ErrChecksumMismatch, path, strings.ToLower(want), got)
	}
	return nil
}

func (c *connector) setState(s string) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

// setInstance installs inst (nil when the process is gone) and wakes those
// waiting for a change.
func (c *connector) setInstance(inst *instance) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inst = inst
	if inst != nil {
		c.state = StateRunning
		c.h.metrics.up.WithLabelValues(c.cfg.Name).Set(1)
	} else {
		c.h.metrics.up.WithLabelValues(c.cfg.Name).Set(0)
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *connector) current() (*instance, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.inst, c.changed
}

func (c *connector) descriptor() *v1.Descriptor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.desc
}

type snapshot struct {
	process, health string
	desc            *v1.Descriptor
}

func (c *connector) snapshot() snapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return snapshot{process: c.state, health: c.health, desc: c.desc}
}

func (c *connector) source() Source {
	d := c.descriptor()
	return Source{Department: d.GetDepartment(), DepartmentName: d.GetDepartmentName(), Connector: c.cfg.Name}
}

func (c *connector) department() string {
	if d := c.descriptor(); d != nil {
		return d.GetDepartment()
	}
	return c.cfg.Name
}

func (c *connector) canWatch() bool {
	return slices.Contains(c.descriptor().GetCapabilities(), "watch")
}

// stop kills the plugin process.
func (c *connector) stop() {
	inst, _ := c.current()
	if inst != nil {
		inst.pc.Kill()
		c.setInstance(nil)
	}
	c.setState(StateStopped)
}

// checkNow asks the supervisor to look at the process without waiting for
// its next poll.
func (c *connector) checkNow() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// supervise restarts the plugin process when it exits, until ctx ends. The
// backoff carries over from one restart to the next while the process keeps
// dying within RestartBackoff.Max of its start, so a connector that crashes
// right after every successful start is not relaunched in a tight loop; a
// process that ran longer than that starts the backoff afresh.
func (c *connector) supervise(ctx context.Context) {
	tick := time.NewTicker(exitPoll)
	defer tick.Stop()
	wait, started := c.cfg.RestartBackoff.Min, time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.kick:
		}
		inst, _ := c.current()
		if inst == nil || !inst.pc.Exited() {
			continue
		}
		if time.Since(started) >= c.cfg.RestartBackoff.Max {
			wait = c.cfg.RestartBackoff.Min
		}
		c.log.Warn("connector process exited; restarting", "department", c.department(), "backoff", wait)
		c.setInstance(nil)
		c.setState(StateRestarting)
		c.h.metrics.restarts.WithLabelValues(c.cfg.Name).Inc()
		c.win.setLastError(time.Now(), "connector process exited")
		inst.pc.Kill() // releases go-plugin's resources for the dead process
		wait = c.restart(ctx, wait)
		started = time.Now()
	}
}

// restart launches the plugin again, waiting about wait before the first
// attempt and doubling it (up to RestartBackoff.Max) between attempts, until
// it runs or ctx ends. It returns the wait for the next restart.
func (c *connector) restart(ctx context.Context, wait time.Duration) time.Duration {
	for attempt := 1; ; attempt++ {
		if !sleep(ctx, jitter(wait)) {
			return wait
		}
		next := min(2*wait, c.cfg.RestartBackoff.Max)
		inst, desc, err := c.launch(ctx)
		if err == nil {
			if !sameDatasets(desc, c.descriptor()) {
				c.log.Warn("restarted connector describes other datasets than at start; routing keeps the datasets of the start")
			}
			c.setInstance(inst)
			c.log.Info("connector process restarted", "attempt", attempt)
			return next
		}
		c.log.Error("restarting connector failed", "attempt", attempt, "err", err)
		c.win.setLastError(time.Now(), err.Error())
		wait = next
	}
}

func sameDatasets(a, b *v1.Descriptor) bool {
	names := func(d *v1.Descriptor) []string {
		var n []string
		for _, ds := range d.GetDatasets() {
			n = append(n, ds.GetName())
		}
		slices.Sort(n)
		return n
	}
	return slices.Equal(names(a), names(b))
}

// healthLoop checks the connector's health every HealthInterval.
func (c *connector) healthLoop(ctx context.Context) {
	tick := time.NewTicker(c.h.cfg.HealthInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			c.checkHealth(ctx)
		}
	}
}

func (c *connector) checkHealth(ctx context.Context) {
	health := "ok"
	inst, _ := c.current()
	if inst == nil {
		health = "connector process is not running"
	} else {
		hctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		err := inst.cl.Health(hctx)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			health = err.Error()
			if apierr.CodeOf(err) == codes.Unavailable {
				c.checkNow()
			}
		}
	}
	ok := 0.0
	if health == "ok" {
		ok = 1
	}
	c.h.metrics.healthy.WithLabelValues(c.cfg.Name).Set(ok)
	c.mu.Lock()
	c.health = health
	c.mu.Unlock()
}

// --- calls ---

// fetch is one logical read: attempts with retries, recorded once. Within a
// traced request it is span "connector.fetch", parent of one client span per
// attempt.
func (c *connector) fetch(ctx context.Context, req *v1.FetchRequest) (resp *v1.FetchResponse, err error) {
	ctx, span := startSpan(ctx, "connector.fetch")
	attempts := 0
	if span.IsRecording() {
		defer func() {
			span.SetAttributes(
				attribute.String("tongban.department", c.department()),
				attribute.String("tongban.connector", c.cfg.Name),
				attribute.String("tongban.dataset", req.GetDataset()),
				attribute.Int("tongban.attempts", attempts),
			)
			if err != nil {
				span.SetAttributes(attribute.String("tongban.reason", apierr.From(err).Reason))
				if departmentFailure(err) {
					span.SetStatus(otelcodes.Error, "department call failed")
				}
			}
			span.End()
		}()
	}
	start := time.Now()
	if ctx.Err() != nil {
		err := c.callerErr(ctx)
		c.record(req.GetDataset(), start, err)
		return nil, err
	}
	wait := c.cfg.Retries.Backoff.Min
	for attempt := 1; ; attempt++ {
		attempts = attempt
		resp, err = c.attempt(ctx, req)
		if err == nil || attempt >= c.cfg.Retries.Attempts || !retryable(err) {
			break
		}
		c.log.Debug("retrying fetch", "dataset", req.GetDataset(), "attempt", attempt, "err", err)
		if !sleep(ctx, jitter(wait)) {
			err = c.callerErr(ctx)
			break
		}
		wait = min(2*wait, c.cfg.Retries.Backoff.Max)
	}
	c.record(req.GetDataset(), start, err)
	return resp, err
}

// retryable reports whether a read that failed with err may be tried again:
// the department was unreachable (not because the breaker is open) or the
// call was aborted.
func retryable(err error) bool {
	switch apierr.CodeOf(err) {
	case codes.Unavailable:
		// An open breaker or a full bulkhead means the connector is already
		// overloaded: retrying would only add load.
		r := apierr.ReasonOf(err)
		return r != apierr.ReasonBreakerOpen && r != apierr.ReasonBulkheadFull
	case codes.Aborted:
		return true
	}
	return false
}

// attempt is one try through the bulkhead and the breaker.
func (c *connector) attempt(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	if err := c.acquire(ctx); err != nil {
		return nil, err
	}
	defer c.release()
	resp, err := c.breaker.Execute(func() (*v1.FetchResponse, error) {
		inst, _ := c.current()
		if inst == nil {
			return nil, c.unavailable(errors.New("connector process is not running"))
		}
		cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
		defer cancel()
		resp, err := inst.cl.Fetch(cctx, req)
		if err != nil {
			return nil, c.classify(ctx, cctx, err)
		}
		return resp, nil
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return nil, c.breakerOpen()
	}
	var ex excluded
	if errors.As(err, &ex) {
		err = ex.err
	}
	return resp, err
}

// acquire takes a bulkhead slot, waiting at most CallTimeout (or until the
// caller gives up).
func (c *connector) acquire(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		c.h.metrics.inFlight.WithLabelValues(c.cfg.Name).Inc()
		return nil
	default:
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	select {
	case c.sem <- struct{}{}:
		c.h.metrics.inFlight.WithLabelValues(c.cfg.Name).Inc()
		return nil
	case <-wctx.Done():
		if ctx.Err() != nil {
			return c.callerErr(ctx)
		}
		dept := c.department()
		return (&apierr.Error{
			Code:   codes.Unavailable,
			Reason: apierr.ReasonBulkheadFull,
			Msg:    fmt.Sprintf("department %q is unavailable: all %d call slots of connector %q are busy", dept, c.cfg.MaxConcurrent, c.cfg.Name),
		}).With("department", dept).With("connector", c.cfg.Name)
	}
}

func (c *connector) release() {
	<-c.sem
	c.h.metrics.inFlight.WithLabelValues(c.cfg.Name).Dec()
}

// classify turns the error of a plugin call into the host's answer. ctx is
// the caller's context, cctx the call's (with CallTimeout).
func (c *connector) classify(ctx, cctx context.Context, err error) error {
	dept := c.department()
	if ctx.Err() != nil {
		return excluded{c.callerErr(ctx)}
	}
	e := apierr.From(err)
	if errors.Is(cctx.Err(), context.DeadlineExceeded) || e.Code == codes.DeadlineExceeded {
		// The plugin's side of the call may see the deadline pass, and say
		// so, a moment before this side does.
		callerDeadline, callerHas := ctx.Deadline()
		callDeadline, _ := cctx.Deadline()
		if callerHas && !callerDeadline.After(callDeadline) {
			return excluded{apierr.Newf(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded,
				"deadline exceeded waiting for department %q", dept).With("department", dept)}
		}
		return apierr.Newf(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded,
			"department %q did not answer within %v", dept, c.cfg.CallTimeout).
			With("department", dept).With("connector", c.cfg.Name).WithCause(err)
	}
	if (e.Code == codes.Unavailable && e.Meta["department"] == "") || e.Code == codes.Canceled {
		// The transport failed or the connection closed under a call its
		// caller did not cancel: most likely the plugin process died.
		c.checkNow()
		return c.unavailable(err)
	}
	if e.Meta["department"] == "" {
		e = e.With("department", dept)
	}
	return e
}

// callerErr is the error of a call whose caller's context ended.
func (c *connector) callerErr(ctx context.Context) error {
	dept := c.department()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return apierr.Newf(codes.DeadlineExceeded, apierr.ReasonDeadlineExceeded,
			"deadline exceeded waiting for department %q", dept).With("department", dept)
	}
	return apierr.Newf(codes.Canceled, sdk.ReasonCanceled, "request to department %q cancelled", dept).With("department", dept)
}

func (c *connector) unavailable(cause error) error {
	return apierr.Unavailable(c.department(), cause).With("connector", c.cfg.Name)
}

func (c *connector) breakerOpen() error {
	dept := c.department()
	return apierr.Newf(codes.Unavailable, apierr.ReasonBreakerOpen,
		"department %q is unavailable: circuit breaker open after repeated failures", dept).
		With("department", dept).With("connector", c.cfg.Name)
}

// record counts a finished logical call in the metrics and the status window.
func (c *connector) record(dataset string, start time.Time, err error) {
	took := time.Since(start)
	outcome := "ok"
	if err != nil {
		outcome = strings.ToLower(apierr.From(err).Reason)
	}
	c.h.metrics.calls.WithLabelValues(c.cfg.Name, dataset, outcome).Inc()
	c.h.metrics.latency.WithLabelValues(c.cfg.Name, dataset).Observe(took.Seconds())
	failed := departmentFailure(err)
	errText := ""
	if failed {
		errText = apierr.From(err).Msg
	}
	c.win.add(sample{at: start, took: took, failed: failed}, errText)
}

// watchKey identifies a watched dataset set: the sorted names, "" for all.
func watchKey(datasets []string) string {
	ds := slices.Clone(datasets)
	slices.Sort(ds)
	return strings.Join(slices.Compact(ds), ",")
}

// lastCursor returns the last non-empty cursor delivered by a watch of the
// dataset set key, "" when there is none.
func (c *connector) lastCursor(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursors[key]
}

func (c *connector) setLastCursor(key, cursor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cursors == nil {
		c.cursors = map[string]string{}
	}
	c.cursors[key] = cursor
}

// watch streams change events of datasets (all when empty) from the plugin
// into send, resuming on each new process, until ctx ends or send fails.
//
// It keeps the last non-empty cursor of an event send accepted and, when
// the stream breaks (the plugin died or the connection failed), starts the
// plugin's Watch again with resume_after set to it, so that changes made
// while the plugin was down are delivered. Delivery is at least once: an
// event may come again after a resume, which is harmless to consumers that
// invalidate (invalidation is idempotent). The cursor is also remembered
// per connector and dataset set for the life of the host, so a later watch
// of the same datasets resumes where the last one left off. Without a
// cursor (a connector that sets none), a restarted Watch begins at the
// connector's configured start.
func (c *connector) watch(ctx context.Context, datasets []string, send func(*v1.ChangeEvent) error) error {
	key := watchKey(datasets)
	resume := c.lastCursor(key)
	var sendErr error
	// wrapped runs on the goroutine of inst.cl.Watch, which returns before
	// resume is read again.
	wrapped := func(ev *v1.ChangeEvent) error {
		if err := send(ev); err != nil {
			sendErr = err
			return err
		}
		if cur := ev.GetCursor(); cur != "" {
			resume = cur
			c.setLastCursor(key, cur)
		}
		return nil
	}
	wait := c.cfg.RestartBackoff.Min
	for {
		inst, changed := c.current()
		if inst == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-changed:
				continue
			}
		}
		if resume != "" {
			c.log.Debug("resuming change stream", "cursor", resume)
		}
		err := inst.cl.Watch(ctx, &v1.WatchRequest{Datasets: datasets, ResumeAfter: resume}, wrapped)
		switch {
		case sendErr != nil:
			return sendErr
		case ctx.Err() != nil:
			return ctx.Err()
		case apierr.CodeOf(err) == codes.Unimplemented:
			return err
		}
		c.log.Warn("change stream ended; resuming", "err", err)
		if apierr.CodeOf(err) == codes.Unavailable {
			c.checkNow()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
			wait = c.cfg.RestartBackoff.Min
		case <-time.After(jitter(wait)):
			wait = min(2*wait, c.cfg.RestartBackoff.Max)
		}
	}
}

// handle exposes a connector as an sdk.Connector through the host.
type handle struct{ c *connector }

var (
	_ sdk.Connector = handle{}
	_ sdk.Watcher   = handle{}
)

func (h handle) client() (*sdk.Client, error) {
	inst, _ := h.c.current()
	if inst == nil {
		return nil, h.c.unavailable(errors.New("connector process is not running"))
	}
	return inst.cl, nil
}

// Describe asks the plugin process.
func (h handle) Describe(ctx context.Context) (*v1.Descriptor, error) {
	cl, err := h.client()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, h.c.cfg.CallTimeout)
	defer cancel()
	return cl.Describe(ctx)
}

// Fetch takes the path of Host.Fetch.
func (h handle) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, error) {
	return h.c.fetch(ctx, req)
}

// Health asks the plugin process.
func (h handle) Health(ctx context.Context) error {
	cl, err := h.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, h.c.cfg.CallTimeout)
	defer cancel()
	return cl.Health(ctx)
}

// Watch takes the path of Host.Watch for this connector.
func (h handle) Watch(ctx context.Context, req *v1.WatchRequest, send func(*v1.ChangeEvent) error) error {
	err := h.c.watch(ctx, req.GetDatasets(), send)
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// sleep waits d or until ctx ends; it reports whether the full wait passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// jitter returns a random duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// --- tracing ---

// tracingScope is the instrumentation scope of the host's spans.
const tracingScope = "github.com/tongban/tongban/connectors/host"

// startSpan starts a child of the span in ctx from that span's own tracer
// provider. Outside a recording span it returns ctx and a no-op span without
// allocating, so an untraced gateway pays nothing.
func startSpan(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, tracenoop.Span{}
	}
	return parent.TracerProvider().Tracer(tracingScope).Start(ctx, name)
}

// pluginTracing is the stats handler of the gRPC connection to a plugin
// process. A call made within a recording span becomes a client span (from
// otelgrpc) whose W3C traceparent travels to the plugin in the call's
// metadata, where the plugin's server span continues the trace. Other calls
// (health checks, an untraced gateway) pass untouched.
type pluginTracing struct{ inner stats.Handler }

// tracedCall marks the context of a call pluginTracing traces.
type tracedCall struct{}

func newPluginTracing() stats.Handler {
	return pluginTracing{inner: otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(parentProvider{}),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
	)}
}

func (h pluginTracing) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if !trace.SpanFromContext(ctx).IsRecording() {
		return ctx
	}
	return context.WithValue(h.inner.TagRPC(ctx, info), tracedCall{}, true)
}

func (h pluginTracing) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if ctx.Value(tracedCall{}) != nil {
		h.inner.HandleRPC(ctx, s)
	}
}

func (pluginTracing) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (pluginTracing) HandleConn(context.Context, stats.ConnStats) {}

// parentProvider is a tracer provider whose tracers start each span from the
// provider of the span in the context: the plugin call is recorded by
// whichever provider traces the request, with no global state.
type parentProvider struct{ embedded.TracerProvider }

func (parentProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return parentTracer{name: name, opts: opts}
}

type parentTracer struct {
	embedded.Tracer
	name string
	opts []trace.TracerOption
}

func (t parentTracer) Start(ctx context.Context, spanName string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	return trace.SpanFromContext(ctx).TracerProvider().Tracer(t.name, t.opts...).Start(ctx, spanName, opts...)
}
