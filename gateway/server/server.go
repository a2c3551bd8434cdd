// Package server runs the gateway's listeners: gRPC (with server reflection
// and the gRPC health service) and REST/JSON through grpc-gateway, which calls
// the same service implementations in process. The REST listener also serves
// /healthz, /readyz, /metrics and /openapi.json.
package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/tongban/tongban/schemas/gen"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Services are the API implementations the server exposes. A nil service is
// not registered.
type Services struct {
	Gateway v1.GatewayServer
	Grants  v1.GrantsServer
	Audit   v1.AuditServer
	Forms   v1.FormsServer
}

// Check is one readiness check. A failing critical check makes /readyz
// answer 503; a failing non-critical one is reported as degraded.
type Check struct {
	Name     string
	Critical bool
	Fn       func(ctx context.Context) error
}

// Options configure the server.
type Options struct {
	GRPCAddr        string
	RESTAddr        string
	RequestTimeout  time.Duration
	MaxBodyBytes    int64
	ShutdownTimeout time.Duration
	// Registry receives the server's metrics and is served at /metrics.
	Registry *prometheus.Registry
	Checks   []Check
	Logger   *slog.Logger
	// Handlers are extra REST routes (http.ServeMux patterns, e.g.
	// "GET /ogc/"), served with the same middleware as the API.
	Handlers map[string]http.Handler
	// Streams are long-lived REST routes (http.ServeMux patterns, e.g.
	// Server-Sent Events), served with the same middleware as Handlers but
	// without the request deadline and with the connection's read and
	// write timeouts lifted, so that a subscription stays open until its
	// client leaves or the server shuts down (which ends it).
	Streams map[string]http.Handler
	// TLS, when set, serves both listeners over TLS with this configuration
	// (gateway/identity.ServerTLSConfig builds it). Its ClientAuth and
	// ClientCAs decide whether client certificates are required, verified
	// when given, or not asked for; a verified client certificate is the
	// caller's identity (see gateway/auth).
	TLS *tls.Config
	// TracerProvider, when set, traces every API request: a span per REST
	// request (named by method and route) and per gRPC call, continuing a
	// W3C traceparent the caller sends. Nil adds no instrumentation at all
	// (gateway/telemetry.Telemetry.TracerProvider returns nil when tracing
	// is not configured).
	TracerProvider trace.TracerProvider
}

// Server is a running gateway front end.
type Server struct {
	opts    Options
	log     *slog.Logger
	grpc    *grpc.Server
	health  *health.Server
	http    *http.Server
	grpcLis net.Listener
	restLis net.Listener
	metrics *metrics
	// gwmux is grpc-gateway's mux, which serves every API route but the
	// query route's fast path.
	gwmux http.Handler
	// streams matches the routes of Options.Streams.
	streams *http.ServeMux
	// streamMethods are the methods of the Streams patterns (see isStream).
	streamMethods map[string]bool
	checksMu      sync.Mutex
	checkState    map[string]string // last error text of each readiness check, "" when passing
	// streamsDone ends the open streams when shutdown begins.
	streamsDone context.Context
	// deadlines gives REST requests other than streams their deadline.
	deadlines *deadlines
}

// New builds the server and registers the services on both front ends.
func New(opts Options, svcs Services) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: opts, log: opts.Logger, metrics: newMetrics(opts.Registry), checkState: map[string]string{},
		deadlines: &deadlines{timeout: opts.RequestTimeout}}

	grpcOpts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unaryInterceptor),
		grpc.ChainStreamInterceptor(s.streamInterceptor),
		grpc.MaxRecvMsgSize(int(opts.MaxBodyBytes)),
	}
	if opts.TLS != nil {
		grpcOpts = append(grpcOpts, grpc.Creds(credentials.NewTLS(opts.TLS.Clone())))
	}
	if opts.TracerProvider != nil {
		grpcOpts = append(grpcOpts, grpc.StatsHandler(grpcTracing(opts.TracerProvider)))
	}
	s.grpc = grpc.NewServer(grpcOpts...)
	s.health = health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)

	marshaler := newMarshaler()
	mux := runtime.NewServeMux(
		runtime.WithMarshalerOption(runtime.MIMEWildcard, marshaler),
		runtime.WithErrorHandler(s.restError),
		runtime.WithRoutingErrorHandler(s.routingError),
		runtime.WithIncomingHeaderMatcher(headerMatcher),
	)
	s.gwmux = mux
	ctx := context.Background()
	if svcs.Gateway != nil {
		v1.RegisterGatewayServer(s.grpc, svcs.Gateway)
		if err := v1.RegisterGatewayHandlerServer(ctx, mux, svcs.Gateway); err != nil {
			return nil, fmt.Errorf("registering gateway REST handlers: %w", err)
		}
	}
	if svcs.Grants != nil {
		v1.RegisterGrantsServer(s.grpc, svcs.Grants)
		if err := v1.RegisterGrantsHandlerServer(ctx, mux, svcs.Grants); err != nil {
			return nil, fmt.Errorf("registering grants REST handlers: %w", err)
		}
	}
	if svcs.Audit != nil {
		v1.RegisterAuditServer(s.grpc, svcs.Audit)
		if err := v1.RegisterAuditHandlerServer(ctx, mux, svcs.Audit); err != nil {
			return nil, fmt.Errorf("registering audit REST handlers: %w", err)
		}
	}
	if svcs.Forms != nil {
		v1.RegisterFormsServer(s.grpc, svcs.Forms)
		if err := v1.RegisterFormsHandlerServer(ctx, mux, svcs.Forms); err != nil {
			return nil, fmt.Errorf("registering forms REST handlers: %w", err)
		}
	}

	root := http.NewServeMux()
	root.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	root.HandleFunc("GET /readyz", s.readyz)
	root.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry}))
	root.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(gen.OpenAPI)
	})
	for pattern, h := range opts.Handlers {
		root.Handle(pattern, h)
	}
	s.streams = http.NewServeMux()
	for pattern, h := range opts.Streams {
		root.Handle(pattern, h)
		s.streams.Handle(pattern, h)
	}
	s.streamMethods = patternMethods(slices.Collect(maps.Keys(opts.Streams)))
	root.Handle("/", mux)
	var routes http.Handler = root
	if svcs.Gateway != nil {
		// The query route skips grpc-gateway's generic request handling;
		// it hands anything unusual back to mux (see queryRoute).
		qr := newQueryRoute(s, svcs.Gateway, mux, marshaler)
		root.Handle("POST "+queryPrefix+"{target}", qr)
		if !anyPOST(opts.Handlers) && !anyPOST(opts.Streams) {
			routes = queryFirst{query: qr, mux: root}
		}
	}

	handler := s.restMiddleware(routes)
	if opts.TracerProvider != nil {
		handler = restTracing(opts.TracerProvider, handler)
	}
	s.http = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       opts.RequestTimeout + 5*time.Second,
		WriteTimeout:      opts.RequestTimeout + 5*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn),
	}
	if opts.TLS != nil {
		// ServeTLS adds HTTP/2 to the clone's NextProtos.
		s.http.TLSConfig = opts.TLS.Clone()
	}
	var endStreams context.CancelFunc
	s.streamsDone, endStreams = context.WithCancel(context.Background())
	s.http.RegisterOnShutdown(endStreams)
	return s, nil
}

// queryFirst hands the requests the query route takes (queryDataset)
// straight to it and the rest to the root mux, which would route them to
// it as well: New uses it only when no pattern of Options can match a POST
// (the mux's own are GETs, and the catch-all "/", less specific than the
// query route's). It spares the hottest route the mux's pattern matching.
type queryFirst struct {
	query *queryRoute
	mux   http.Handler
}

func (h queryFirst) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, ok := queryDataset(r); ok {
		h.query.ServeHTTP(w, r)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// anyPOST reports whether a pattern of routes can match a POST request:
// one without a method, or for POST.
func anyPOST(routes map[string]http.Handler) bool {
	m := patternMethods(slices.Collect(maps.Keys(routes)))
	return m[""] || m[http.MethodPost]
}

// Listen binds both listeners. After it returns, GRPCAddr and RESTAddr tell
// the bound addresses (useful with port 0).
func (s *Server) Listen() error {
	var err error
	if s.grpcLis, err = net.Listen("tcp", s.opts.GRPCAddr); err != nil {
		return fmt.Errorf("listening for gRPC on %s: %w", s.opts.GRPCAddr, err)
	}
	if s.restLis, err = net.Listen("tcp", s.opts.RESTAddr); err != nil {
		s.grpcLis.Close()
		return fmt.Errorf("listening for REST on %s: %w", s.opts.RESTAddr, err)
	}
	return nil
}

// RESTHandler is the REST front end's handler with its middleware, as the
// listener serves it; benchmarks call it in process.
func (s *Server) RESTHandler() http.Handler { return s.http.Handler }

// GRPCAddr is the bound gRPC address.
func (s *Server) GRPCAddr() string { return s.grpcLis.Addr().String() }

// RESTAddr is the bound REST address.
func (s *Server) RESTAddr() string { return s.restLis.Addr().String() }

// Serve serves until ctx ends, then shuts down gracefully: it stops accepting,
// lets requests in flight finish within the shutdown timeout, and returns.
// Listen must have been called.
func (s *Server) Serve(ctx context.Context) error {
	if s.grpcLis == nil {
		return errors.New("server: Serve called before Listen")
	}
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 2)
	go func() { errc <- s.grpc.Serve(s.grpcLis) }()
	go func() {
		var err error
		if s.http.TLSConfig != nil {
			err = s.http.ServeTLS(s.restLis, "", "")
		} else {
			err = s.http.Serve(s.restLis)
		}
		if !errors.Is(err, http.ErrServerClosed) {
			errc <- err
			return
		}
		errc <- nil
	}()
	s.log.Info("serving", "grpc", s.GRPCAddr(), "rest", s.RESTAddr(), "tls", s.tlsMode())

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	s.health.Shutdown()
	shutCtx, cancel := context.WithTimeout(context.Background(), s.opts.ShutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := s.http.Shutdown(shutCtx); err != nil {
			s.log.Warn("REST shutdown", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-shutCtx.Done():
			s.grpc.Stop()
		}
	}()
	wg.Wait()
	s.log.Info("stopped")
	if serveErr != nil {
		return fmt.Errorf("serving: %w", serveErr)
	}
	return nil
}

// tlsMode describes the listeners' TLS for the log.
func (s *Server) tlsMode() string {
	if s.opts.TLS == nil {
		return "off"
	}
	switch s.opts.TLS.ClientAuth {
	case tls.RequireAndVerifyClientCert:
		return "mutual (client certificate required)"
	case tls.VerifyClientCertIfGiven:
		return "mutual (client certificate verified when given)"
	default:
		return "server only"
	}
}

// readyz answers the readiness probe. The body names each check and its
// state ("ok", or "error" for a failed one) but never the error itself,
// which may name hosts, users or files: /readyz is unauthenticated. A
// check's error is logged when the check starts failing or its error
// changes, and its recovery once.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type result struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	res := result{Status: "ok", Checks: map[string]string{}}
	code := http.StatusOK
	for _, c := range s.opts.Checks {
		err := c.Fn(ctx)
		if ctx.Err() == nil {
			// A probe cut short (its client left, or the time ran out)
			// says nothing about the check's own state.
			s.noteCheck(c, err)
		}
		if err != nil {
			res.Checks[c.Name] = "error"
			if c.Critical {
				res.Status = "unavailable"
				code = http.StatusServiceUnavailable
			} else if res.Status == "ok" {
				res.Status = "degraded"
			}
			continue
		}
		res.Checks[c.Name] = "ok"
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(res)
}

// noteCheck logs a readiness check whose state changed: its error when it
// starts failing (or fails differently), and its recovery.
func (s *Server) noteCheck(c Check, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	s.checksMu.Lock()
	prev, seen := s.checkState[c.Name]
	s.checkState[c.Name] = msg
	s.checksMu.Unlock()
	switch {
	case err != nil && (!seen || prev != msg):
		s.log.Warn("readiness check failing", "check", c.Name, "critical", c.Critical, "err", err)
	case err == nil && seen && prev != "":
		s.log.Info("readiness check recovered", "check", c.Name)
	}
}
