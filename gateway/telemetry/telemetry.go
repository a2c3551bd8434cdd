// Package telemetry sets up OpenTelemetry tracing for a gateway node: a
// tracer provider that exports over OTLP (gRPC or HTTP) when an endpoint is
// configured, W3C trace-context propagation, and the environment that makes a
// connector plugin process export its spans to the same collector.
//
// When no endpoint is configured nothing is installed: the servers add no
// instrumentation and Start returns a no-op span without allocating, so
// tracing costs next to nothing.
//
// Spans never carry personal data: dataset, field, department and connector
// names are fine; key values and identifiers are not.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName is the service.name of the gateway's spans.
const ServiceName = "tongban"

// Protocols of the OTLP exporter.
const (
	ProtocolGRPC = "grpc"
	ProtocolHTTP = "http/protobuf"
)

// Config is the telemetry section of the gateway configuration.
type Config struct {
	// OTLPEndpoint is the URL of the OpenTelemetry collector's OTLP receiver,
	// e.g. "http://127.0.0.1:4317" (gRPC) or "http://127.0.0.1:4318" (HTTP).
	// "http" sends in plain text, "https" over TLS. Empty disables tracing.
	// With the HTTP protocol a URL without a path posts to /v1/traces.
	OTLPEndpoint string `yaml:"otlp_endpoint"`
	// Protocol is "grpc" (the default when empty) or "http/protobuf".
	Protocol string `yaml:"protocol"`
	// SampleRatio is the share of new traces recorded, from 0 to 1. A request
	// that arrives with a sampled W3C traceparent is recorded whatever the
	// ratio (parent-based sampling).
	SampleRatio float64 `yaml:"sample_ratio"`
	// ExportTimeout bounds one export to the collector and the final flush
	// at shutdown; 0 means 10s.
	ExportTimeout time.Duration `yaml:"export_timeout"`
}

// Enabled reports whether an OTLP endpoint is configured.
func (c Config) Enabled() bool { return c.OTLPEndpoint != "" }

// Validate reports settings that cannot work; errors name the key under
// "telemetry.".
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("telemetry.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.OTLPEndpoint != "" {
		u, err := url.Parse(c.OTLPEndpoint)
		switch {
		case err != nil:
			bad("otlp_endpoint", "%q is not a URL: %v", c.OTLPEndpoint, err)
		case u.Scheme != "http" && u.Scheme != "https":
			bad("otlp_endpoint", "%q must start with http:// (plain text) or https:// (TLS)", c.OTLPEndpoint)
		case u.Host == "" || u.Port() == "":
			bad("otlp_endpoint", "%q must name a host and port, e.g. http://127.0.0.1:4317", c.OTLPEndpoint)
		case u.User != nil || u.RawQuery != "" || u.Fragment != "":
			bad("otlp_endpoint", "%q must not carry credentials, a query or a fragment", c.OTLPEndpoint)
		case c.protocol() == ProtocolGRPC && u.Path != "" && u.Path != "/":
			bad("otlp_endpoint", "%q: a gRPC endpoint has no path", c.OTLPEndpoint)
		}
	}
	switch c.Protocol {
	case "", ProtocolGRPC, ProtocolHTTP:
	default:
		bad("protocol", "%q is not one of grpc, http/protobuf", c.Protocol)
	}
	if c.SampleRatio < 0 || c.SampleRatio > 1 || c.SampleRatio != c.SampleRatio {
		bad("sample_ratio", "%v is not between 0 and 1", c.SampleRatio)
	}
	if c.ExportTimeout < 0 {
		bad("export_timeout", "must not be negative")
	}
	return errors.Join(errs...)
}

func (c Config) protocol() string {
	if c.Protocol == "" {
		return ProtocolGRPC
	}
	return c.Protocol
}

func (c Config) exportTimeout() time.Duration {
	if c.ExportTimeout <= 0 {
		return 10 * time.Second
	}
	return c.ExportTimeout
}

// TracesURL is the URL spans are sent to: OTLPEndpoint, with /v1/traces
// added for the HTTP protocol when it names no path.
func (c Config) TracesURL() string {
	if c.protocol() != ProtocolHTTP {
		return strings.TrimSuffix(c.OTLPEndpoint, "/")
	}
	u, err := url.Parse(c.OTLPEndpoint)
	if err != nil || (u.Path != "" && u.Path != "/") {
		return c.OTLPEndpoint
	}
	u.Path = "/v1/traces"
	return u.String()
}

// Telemetry is the tracing of one gateway node.
type Telemetry struct {
	cfg  Config
	node string
	tp   *sdktrace.TracerProvider
}

// Setup validates cfg and, when an endpoint is configured, builds a tracer
// provider exporting over OTLP with service.name "tongban" and the node's
// name, installs it and the W3C trace-context propagator as the OpenTelemetry
// globals, and returns it. When no endpoint is configured it installs
// nothing and returns a disabled Telemetry (Shutdown is then a no-op).
// The exporter connects lazily: an unreachable collector does not fail
// Setup; spans it cannot take are dropped.
// Export errors are logged to log (slog.Default when nil).
func Setup(ctx context.Context, cfg Config, node string, log *slog.Logger) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Telemetry{cfg: cfg, node: node}
	if !cfg.Enabled() {
		return t, nil
	}
	exp, err := newExporter(ctx, cfg)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(
			attribute.String("service.name", ServiceName),
			attribute.String("service.instance.id", node),
			attribute.String(AttrNode, node),
		),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: describing the resource: %w", err)
	}
	t.tp = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithExportTimeout(cfg.exportTimeout())),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(cfg.SampleRatio))),
	)
	if log == nil {
		log = slog.Default()
	}
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		log.Warn("telemetry: exporting spans", "err", err)
	}))
	otel.SetTracerProvider(t.tp)
	otel.SetTextMapPropagator(Propagator())
	return t, nil
}

func newExporter(ctx context.Context, cfg Config) (sdktrace.SpanExporter, error) {
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch cfg.protocol() {
	case ProtocolHTTP:
		exp, err = otlptracehttp.New(ctx,
			otlptracehttp.WithEndpointURL(cfg.TracesURL()),
			otlptracehttp.WithTimeout(cfg.exportTimeout()))
	default:
		exp, err = otlptracegrpc.New(ctx,
			otlptracegrpc.WithEndpointURL(cfg.TracesURL()),
			otlptracegrpc.WithTimeout(cfg.exportTimeout()))
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: creating the OTLP exporter for %s: %w", cfg.OTLPEndpoint, err)
	}
	return exp, nil
}

// Enabled reports whether spans are exported.
func (t *Telemetry) Enabled() bool { return t != nil && t.tp != nil }

// TracerProvider returns the provider to instrument servers with, or nil when
// tracing is disabled (instrument nothing then).
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if !t.Enabled() {
		return nil
	}
	return t.tp
}

// PluginEnv returns the environment variables that make a connector plugin
// process (connectors/sdk.Serve) export its spans to the same collector, or
// nil when tracing is disabled. The plugin records only the traces the
// gateway sampled.
func (t *Telemetry) PluginEnv() []string {
	if !t.Enabled() {
		return nil
	}
	return []string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + t.cfg.TracesURL(),
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=" + t.cfg.protocol(),
		"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT=" + strconv.FormatInt(t.cfg.exportTimeout().Milliseconds(), 10),
		"OTEL_RESOURCE_ATTRIBUTES=" + AttrNode + "=" + url.PathEscape(t.node), // percent-encoded, as the variable wants
	}
}

// Shutdown flushes the spans not yet exported and stops the exporter. It
// returns when done or when ctx ends.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry: flushing spans: %w", err)
	}
	return nil
}

// Propagator is the propagation format of Tongban: W3C trace context.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Attribute keys Tongban sets on its spans.
const (
	AttrNode       = "tongban.node"
	AttrRequestID  = "tongban.request_id"
	AttrDataset    = "tongban.dataset"
	AttrPurpose    = "tongban.purpose"
	AttrConsumer   = "tongban.consumer"
	AttrDecision   = "tongban.decision"
	AttrReason     = "tongban.reason"
	AttrTier       = "tongban.cache.tier"
	AttrCoalesced  = "tongban.cache.coalesced"
	AttrDelivery   = "tongban.delivery"
	AttrDepartment = "tongban.department"
	AttrConnector  = "tongban.connector"
)

// Scope is the instrumentation scope of the gateway's own spans.
const Scope = "github.com/tongban/tongban/gateway"

// Start starts a span named name as a child of the span in ctx, from that
// span's own tracer provider. When the span in ctx is not recording (tracing
// disabled, no trace, or a trace not sampled) it returns ctx unchanged and a
// no-op span, without allocating: callers set attributes only when
// span.IsRecording().
func Start(ctx context.Context, name string) (context.Context, trace.Span) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return ctx, noop.Span{}
	}
	return parent.TracerProvider().Tracer(Scope).Start(ctx, name)
}
