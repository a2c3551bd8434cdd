package sdk

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
)

func TestSetupTracingFromEnvironment(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		enabled bool
	}{
		{"no endpoint", nil, false},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}, true},
		{"http, generic variables", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, true},
		{"default protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, true},
		{"unknown protocol", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
				t.Setenv(k, tc.env[k])
			}
			before := otel.GetTracerProvider()
			handler, shutdown := setupTracing(context.Background())
			if (handler != nil) != tc.enabled {
				t.Fatalf("handler = %v, want enabled %v", handler, tc.enabled)
			}
			if !tc.enabled {
				if otel.GetTracerProvider() != before {
					t.Fatal("disabled tracing replaced the global tracer provider")
				}
				return
			}
			// The process continues traces only: a span without a sampled
			// parent is not recorded.
			_, span := otel.Tracer("test").Start(context.Background(), "health")
			if span.IsRecording() {
				t.Error("the plugin process started a trace of its own")
			}
			span.End()
			shutdown()
		})
	}
}
