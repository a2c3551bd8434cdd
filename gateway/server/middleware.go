package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/httperr"
	"github.com/tongban/tongban/gateway/reqctx"
	"github.com/tongban/tongban/gateway/telemetry"
	"github.com/tongban/tongban/schemas/apierr"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// rest holds the series of each REST route, method and status seen,
	// so that a request does not look its labels up in the vectors again.
	rest telemetry.Series[restKey, restSeries]
}

// restKey names the series of a REST request: its method (one of
// restMethods, or "OTHER"), route label and status.
type restKey struct {
	method, route string
	code          int
}

type restSeries struct {
	latency  prometheus.Observer
	requests prometheus.Counter
}

// restMethods are the methods REST metrics name; any other is "OTHER", so
// that callers cannot create series at will.
var restMethods = []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete,
	http.MethodHead, http.MethodOptions}

// observeREST records a REST request that took d.
func (m *metrics) observeREST(r *http.Request, code int, d time.Duration) {
	k := restKey{method: "OTHER", route: routeLabel(r), code: code}
	if i := slices.Index(restMethods, r.Method); i >= 0 {
		k.method = restMethods[i]
	}
	rs := m.rest.Get(k)
	rs.latency.Observe(d.Seconds())
	rs.requests.Inc()
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tongban_requests_total",
			Help: "API requests by method, transport and gRPC status code.",
		}, []string{"method", "transport", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tongban_request_duration_seconds",
			Help:    "API request latency by method and transport.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "transport"}),
	}
	reg.MustRegister(m.requests, m.latency)
	m.rest.New = func(k restKey) restSeries {
		label := k.method + " " + k.route
		return restSeries{
			latency:  m.latency.WithLabelValues(label, "rest"),
			requests: m.requests.WithLabelValues(label, "rest", strconv.Itoa(k.code)),
		}
	}
	return m
}

// requestIDHeader is the header and metadata key of the request id;
// requestIDKey is its canonical form, the key of an http.Header.
const (
	requestIDHeader = "x-request-id"
	requestIDKey    = "X-Request-Id"
)

// headerID returns the request id header's first value, "" if none.
// Indexing h with the canonical key spares the copy Header.Get makes of a
// key given in another case.
func headerID(h http.Header) string {
	if v := h[requestIDKey]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// headerMatcher forwards the request id header in addition to grpc-gateway's
// defaults (which already forward Authorization).
func headerMatcher(key string) (string, bool) {
	if strings.EqualFold(key, requestIDHeader) {
		return requestIDHeader, true
	}
	return runtime.DefaultHeaderMatcher(key)
}

// requestContext attaches a request id, taken from the caller when valid.
func requestContext(ctx context.Context, supplied string) context.Context {
	if !reqctx.Valid(supplied) {
		supplied = reqctx.NewID()
	}
	return reqctx.With(ctx, supplied)
}

// sanitize turns any error into one safe to send: classified errors pass
// through; anything else becomes Internal and its cause is logged.
func (s *Server) sanitize(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	var ae *apierr.Error
	if errors.As(err, &ae) {
		if ae.Code == codes.Internal || ae.Code == codes.Unknown {
			s.log.ErrorContext(ctx, "request failed", "method", method, "err", err)
		}
		return ae
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
		// Errors produced by grpc-go or grpc-gateway themselves (bad JSON,
		// cancelled streams) are already safe.
		return err
	}
	s.log.ErrorContext(ctx, "request failed", "method", method, "err", err)
	return apierr.New(codes.Internal, apierr.ReasonInternal, "internal error (see the gateway log for request "+reqctx.ID(ctx)+")")
}

// suppliedID is the request id the gRPC caller sent, if any.
func suppliedID(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(requestIDHeader); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func (s *Server) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx = requestContext(ctx, suppliedID(ctx))
	_ = grpc.SetHeader(ctx, metadata.Pairs(requestIDHeader, reqctx.ID(ctx)))
	tagSpan(ctx, reqctx.ID(ctx), nil)
	ctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	resp, err := handler(ctx, req)
	err = s.sanitize(ctx, info.FullMethod, err)
	s.observe(ctx, info.FullMethod, "grpc", err, start)
	return resp, err
}

func (s *Server) streamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	start := time.Now()
	ctx := requestContext(ss.Context(), suppliedID(ss.Context()))
	_ = ss.SetHeader(metadata.Pairs(requestIDHeader, reqctx.ID(ctx)))
	tagSpan(ctx, reqctx.ID(ctx), nil)
	err := handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	err = s.sanitize(ctx, info.FullMethod, err)
	s.observe(ctx, info.FullMethod, "grpc", err, start)
	return err
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

func (s *Server) observe(ctx context.Context, method, transport string, err error, start time.Time) {
	code := status.Code(err)
	if ae := apierr.From(err); ae != nil {
		code = ae.Code
	}
	d := time.Since(start)
	s.metrics.requests.WithLabelValues(method, transport, code.String()).Inc()
	s.metrics.latency.WithLabelValues(method, transport).Observe(d.Seconds())
	level := slog.LevelDebug
	if code != codes.OK {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "request", "method", method, "transport", transport, "code", code.String(), "duration", d)
}

// restMiddleware adds the request id, the verified client certificate, the
// body limit, the request deadline (except on streams, which end instead
// with their client) and metrics to every REST request.
func (s *Server) restMiddleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		stream := s.isStream(r)
		base := r.Context()
		if !stream {
			// The deadline, not the client's connection, ends requests
			// other than streams: their work is bounded by it, and what
			// would be cut short when the client leaves would not be
			// spared anyway (cache fetches run on without their caller,
			// an audit entry once queued is written). Leaving the
			// connection's context out spares every request registering
			// with it and removing itself again. It is left out below the
			// request's own values, which are then looked up without the
			// copy context.WithoutCancel's Value makes.
			base = context.WithoutCancel(base)
		}
		ctx := requestContext(base, headerID(r.Header))
		// The caller's certificate identity comes only from the TLS
		// handshake, never from headers: grpc-gateway calls the services in
		// process, so there is no gRPC peer to read it from.
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
			ctx = auth.WithVerifiedCert(ctx, r.TLS.VerifiedChains[0][0])
		}
		id := reqctx.ID(ctx)
		tagSpan(ctx, id, r)
		// Handlers read the id from the context (reqctx); the caller's
		// header is left as sent.
		w.Header()[requestIDKey] = []string{id}
		if stream {
			// A stream outlives the request deadline and the server's
			// read and write timeouts; it ends with its client or at
			// shutdown.
			rc := http.NewResponseController(w)
			_ = rc.SetReadDeadline(time.Time{})
			_ = rc.SetWriteDeadline(time.Time{})
			var cancel context.CancelFunc
			ctx, cancel = context.WithCancel(ctx)
			defer cancel()
			defer context.AfterFunc(s.streamsDone, cancel)()
		} else {
			// The deadline is shared with the requests that began at
			// about the same time (deadlines).
			ctx = s.deadlines.with(ctx, start)
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		rw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rw, r.WithContext(ctx))
		s.metrics.observeREST(r, rw.code, time.Since(start))
	})
}

// isStream reports whether r is for one of Options.Streams. Only a request
// whose method some stream pattern allows is matched against them.
func (s *Server) isStream(r *http.Request) bool {
	if !s.streamMethods[r.Method] && !s.streamMethods[""] {
		return false
	}
	_, pattern := s.streams.Handler(r)
	return pattern != ""
}

// patternMethods returns the methods http.ServeMux patterns match: the
// method of each pattern (with HEAD for GET), and "" for a pattern without
// one, which matches every method.
func patternMethods(patterns []string) map[string]bool {
	m := map[string]bool{}
	for _, p := range patterns {
		method, _, found := strings.Cut(p, " ")
		if !found || strings.HasPrefix(method, "/") || strings.Contains(method, "/") {
			m[""] = true
			continue
		}
		m[method] = true
		if method == http.MethodGet {
			m[http.MethodHead] = true
		}
	}
	return m
}

// routeLabel keeps metric cardinality bounded: known API prefixes only.
func routeLabel(r *http.Request) string {
	p := r.URL.Path
	for _, prefix := range []string{"/v1/datasets", "/v1/catalogue", "/v1/forms", "/v1/bundles", "/v1/grants", "/v1/audit", "/v1/subjects", "/v1/connectors", "/v1/corrections", "/v1/transparency", "/v1/changes", "/ogc", "/healthz", "/readyz", "/metrics", "/openapi.json"} {
		if strings.HasPrefix(p, prefix) {
			return prefix
		}
	}
	return "other"
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) restError(ctx context.Context, _ *runtime.ServeMux, _ runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		err = apierr.Newf(codes.InvalidArgument, apierr.ReasonInvalidArgument, "request body is larger than %d bytes", mbe.Limit)
	}
	rctx := ctx
	if reqctx.ID(ctx) == "" {
		rctx = requestContext(ctx, headerID(r.Header))
	}
	err = s.sanitize(rctx, r.URL.Path, err)
	ae := apierr.From(err)
	if _, isAPI := err.(*apierr.Error); !isAPI {
		// A grpc-gateway error (for example a malformed JSON body): keep its
		// message, which names the problem, and classify it by code.
		if st, ok := status.FromError(err); ok {
			if st.Code() == codes.InvalidArgument && st.Message() == (&http.MaxBytesError{}).Error() {
				// grpc-gateway's decoder reports an oversized body by
				// the text of http.MaxBytesError only.
				httperr.Write(w, apierr.Newf(codes.InvalidArgument, apierr.ReasonInvalidArgument,
					"request body is larger than %d bytes", s.opts.MaxBodyBytes), reqctx.ID(rctx), 0)
				return
			}
			ae = apierr.New(st.Code(), apierr.ReasonOf(err), st.Message())
			if ae.Reason == "" {
				ae.Reason = apierr.From(status.Error(st.Code(), "")).Reason
			}
		}
	}
	httperr.Write(w, ae, reqctx.ID(rctx), 0)
}

func (s *Server) routingError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, httpStatus int) {
	var ae *apierr.Error
	switch httpStatus {
	case http.StatusMethodNotAllowed:
		ae = apierr.Newf(codes.Unimplemented, "METHOD_NOT_ALLOWED", "method %s is not allowed on %s", r.Method, r.URL.Path)
	case http.StatusNotFound:
		ae = apierr.Newf(codes.NotFound, "ROUTE_NOT_FOUND", "no route %s %s (see /openapi.json)", r.Method, r.URL.Path)
	default:
		ae = apierr.New(codes.InvalidArgument, apierr.ReasonInvalidArgument, http.StatusText(httpStatus))
	}
	httperr.Write(w, ae, reqctx.ID(r.Context()), httpStatus)
}
