package telemetry

import (
	"context"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tongban/tongban/gateway/telemetry/otlptest"
)

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  Config
		want string // "" for valid
	}{
		{"disabled", Config{}, ""},
		{"grpc", Config{OTLPEndpoint: "http://127.0.0.1:4317", SampleRatio: 1}, ""},
		{"grpc tls", Config{OTLPEndpoint: "https://collector.example:4317", SampleRatio: 0.1}, ""},
		{"http with path", Config{OTLPEndpoint: "http://127.0.0.1:4318/otlp/v1/traces", Protocol: ProtocolHTTP, SampleRatio: 1}, ""},
		{"no scheme", Config{OTLPEndpoint: "127.0.0.1:4317"}, "telemetry.otlp_endpoint"},
		{"ftp", Config{OTLPEndpoint: "ftp://127.0.0.1:4317"}, "telemetry.otlp_endpoint"},
		{"no port", Config{OTLPEndpoint: "http://collector"}, "telemetry.otlp_endpoint"},
		{"credentials", Config{OTLPEndpoint: "http://u:p@collector:4317"}, "telemetry.otlp_endpoint"},
		{"grpc with path", Config{OTLPEndpoint: "http://collector:4317/v1/traces"}, "telemetry.otlp_endpoint"},
		{"protocol", Config{Protocol: "thrift"}, "telemetry.protocol"},
		{"ratio high", Config{SampleRatio: 1.5}, "telemetry.sample_ratio"},
		{"ratio negative", Config{SampleRatio: -0.1}, "telemetry.sample_ratio"},
		{"ratio NaN", Config{SampleRatio: math.NaN()}, "telemetry.sample_ratio"},
		{"timeout", Config{ExportTimeout: -time.Second}, "telemetry.export_timeout"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestTracesURL(t *testing.T) {
	cases := []struct {
		cfg  Config
		want string
	}{
		{Config{OTLPEndpoint: "http://127.0.0.1:4317"}, "http://127.0.0.1:4317"},
		{Config{OTLPEndpoint: "http://127.0.0.1:4317/"}, "http://127.0.0.1:4317"},
		{Config{OTLPEndpoint: "http://127.0.0.1:4318", Protocol: ProtocolHTTP}, "http://127.0.0.1:4318/v1/traces"},
		{Config{OTLPEndpoint: "https://c:4318/custom", Protocol: ProtocolHTTP}, "https://c:4318/custom"},
	}
	for _, tc := range cases {
		if got := tc.cfg.TracesURL(); got != tc.want {
			t.Errorf("%+v: TracesURL() = %q, want %q", tc.cfg, got, tc.want)
		}
	}
}

func TestDisabledInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	tel, err := Setup(context.Background(), Config{SampleRatio: 1}, "node-1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if tel.Enabled() || tel.TracerProvider() != nil || tel.PluginEnv() != nil {
		t.Fatalf("disabled telemetry: enabled %v, provider %v, plugin env %v", tel.Enabled(), tel.TracerProvider(), tel.PluginEnv())
	}
	if otel.GetTracerProvider() != before {
		t.Fatal("disabled telemetry replaced the global tracer provider")
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSetupRefusesInvalidConfig(t *testing.T) {
	if _, err := Setup(context.Background(), Config{OTLPEndpoint: "collector:4317"}, "n", nil); err == nil {
		t.Fatal("Setup accepted an endpoint without scheme")
	}
}

func TestStartOutsideATraceIsFree(t *testing.T) {
	ctx := context.Background()
	allocs := testing.AllocsPerRun(100, func() {
		c, span := Start(ctx, "policy.decide")
		if span.IsRecording() || c != ctx {
			t.Fatal("span recorded outside a trace")
		}
		span.End()
	})
	if allocs != 0 {
		t.Fatalf("Start outside a trace allocates %v times, want 0", allocs)
	}
}

func TestStartIsChildOfRecordingSpan(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, parent := tp.Tracer("test").Start(context.Background(), "request")
	_, child := Start(ctx, "cache.fetch")
	if !child.IsRecording() {
		t.Fatal("child of a recording span does not record")
	}
	child.End()
	parent.End()
	ended := rec.Ended()
	if len(ended) != 2 || ended[0].Name() != "cache.fetch" || ended[0].Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Fatalf("spans = %v, want cache.fetch as child of request", ended)
	}

	// An unsampled parent (a trace not recorded) gets no child either.
	never := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, unsampled := never.Tracer("test").Start(context.Background(), "request")
	defer unsampled.End()
	if _, span := Start(ctx, "x"); span.IsRecording() {
		t.Fatal("child of an unsampled span records")
	}
}

// TestExportsOverOTLP sends a span through each protocol to a real OTLP
// receiver and checks the resource and the plugin environment.
func TestExportsOverOTLP(t *testing.T) {
	col := otlptest.Start(t)
	for _, tc := range []struct {
		protocol, endpoint, node, encoded string
	}{
		{ProtocolGRPC, col.GRPCEndpoint(), "node-a", "node-a"},
		{ProtocolHTTP, col.HTTPEndpoint(), "节点,2", "%E8%8A%82%E7%82%B9%2C2"},
	} {
		t.Run(tc.protocol, func(t *testing.T) {
			ctx := context.Background()
			cfg := Config{OTLPEndpoint: tc.endpoint, Protocol: tc.protocol, SampleRatio: 1, ExportTimeout: 5 * time.Second}
			tel, err := Setup(ctx, cfg, tc.node, nil)
			if err != nil {
				t.Fatal(err)
			}
			if otel.GetTracerProvider() != tel.TracerProvider() {
				t.Fatal("Setup did not install the global tracer provider")
			}
			_, span := tel.TracerProvider().Tracer("test").Start(ctx, "probe-"+tc.protocol,
				trace.WithAttributes(attribute.String(AttrDataset, "market.enterprises")))
			span.End()
			if err := tel.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			got := col.Trace(span.SpanContext().TraceID().String())
			if len(got) != 1 {
				t.Fatalf("collector holds %d spans of the trace, want 1", len(got))
			}
			s := got[0]
			if s.Name != "probe-"+tc.protocol || s.Service != ServiceName || s.Resource[AttrNode] != tc.node || s.Attrs[AttrDataset] != "market.enterprises" {
				t.Fatalf("received %+v", s)
			}
			env := tel.PluginEnv()
			for _, want := range []string{
				"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + cfg.TracesURL(),
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=" + tc.protocol,
				"OTEL_RESOURCE_ATTRIBUTES=" + AttrNode + "=" + tc.encoded,
			} {
				if !slices.Contains(env, want) {
					t.Errorf("plugin env %v lacks %s", env, want)
				}
			}
			// The plugin's SDK reads the node back from the environment.
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", strings.TrimPrefix(env[len(env)-1], "OTEL_RESOURCE_ATTRIBUTES="))
			res, err := resource.New(ctx, resource.WithFromEnv())
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := res.Set().Value(AttrNode); v.AsString() != tc.node {
				t.Errorf("plugin resource node = %q, want %q", v.AsString(), tc.node)
			}
		})
	}
}

func TestSampleRatioZeroRecordsNoNewTrace(t *testing.T) {
	col := otlptest.Start(t)
	tel, err := Setup(context.Background(), Config{OTLPEndpoint: col.GRPCEndpoint(), SampleRatio: 0}, "n", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	_, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "request")
	defer span.End()
	if span.IsRecording() {
		t.Fatal("sample_ratio 0 recorded a new trace")
	}
}
