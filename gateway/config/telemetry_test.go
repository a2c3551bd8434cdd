package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestTelemetrySection(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		env  []string
		want string // key the error names; "" when valid
	}{
		{"absent", "", nil, ""},
		{"grpc", "telemetry:\n  otlp_endpoint: http://127.0.0.1:4317\n  sample_ratio: 0.25\n", nil, ""},
		{"http", "telemetry:\n  otlp_endpoint: https://collector:4318\n  protocol: http/protobuf\n", nil, ""},
		{"from env", "", []string{"TONGBAN_TELEMETRY_OTLP_ENDPOINT=http://127.0.0.1:4317", "TONGBAN_TELEMETRY_SAMPLE_RATIO=0.5"}, ""},
		{"unknown key", "telemetry:\n  endpoint: http://127.0.0.1:4317\n", nil, "endpoint"},
		{"no scheme", "telemetry:\n  otlp_endpoint: 127.0.0.1:4317\n", nil, "telemetry.otlp_endpoint"},
		{"bad protocol", "telemetry:\n  otlp_endpoint: http://127.0.0.1:4317\n  protocol: udp\n", nil, "telemetry.protocol"},
		{"ratio", "telemetry:\n  sample_ratio: 2\n", nil, "telemetry.sample_ratio"},
		{"env ratio", "", []string{"TONGBAN_TELEMETRY_SAMPLE_RATIO=often"}, "TONGBAN_TELEMETRY_SAMPLE_RATIO"},
		{"env endpoint", "", []string{"TONGBAN_TELEMETRY_OTLP_ENDPOINT=collector"}, "telemetry.otlp_endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := Load(path, tc.env)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if tc.yaml == "" && tc.env == nil && (cfg.Telemetry.Enabled() || cfg.Telemetry.SampleRatio != 1) {
					t.Fatalf("default telemetry = %+v, want off with ratio 1", cfg.Telemetry)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
	cfg, err := Load("", []string{"TONGBAN_TELEMETRY_OTLP_ENDPOINT=http://127.0.0.1:4317", "TONGBAN_TELEMETRY_SAMPLE_RATIO=0.5", "TONGBAN_TELEMETRY_PROTOCOL=grpc"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Telemetry.OTLPEndpoint != "http://127.0.0.1:4317" || cfg.Telemetry.SampleRatio != 0.5 || cfg.Telemetry.Protocol != "grpc" {
		t.Fatalf("env overrides not applied: %+v", cfg.Telemetry)
	}
}
