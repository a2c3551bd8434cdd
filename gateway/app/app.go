// Package app assembles one gateway node from its configuration: the policy
// store and engine, the audit log, the connector host, the cache, the query
// pipeline, the API services and the servers. cmd/tongban only parses flags
// and calls it.
package app

import (
	"context"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tongban/tongban/connectors/host"
	"github.com/tongban/tongban/gateway/api"
	"github.com/tongban/tongban/gateway/audit"
	"github.com/tongban/tongban/gateway/audit/export"
	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/autofill/correctiondb"
	"github.com/tongban/tongban/gateway/cache"
	"github.com/tongban/tongban/gateway/config"
	"github.com/tongban/tongban/gateway/events"
	"github.com/tongban/tongban/gateway/identity"
	"github.com/tongban/tongban/gateway/ogc"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/gateway/quota"
	"github.com/tongban/tongban/gateway/server"
	"github.com/tongban/tongban/gateway/telemetry"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/policy/store/pgstore"
	"github.com/tongban/tongban/policy/store/sqlstore"
	"github.com/tongban/tongban/policy/workflow"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Options are what the caller supplies besides the configuration.
type Options struct {
	// Logger receives the node's logs.
	Logger *slog.Logger
	// Launcher starts built-in connector types; default re-executes the
	// running binary as "tongban connector TYPE".
	Launcher host.Launcher
	// SeedGrants are imported (with their ids and histories) when absent
	// from the store; the demo uses it.
	SeedGrants func(now time.Time) []*v1.Grant
}

// PolicyPoll is how often a node checks the grant store for changes made
// through other nodes (changes made through this node apply at once).
const PolicyPoll = 500 * time.Millisecond

// App is one assembled gateway node.
type App struct {
	cfg     config.Config
	log     *slog.Logger
	reg     *prometheus.Registry
	srv     *server.Server
	gateway *api.Gateway
	closers []func() error
	bg      sync.WaitGroup

	// Exposed for the demo and tests.
	Dict        *datasets.Dictionary
	Host        *host.Host
	Cache       *cache.Cache
	Engine      *policy.Engine
	Workflow    *workflow.Workflow
	Log         *audit.Log
	VerifierKey string
}

// New assembles a node. On error everything it started is stopped.
func New(ctx context.Context, cfg config.Config, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	a := &App{cfg: cfg, log: opts.Logger, reg: prometheus.NewRegistry(), Dict: datasets.Default()}
	built := false
	defer func() {
		if !built {
			a.Close()
		}
	}()
	var err error
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Tracing (OTLP) when configured; installed before anything it traces.
	tel, err := telemetry.Setup(ctx, cfg.Telemetry, cfg.Node, a.log.With("component", "telemetry"))
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return tel.Shutdown(sctx)
	})
	// Background work (event relays, export) lives until Close.
	life, stopLife := context.WithCancel(context.WithoutCancel(ctx))
	a.closers = append(a.closers, func() error { stopLife(); a.bg.Wait(); return nil })

	// Events between nodes: Kafka when configured, in process otherwise.
	var checks []server.Check
	var bus events.Bus
	if brokers := cfg.Events.Kafka.Brokers; len(brokers) > 0 {
		k, err := events.NewKafka(ctx, events.KafkaOptions{
			Brokers:           brokers,
			Topics:            events.Topics,
			Partitions:        cfg.Events.Kafka.Partitions,
			ReplicationFactor: cfg.Events.Kafka.ReplicationFactor,
			Logger:            a.log.With("component", "events"),
		})
		if err != nil {
			return nil, fmt.Errorf("connecting to Kafka: %w", err)
		}
		bus = k
		checks = append(checks, server.Check{Name: "kafka", Fn: k.Healthy})
	} else {
		bus = events.NewMemory(a.log.With("component", "events"))
	}
	a.closers = append(a.closers, bus.Close)

	// Whole-process record first: nothing is served that cannot be recorded.
	origin := "tongban/" + cfg.Node
	skey, vkey, err := signingKey(cfg.Audit.SigningKeyFile, origin)
	if err != nil {
		return nil, err
	}
	a.VerifierKey = vkey
	subjKey, err := subjectKey(cfg.Audit.SubjectKeyFile)
	if err != nil {
		return nil, err
	}
	stats := audit.NewStats(beijing())
	auditOpts := []audit.Option{audit.WithLogger(a.log.With("component", "audit")), audit.WithReplaySink(stats)}
	var exporter *export.Exporter
	if brokers := cfg.Events.Kafka.Brokers; len(brokers) > 0 {
		exporter, err = export.New(export.Config{Brokers: brokers, Node: cfg.Node, CursorFile: cfg.Audit.ExportCursorFile},
			export.Options{Registry: a.reg, Logger: a.log.With("component", "audit-export")})
		if err != nil {
			return nil, fmt.Errorf("audit export: %w", err)
		}
		a.closers = append(a.closers, func() error { exporter.Close(); return nil })
		auditOpts = append(auditOpts, audit.WithSink(exporter))
	}
	a.Log, err = audit.Open(ctx, audit.Config{
		Dir:                cfg.Audit.Dir,
		Origin:             origin,
		SigningKey:         skey,
		CheckpointEvery:    uint64(cfg.Audit.CheckpointEvery),
		CheckpointInterval: cfg.Audit.CheckpointInterval,
	}, auditOpts...)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log: %w", err)
	}
	a.closers = append(a.closers, a.Log.Close)
	a.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tongban_audit_commits_total",
			Help: "Group commits (one write and one fsync each) of the audit log since the node started.",
		}, func() float64 { c, _ := a.Log.Commits(); return float64(c) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "tongban_audit_appended_entries_total",
			Help: "Entries appended to the audit log since the node started; divided by tongban_audit_commits_total, the mean group-commit batch.",
		}, func() float64 { _, n := a.Log.Commits(); return float64(n) }))
	if exporter != nil {
		a.background(func() { _ = exporter.Run(life, a.Log) })
	}
	recorder := &api.Recorder{Log: a.Log, Node: cfg.Node, SubjectKey: subjKey}

	// Grants: store, workflow (transitions recorded, fail closed), engine.
	st, err := openStore(ctx, cfg.Store)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, st.Close)
	// Grant changes apply at once on this node (local bus) and reach the
	// other nodes through the event stream; every node also polls the
	// store's revision as a safety net.
	grants := grantBus{local: policy.NewLocalBus(), remote: &events.GrantBus{Bus: bus, Group: "tongban-policy-" + cfg.Node, Logger: a.log}}
	a.Workflow = workflow.New(st, a.Dict, workflow.Options{
		Sink:      recorder,
		Publisher: grants,
		Logger:    a.log.With("component", "workflow"),
	})
	if opts.SeedGrants != nil {
		n, err := a.Workflow.Import(ctx, opts.SeedGrants(time.Now()))
		if err != nil {
			return nil, fmt.Errorf("seeding grants: %w", err)
		}
		if n > 0 {
			a.log.Info("seeded grants", "count", n)
		}
	}
	a.Engine, err = policy.NewEngine(ctx, a.Dict, st, policy.EngineOptions{Logger: a.log.With("component", "policy")})
	if err != nil {
		return nil, err
	}
	stopFollow := a.Engine.Follow(grants, PolicyPoll)
	a.closers = append(a.closers, func() error { stopFollow(); return nil })

	// Departments: connector plugin processes behind breakers.
	a.Host, err = host.New(cfg.Departments, host.Options{
		Launcher:   opts.Launcher,
		PluginEnv:  tel.PluginEnv(),
		Logger:     a.log.With("component", "connectors"),
		Registerer: a.reg,
	})
	if err != nil {
		return nil, err
	}
	if err := a.Host.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting connectors: %w", err)
	}
	a.closers = append(a.closers, a.Host.Close)

	copts := cache.Options{
		MaxBytes:     cfg.Cache.MaxBytes,
		MaxStale:     cfg.Cache.MaxStale,
		NegativeTTL:  cfg.Cache.NegativeTTL,
		Freshness:    cfg.Cache.Freshness,
		FetchTimeout: cfg.Cache.FetchTimeout,
		Registry:     a.reg,
		Logger:       a.log.With("component", "cache"),
	}
	var limiter policy.Limiter = policy.NewMemoryLimiter(nil)
	if r := cfg.Cache.Redis; len(r.Addrs) > 0 {
		keys, err := cache.ParseKeyring(r.Keys)
		if err != nil {
			return nil, fmt.Errorf("cache.redis.keys: %w", err)
		}
		ropts := cache.RedisOptions{
			Addrs: r.Addrs, MasterName: r.MasterName, Cluster: r.Cluster, Username: r.Username, Password: r.Password,
			DB: r.DB, KeyPrefix: r.KeyPrefix, Keyring: keys, Timeout: r.Timeout, Cooldown: r.Cooldown,
		}
		ropts.Client = cache.NewRedisClient(ropts)
		a.closers = append(a.closers, ropts.Client.Close)
		copts.Redis = &ropts
		limiter = quota.New(ropts.Client, quota.Options{})
	}
	if err := copts.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	a.Cache = cache.New(hostSource{a.Host}, copts)
	a.closers = append(a.closers, a.Cache.Close)
	if copts.Redis != nil {
		checks = append(checks, server.Check{Name: "redis", Fn: a.Cache.Healthy})
	}
	// Change events: every node evicts, subscribers are notified, and this
	// node relays its connectors' change streams onto the event stream.
	stopEvict, err := a.Cache.FollowChanges(life, bus, "tongban-cache-"+cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("following change events: %w", err)
	}
	a.closers = append(a.closers, func() error { stopEvict(); return nil })
	hub := api.NewChangeHub(256)
	stopHub, err := hub.Follow(life, bus, "tongban-watch-"+cfg.Node)
	if err != nil {
		return nil, fmt.Errorf("following change events: %w", err)
	}
	a.closers = append(a.closers, func() error { stopHub(); return nil })
	if a.Host.CanWatch() {
		relay := &events.Relay{Source: a.Host, Bus: bus, Logger: a.log.With("component", "change-relay")}
		a.background(func() { _ = relay.Run(life) })
	}

	authn := auth.New(identities(cfg.Identities), auth.WithCertificates(identity.ParseIdentity),
		auth.WithRateLimit(cfg.Server.RateLimit.PerSecond, cfg.Server.RateLimit.Burst))
	decider := api.EngineDecider{Engine: a.Engine, Limiter: limiter}
	// Record ids a caller may not see are replaced by references keyed by
	// a secret derived from the subject key (nodes that share the subject
	// key file give the same references).
	refKey, err := hkdf.Key(sha256.New, subjKey, nil, "tongban/record-ref/v1", 32)
	if err != nil {
		return nil, fmt.Errorf("deriving the record reference key: %w", err)
	}
	refs, err := query.NewRecordRefs(refKey)
	if err != nil {
		return nil, err
	}
	pipeline := &query.Pipeline{Dict: a.Dict, Policy: decider, Fetch: a.Cache, Record: recorder, MaxPage: 100, Registerer: a.reg, Refs: refs}

	// With PostgreSQL the corrections queue lives beside the grants, one
	// queue for every node; otherwise in this node's own SQLite file.
	var corrections *correctiondb.Store
	if cfg.Store.Driver == "postgres" {
		corrections, err = correctiondb.OpenPostgres(ctx, cfg.Store.DSN)
	} else if err = mkdirFor(cfg.Forms.CorrectionsPath); err == nil {
		corrections, err = correctiondb.Open(ctx, cfg.Forms.CorrectionsPath)
	}
	if err != nil {
		return nil, fmt.Errorf("opening the corrections queue: %w", err)
	}
	a.closers = append(a.closers, corrections.Close)
	filler := &autofill.Engine{
		Dict:        a.Dict,
		Forms:       forms.Default(),
		Policy:      decider,
		Fetch:       a.Cache,
		Record:      recorder,
		Corrections: corrections,
		Refs:        refs,
		Logger:      a.log.With("component", "autofill"),
	}

	changes := &api.Changes{Auth: authn, Dict: a.Dict, Policy: decider, Hub: hub, Refs: refs, Logger: a.log.With("component", "changes")}
	a.gateway = &api.Gateway{
		Auth:       authn,
		Dict:       a.Dict,
		Pipeline:   pipeline,
		Grants:     api.ActiveGrantLister{Workflow: a.Workflow},
		Connectors: a.Host,
		Changes:    changes,
	}
	spatial := &ogc.Handler{Auth: authn, Pipeline: pipeline, Dict: a.Dict,
		Policy: api.EngineDecider{Engine: a.Engine}, DefaultPurpose: "approval", Logger: a.log.With("component", "ogc")}
	// The published statistics (公示) are fed by the audit log (stats is
	// its replay sink) and count the corrections queue.
	auditSvc := &api.Audit{Auth: authn, Log: a.Log, SubjectKey: subjKey, Node: cfg.Node,
		Stats: stats, Corrections: correctionTotals{filler}}
	svcs := server.Services{
		Gateway: a.gateway,
		Grants:  &api.Grants{Auth: authn, Workflow: a.Workflow},
		Audit:   auditSvc,
		Forms:   &api.Forms{Auth: authn, Engine: filler},
	}
	var serverTLS *tls.Config
	if t := cfg.Server.TLS; t.Enabled() {
		serverTLS, err = identity.ServerTLSConfig(identity.ServerFiles{
			CertFile: t.CertFile, KeyFile: t.KeyFile, ClientCAFile: t.ClientCAFile, ClientAuth: t.Mode(),
		})
		if err != nil {
			return nil, fmt.Errorf("server.tls: %w", err)
		}
	}
	a.srv, err = server.New(server.Options{
		GRPCAddr:        cfg.Server.GRPCAddr,
		RESTAddr:        cfg.Server.RESTAddr,
		RequestTimeout:  cfg.Server.RequestTimeout,
		MaxBodyBytes:    cfg.Server.MaxBodyBytes,
		ShutdownTimeout: cfg.Server.ShutdownTimeout,
		TLS:             serverTLS,
		Registry:        a.reg,
		TracerProvider:  tel.TracerProvider(),
		Logger:          a.log,
		Checks: append([]server.Check{
			{Name: "grants_store", Critical: true, Fn: func(ctx context.Context) error { _, err := st.Revision(ctx); return err }},
		}, checks...),
		Streams: map[string]http.Handler{"GET /v1/changes/events": changes},
		Handlers: map[string]http.Handler{
			// The spatial façade: OGC API – Features over the caller's policy.
			// Browsing collections decides without charging quota.
			"GET /ogc/": spatial,
			"GET /ogc":  spatial,
		},
	}, svcs)
	if err != nil {
		return nil, err
	}
	built = true
	return a, nil
}

// background runs fn until the app's lifetime context ends; Close waits.
func (a *App) background(fn func()) {
	a.bg.Add(1)
	go func() { defer a.bg.Done(); fn() }()
}

// Query runs a dataset query as the caller whose credentials are in ctx's
// incoming metadata, exactly as the gRPC and REST front ends do.
func (a *App) Query(ctx context.Context, req *v1.QueryRequest) (*v1.QueryResponse, error) {
	return a.gateway.QueryDataset(ctx, req)
}

// Listen binds the node's listeners.
func (a *App) Listen() error { return a.srv.Listen() }

// RESTAddr is the bound REST address (after Listen).
func (a *App) RESTAddr() string { return a.srv.RESTAddr() }

// GRPCAddr is the bound gRPC address (after Listen).
func (a *App) GRPCAddr() string { return a.srv.GRPCAddr() }

// Serve serves until ctx ends, then shuts down gracefully.
func (a *App) Serve(ctx context.Context) error { return a.srv.Serve(ctx) }

// Close stops everything New started, in reverse order.
func (a *App) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			errs = append(errs, err)
		}
	}
	a.closers = nil
	return errors.Join(errs...)
}

// Run assembles a node, serves until ctx ends, and shuts down.
func Run(ctx context.Context, cfg config.Config, opts Options) error {
	a, err := New(ctx, cfg, opts)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.Listen(); err != nil {
		return err
	}
	return a.Serve(ctx)
}

func openStore(ctx context.Context, c config.Store) (store.Store, error) {
	switch c.Driver {
	case "postgres":
		s, err := pgstore.Open(ctx, c.DSN)
		if err != nil {
			return nil, fmt.Errorf("opening the PostgreSQL grant store: %w", err)
		}
		return s, nil
	default:
		if err := mkdirFor(c.Path); err != nil {
			return nil, err
		}
		s, err := sqlstore.Open(ctx, c.Path)
		if err != nil {
			return nil, fmt.Errorf("opening the grant store %s: %w", c.Path, err)
		}
		return s, nil
	}
}

func mkdirFor(path string) error {
	return mkdirAll(filepath.Dir(path))
}

func identities(ids []config.Identity) []auth.Entry {
	out := make([]auth.Entry, len(ids))
	for i, id := range ids {
		out[i] = auth.Entry{TokenSHA256: id.TokenSHA256, Identity: auth.Identity{
			SystemID: id.SystemID, Department: id.Department, Region: id.Region, Roles: id.Roles, Subject: id.Subject,
		}}
	}
	return out
}
