// Package host launches and supervises department connector plugins and is
// the gateway's one way to reach them.
//
// Every connector runs in its own process behind hashicorp/go-plugin (gRPC,
// AutoMTLS, versioned handshake). Built-in types re-execute the gateway
// binary ("tongban connector TYPE", through a Launcher); external ones run a
// department's binary whose SHA-256 is pinned in the configuration and
// checked before every start.
//
// Each connector has a bulkhead (MaxConcurrent calls in flight), a per-call
// deadline (the earlier of the caller's deadline and CallTimeout), retries of
// reads with jittered exponential backoff, and a circuit breaker. A plugin
// process that dies is restarted with backoff; calls in flight fail with
// UNAVAILABLE naming the department, and calls while it restarts fail fast
// the same way. A plugin that does not answer within the deadline gives
// DEADLINE_EXCEEDED naming the department; its bulkhead slot is released.
package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/connectors/sdk"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Launcher builds the command that serves a built-in connector type in
// plugin mode. The host adds the connector's environment ($TONGBAN_CONNECTOR_NAME,
// $TONGBAN_CONNECTOR_CONFIG, $TONGBAN_CONNECTOR_LOG_LEVEL) to the command's
// Env, which, when nil, starts as the host's own environment.
type Launcher func(connectorType string) (*exec.Cmd, error)

// SelfLauncher runs the current executable as "EXE connector TYPE", which is
// how the tongban binary serves its built-in connector types.
func SelfLauncher() Launcher {
	return func(connectorType string) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the gateway executable: %w", err)
		}
		return exec.Command(exe, "connector", connectorType), nil
	}
}

// Options are the host's dependencies.
type Options struct {
	// Launcher runs built-in connector types; default SelfLauncher().
	Launcher Launcher
	// Logger receives the host's logs and, at PluginLogLevel and above,
	// go-plugin's and the plugins' own logs; default slog.Default().
	Logger *slog.Logger
	// PluginLogLevel is the lowest level of plugin logs relayed to Logger;
	// the zero value is Info.
	PluginLogLevel slog.Level
	// Registerer receives the host's metrics; nil registers none.
	Registerer prometheus.Registerer
	// PluginEnv is added to the environment of every plugin process,
	// built-in and external (e.g. the OTEL_* settings of tracing).
	PluginEnv []string
}

// Source says which connector served a fetch.
type Source struct {
	// Department is the department identifier from the connector's
	// descriptor, e.g. "market".
	Department string
	// DepartmentName is the department's human-readable name.
	DepartmentName string
	// Connector is the connector's name in the configuration.
	Connector string
}

// Host runs the configured connectors. Its methods are safe for concurrent
// use.
type Host struct {
	cfg     Config
	opts    Options
	log     *slog.Logger
	metrics *metrics
	conns   []*connector

	// Set by Start, read-only afterwards.
	started  bool
	route    map[string]*connector
	datasets []*v1.DatasetDescriptor

	cancel context.CancelFunc
	wg     sync.WaitGroup
	close  sync.Once
}

// New validates cfg (after applying defaults) and returns a host that has not
// started any process yet.
func New(cfg Config, opts Options) (*Host, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("connector configuration: %w", err)
	}
	if opts.Launcher == nil {
		opts.Launcher = SelfLauncher()
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	h := &Host{cfg: cfg, opts: opts, log: opts.Logger, metrics: m}
	for _, cc := range cfg.Connectors {
		h.conns = append(h.conns, newConnector(h, cc))
	}
	return h, nil
}

// Start launches every connector, asks each to describe itself, checks its
// first health, and starts supervision (restarts and health checks at
// Config.HealthInterval) until Close. It fails, stopping what it started, if
// a connector cannot be launched (a checksum or protocol version mismatch, a
// binary that is not a connector), describes itself badly, or serves a
// dataset another connector serves. ctx bounds the start only.
func (h *Host) Start(ctx context.Context) error {
	if h.started {
		return errors.New("connector host already started")
	}
	var errs []error
	for _, c := range h.conns {
		if err := c.startFirst(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	route := map[string]*connector{}
	var datasets []*v1.DatasetDescriptor
	for _, c := range h.conns {
		d := c.descriptor()
		if d == nil {
			continue
		}
		for _, ds := range d.GetDatasets() {
			if other, dup := route[ds.GetName()]; dup {
				errs = append(errs, fmt.Errorf("dataset %q is served by both connector %q and connector %q", ds.GetName(), other.cfg.Name, c.cfg.Name))
				continue
			}
			route[ds.GetName()] = c
			datasets = append(datasets, ds)
		}
	}
	if err := errors.Join(errs...); err != nil {
		for _, c := range h.conns {
			c.stop()
		}
		return err
	}
	slices.SortFunc(datasets, func(a, b *v1.DatasetDescriptor) int {
		switch {
		case a.GetName() < b.GetName():
			return -1
		case a.GetName() > b.GetName():
			return 1
		}
		return 0
	})
	h.route, h.datasets, h.started = route, datasets, true

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	h.cancel = cancel
	for _, c := range h.conns {
		h.wg.Add(2)
		go func() { defer h.wg.Done(); c.supervise(runCtx) }()
		go func() { defer h.wg.Done(); c.healthLoop(runCtx) }()
	}
	return nil
}

// Close stops supervision and kills every plugin process. It is safe to call
// more than once.
func (h *Host) Close() error {
	h.close.Do(func() {
		if h.cancel != nil {
			h.cancel()
		}
		h.wg.Wait()
		for _, c := range h.conns {
			c.stop()
		}
	})
	return nil
}

// Datasets returns the datasets the connectors described at Start, sorted by
// name. The descriptors are shared: do not modify them.
func (h *Host) Datasets() []*v1.DatasetDescriptor {
	return slices.Clone(h.datasets)
}

// Fetch sends req to the connector serving req.Dataset, through that
// connector's bulkhead, breaker, deadline and retries, and says which
// connector answered. An unknown dataset is NOT_FOUND (UNKNOWN_DATASET).
// Call it only after Start has returned.
func (h *Host) Fetch(ctx context.Context, req *v1.FetchRequest) (*v1.FetchResponse, Source, error) {
	c, err := h.connectorFor(req.GetDataset())
	if err != nil {
		return nil, Source{}, err
	}
	resp, err := c.fetch(ctx, req)
	return resp, c.source(), err
}

// Connector returns the named connector as an sdk.Connector (and
// sdk.Watcher) whose Fetch takes the same path as Host.Fetch and whose
// Describe and Health ask the plugin process directly. It lets a test run
// connectortest.Run against a connector as the gateway reaches it.
func (h *Host) Connector(name string) (sdk.Connector, error) {
	for _, c := range h.conns {
		if c.cfg.Name == name {
			return handle{c}, nil
		}
	}
	return nil, fmt.Errorf("no connector named %q", name)
}

func (h *Host) connectorFor(dataset string) (*connector, error) {
	c, ok := h.route[dataset]
	if !ok {
		return nil, apierr.Newf(codes.NotFound, apierr.ReasonUnknownDataset, "no connector serves dataset %q", dataset).With("dataset", dataset)
	}
	return c, nil
}

// Status returns the live state of every connector, in configuration order.
func (h *Host) Status() []*v1.ConnectorStatus {
	now := time.Now()
	out := make([]*v1.ConnectorStatus, 0, len(h.conns))
	for _, c := range h.conns {
		s := c.snapshot()
		errRate, p50, p99, calls, lastErr, lastErrAt := c.win.stats(now)
		st := &v1.ConnectorStatus{
			Name:       c.cfg.Name,
			Type:       c.cfg.Type,
			Process:    s.process,
			Health:     s.health,
			Breaker:    c.breaker.State().String(),
			ErrorRate:  errRate,
			LatencyP50: durationpb.New(p50),
			LatencyP99: durationpb.New(p99),
			Calls:      calls,
			LastError:  lastErr,
		}
		if s.desc != nil {
			st.Department = s.desc.GetDepartment()
			for _, ds := range s.desc.GetDatasets() {
				st.Datasets = append(st.Datasets, ds.GetName())
			}
		}
		if !lastErrAt.IsZero() {
			st.LastErrorAt = timestamppb.New(lastErrAt)
		}
		out = append(out, st)
	}
	return out
}

// CanWatch reports whether any connector has the watch capability.
func (h *Host) CanWatch() bool {
	for _, c := range h.conns {
		if c.canWatch() {
			return true
		}
	}
	return false
}

// Watch streams the change events of datasets (all watchable datasets when
// empty) from every connector with the "watch" capability into fn, one call
// at a time. When a plugin restarts, watching it resumes on the new process
// after the last cursor (ChangeEvent.cursor) fn accepted, so changes made
// while the plugin was down still arrive; a later Watch of the same datasets
// in this host resumes likewise. Delivery is at least once: after a resume
// an event may come twice.
// Watch returns fn's first error, or ctx.Err() when ctx ends. An unknown
// dataset is NOT_FOUND; a dataset whose connector cannot watch is
// FAILED_PRECONDITION.
func (h *Host) Watch(ctx context.Context, datasets []string, fn func(*v1.ChangeEvent) error) error {
	targets := map[*connector][]string{}
	if len(datasets) == 0 {
		for _, c := range h.conns {
			if c.canWatch() {
				targets[c] = nil
			}
		}
	}
	for _, ds := range datasets {
		c, err := h.connectorFor(ds)
		if err != nil {
			return err
		}
		if !c.canWatch() {
			return apierr.Newf(codes.FailedPrecondition, apierr.ReasonFailedPrecondition,
				"dataset %q: connector %q has no watch capability", ds, c.cfg.Name).With("dataset", ds)
		}
		targets[c] = append(targets[c], ds)
	}
	if len(targets) == 0 {
		return apierr.New(codes.FailedPrecondition, apierr.ReasonFailedPrecondition, "no connector has the watch capability")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	send := func(ev *v1.ChangeEvent) error {
		mu.Lock()
		defer mu.Unlock()
		if firstErr != nil {
			return firstErr
		}
		if err := fn(ev); err != nil {
			firstErr = err
			cancel()
			return err
		}
		return nil
	}
	for c, ds := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.watch(ctx, ds, send); err != nil && ctx.Err() == nil {
				// The connector cannot watch after all (UNIMPLEMENTED).
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				cancel()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}
