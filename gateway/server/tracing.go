package server

import (
	"context"
	"net/http"
	"strings"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"

	"github.com/tongban/tongban/gateway/telemetry"
)

// grpcTracing is the stats handler that opens a server span per gRPC call.
// Health checks and reflection are not traced. Metrics stay with Prometheus.
func grpcTracing(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(telemetry.Propagator()),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return !strings.HasPrefix(info.FullMethodName, "/grpc.health.") &&
				!strings.HasPrefix(info.FullMethodName, "/grpc.reflection.")
		}),
	)
}

// restTracing wraps the REST handler in a server span per request, named by
// method and route ("POST /v1/datasets"). Probes and /metrics are not
// traced.
func restTracing(tp trace.TracerProvider, next http.Handler) http.Handler {
	return otelhttp.NewHandler(next, "rest",
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithPropagators(telemetry.Propagator()),
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + routeLabel(r)
		}),
		otelhttp.WithFilter(func(r *http.Request) bool {
			switch r.URL.Path {
			case "/healthz", "/readyz", "/metrics":
				return false
			}
			return true
		}),
	)
}

// tagSpan adds the request id to the request's span and, for REST, replaces
// the URL path (which may hold an identifier, as in
// /v1/subjects/{id}/accesses) with its route: spans carry no personal data.
func tagSpan(ctx context.Context, requestID string, r *http.Request) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.String(telemetry.AttrRequestID, requestID))
	if r != nil {
		route := routeLabel(r)
		span.SetAttributes(attribute.String("url.path", route), attribute.String("http.route", route))
	}
}
