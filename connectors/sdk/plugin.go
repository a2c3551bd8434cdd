package sdk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"

	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// ProtocolVersion is the version of the connector plugin protocol this build
// speaks. It changes only when the tongban.v1.Connector service changes
// incompatibly; a host refuses plugins that speak another version.
const ProtocolVersion = 1

// PluginName is the name under which the connector is dispensed from a
// go-plugin client.
const PluginName = "connector"

// Environment variables the host sets for a connector process.
const (
	// EnvName holds the connector's name from the host configuration.
	EnvName = "TONGBAN_CONNECTOR_NAME"
	// EnvConfig holds the connector's settings (the "settings" block of its
	// host configuration) as a JSON object.
	EnvConfig = "TONGBAN_CONNECTOR_CONFIG"
	// EnvLogLevel holds the level ("debug", "info", "warn", "error") below
	// which the connector process does not log.
	EnvLogLevel = "TONGBAN_CONNECTOR_LOG_LEVEL"
)

// Handshake is the go-plugin handshake of a Tongban connector. The magic
// cookie only tells a connector binary that it was started by a host; it is
// not a security measure.
var Handshake = handshake(ProtocolVersion)

func handshake(version int) plugin.HandshakeConfig {
	return plugin.HandshakeConfig{
		ProtocolVersion:  uint(version),
		MagicCookieKey:   "TONGBAN_CONNECTOR_PLUGIN",
		MagicCookieValue: "d7c3f0a2-tongban-connector",
	}
}

// Plugin is the go-plugin binding of a Connector. On the plugin side Impl is
// served; on the host side GRPCClient returns a *Client.
type Plugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the connector to serve; nil on the host side.
	Impl Connector
}

var _ plugin.GRPCPlugin = (*Plugin)(nil)

// GRPCServer registers the tongban.v1.Connector service for Impl.
func (p *Plugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("sdk: no connector to serve")
	}
	v1.RegisterConnectorServer(s, &server{impl: p.Impl, log: slog.Default()})
	return nil
}

// GRPCClient returns a *Client over cc.
func (p *Plugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, cc *grpc.ClientConn) (any, error) {
	return NewClient(cc), nil
}

// PluginSet returns the go-plugin plugin map serving c. Hosts pass
// PluginSet(nil).
func PluginSet(c Connector) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &Plugin{Impl: c}}
}

// Serve runs c as a connector plugin and returns when the host ends the
// process. It is the only call a department's main function makes:
//
//	func main() { sdk.Serve(registry.New()) }
//
// Serve sets the default slog logger to write to stderr in the form the host
// relays into its own log, at the level the host asks for.
//
// When the host passes an OTLP endpoint in the environment
// ($OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT, with
// $OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or $OTEL_EXPORTER_OTLP_PROTOCOL "grpc",
// the default, or "http/protobuf"), Serve also traces: each call the host
// makes within a sampled trace becomes a server span continuing the host's
// trace (W3C traceparent in the call's metadata), exported with service.name
// "tongban-connector". The tracer provider is installed as the OpenTelemetry
// global, so spans a connector starts from the call's context (for example
// with otelhttp around its HTTP client) join the trace too. The process
// never starts traces of its own, and flushes its spans when the host ends
// it.
func Serve(c Connector) {
	ServeProtocol(c, ProtocolVersion)
}

// ServeProtocol is Serve announcing the given protocol version. Only tests of
// version negotiation need it: a host refuses a version other than its own.
func ServeProtocol(c Connector, version int) {
	level := parseLevel(os.Getenv(EnvLogLevel))
	slog.SetDefault(slog.New(newPluginLogHandler(os.Stderr, level)))
	grpcServer := plugin.DefaultGRPCServer
	if handler, shutdown := setupTracing(context.Background()); handler != nil {
		defer shutdown()
		grpcServer = func(opts []grpc.ServerOption) *grpc.Server {
			return plugin.DefaultGRPCServer(append(opts, grpc.StatsHandler(handler)))
		}
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: handshake(version),
		Plugins:         PluginSet(c),
		GRPCServer:      grpcServer,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name:       "connector",
			Level:      hclogLevel(level),
			Output:     os.Stderr,
			JSONFormat: true,
		}),
	})
}

// TracingServiceName is the service.name of a connector process's spans.
const TracingServiceName = "tongban-connector"

// tracingFlushTimeout bounds the final flush of spans at exit; go-plugin
// kills a plugin that has not exited 2s after the host asked it to.
const tracingFlushTimeout = 1500 * time.Millisecond

// setupTracing builds the tracing of a connector process from the OTLP
// environment the host passes. It returns a nil handler when no endpoint is
// set or tracing cannot be set up (which is logged: a connector serves
// without tracing rather than not at all).
func setupTracing(ctx context.Context) (stats.Handler, func()) {
	endpoint := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint == "" {
		return nil, nil
	}
	protocol := cmp.Or(os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), "grpc")
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch protocol {
	case "grpc":
		exp, err = otlptracegrpc.New(ctx) // endpoint, timeout and TLS from the environment
	case "http/protobuf":
		exp, err = otlptracehttp.New(ctx)
	default:
		err = fmt.Errorf("OTLP protocol %q is not one of grpc, http/protobuf", protocol)
	}
	if err != nil {
		slog.Error("tracing disabled", "endpoint", endpoint, "err", err)
		return nil, nil
	}
	res, err := resource.New(ctx,
		resource.WithFromEnv(), // $OTEL_RESOURCE_ATTRIBUTES: the host adds its node
		resource.WithAttributes(
			attribute.String("service.name", TracingServiceName),
			attribute.String("tongban.connector", os.Getenv(EnvName)),
		),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
	)
	if err != nil {
		slog.Warn("tracing: describing the resource", "err", err)
	}
	if res == nil {
		res = resource.Default()
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		// Only continue the host's sampled traces; never start one.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())),
	)
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { slog.Warn("tracing: exporting spans", "err", err) }))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	handler := otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithFilter(func(info *stats.RPCTagInfo) bool {
			return strings.HasPrefix(info.FullMethodName, "/"+v1.Connector_ServiceDesc.ServiceName+"/")
		}),
	)
	shutdown := func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := tp.Shutdown(sctx); err != nil {
			slog.Warn("tracing: flushing spans at exit", "err", err)
		}
	}
	return handler, shutdown
}

// Dispense starts the plugin process of pc if it is not running, negotiates
// the protocol and returns the connector client. name is the connector's name
// in the host configuration, used in errors. A plugin speaking another
// protocol version is refused with a FAILED_PRECONDITION error, reason
// PROTOCOL_VERSION_MISMATCH, naming both versions. On error the process is
// killed.
func Dispense(name string, pc *plugin.Client) (*Client, error) {
	rpc, err := pc.Client()
	if err != nil {
		pc.Kill()
		return nil, launchError(name, err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		pc.Kill()
		return nil, fmt.Errorf("connector %q: dispensing plugin: %w", name, err)
	}
	cl, ok := raw.(*Client)
	if !ok {
		pc.Kill()
		return nil, fmt.Errorf("connector %q: plugin dispensed %T, want *sdk.Client", name, raw)
	}
	return cl, nil
}

var pluginVersionRE = regexp.MustCompile(`Plugin version: (\d+)`)

// launchError turns go-plugin's start-up errors into ones that say what went
// wrong in Tongban's terms.
func launchError(name string, err error) error {
	msg := err.Error()
	if m := pluginVersionRE.FindStringSubmatch(msg); m != nil {
		v, _ := strconv.Atoi(m[1])
		return apierr.Newf(codes.FailedPrecondition, apierr.ReasonProtocolMismatch,
			"connector %q speaks connector protocol %d, this gateway speaks %d", name, v, ProtocolVersion).
			With("connector", name).
			With("plugin_protocol", m[1]).
			With("host_protocol", strconv.Itoa(ProtocolVersion)).
			WithCause(err)
	}
	if strings.Contains(msg, "Unrecognized remote plugin message") {
		return fmt.Errorf("connector %q did not answer the plugin handshake (is it a connector built with sdk.Serve?): %w", name, err)
	}
	return fmt.Errorf("connector %q: starting plugin: %w", name, err)
}

// newPluginLogHandler returns a slog handler writing JSON lines with the keys
// go-plugin's host parses (@level, @message), so connector logs appear in the
// host's log at their own level.
func newPluginLogHandler(w io.Writer, level slog.Level) slog.Handler {
	return slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) > 0 {
				return a
			}
			switch a.Key {
			case slog.TimeKey:
				return slog.Attr{} // the host stamps relayed lines itself
			case slog.LevelKey:
				return slog.String("@level", levelName(a.Value.Any()))
			case slog.MessageKey:
				return slog.Attr{Key: "@message", Value: a.Value}
			}
			return a
		},
	})
}

func levelName(v any) string {
	l, ok := v.(slog.Level)
	if !ok {
		return "info"
	}
	switch {
	case l < slog.LevelInfo:
		return "debug"
	case l < slog.LevelWarn:
		return "info"
	case l < slog.LevelError:
		return "warn"
	default:
		return "error"
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return l
}

func hclogLevel(l slog.Level) hclog.Level {
	switch {
	case l < slog.LevelInfo:
		return hclog.Debug
	case l < slog.LevelWarn:
		return hclog.Info
	case l < slog.LevelError:
		return hclog.Warn
	default:
		return hclog.Error
	}
}
