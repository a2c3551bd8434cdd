package host

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestFetchIsTraced checks the host's spans of a fetch made within a
// recording span: connector.fetch, and under it one client span per attempt
// to the plugin process. (That the plugin's own span continues the trace is
// checked end to end in gateway/app.)
func TestFetchIsTraced(t *testing.T) {
	cc := builtin("tracer", helperSettings{Department: "tdept"})
	cc.Retries = RetryConfig{Attempts: 2, Backoff: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond}}
	h := startHost(t, Config{Connectors: []ConnectorConfig{cc}})

	cases := []struct {
		key      string
		attempts string
		calls    int
	}{
		{"plain", "1", 1},
		{"flaky-t-1", "2", 2}, // the first attempt fails as unavailable
	}
	for _, tc := range cases {
		t.Run(tc.key, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			ctx, root := tp.Tracer("test").Start(t.Context(), "request")
			if _, _, err := h.Fetch(ctx, &v1.FetchRequest{Dataset: "tdept.items", Keys: map[string]string{"id": tc.key}}); err != nil {
				t.Fatal(err)
			}
			root.End()
			var fetch sdktrace.ReadOnlySpan
			var calls []sdktrace.ReadOnlySpan
			for _, s := range rec.Ended() {
				switch s.Name() {
				case "connector.fetch":
					fetch = s
				case "tongban.v1.Connector/Fetch":
					calls = append(calls, s)
				}
			}
			if fetch == nil || fetch.Parent().SpanID() != root.SpanContext().SpanID() {
				t.Fatalf("no connector.fetch span under the request span")
			}
			attrs := map[string]string{}
			for _, kv := range fetch.Attributes() {
				attrs[string(kv.Key)] = kv.Value.String()
			}
			for k, want := range map[string]string{
				"tongban.department": "tdept", "tongban.connector": "tracer", "tongban.dataset": "tdept.items", "tongban.attempts": tc.attempts,
			} {
				if attrs[k] != want {
					t.Errorf("connector.fetch %s = %q, want %q", k, attrs[k], want)
				}
			}
			if len(calls) != tc.calls {
				t.Fatalf("%d plugin call spans, want %d", len(calls), tc.calls)
			}
			for _, c := range calls {
				if c.SpanKind() != trace.SpanKindClient || c.Parent().SpanID() != fetch.SpanContext().SpanID() {
					t.Errorf("plugin call span kind %v parent %s, want a client span under connector.fetch", c.SpanKind(), c.Parent().SpanID())
				}
			}
		})
	}
}

// TestUntracedFetchTouchesNoTracer checks that a fetch outside a trace goes
// through the tracing stats handler untouched.
func TestUntracedFetchTouchesNoTracer(t *testing.T) {
	h := startHost(t, Config{Connectors: []ConnectorConfig{builtin("quiet", helperSettings{Department: "qdept"})}})
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.NeverSample()))
	ctx, root := tp.Tracer("test").Start(context.Background(), "request")
	defer root.End()
	if _, _, err := h.Fetch(ctx, &v1.FetchRequest{Dataset: "qdept.items", Keys: map[string]string{"id": "x"}}); err != nil {
		t.Fatal(err)
	}
	if n := len(rec.Started()); n != 0 {
		t.Fatalf("an unsampled fetch started %d spans", n)
	}
}
