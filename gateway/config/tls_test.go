package config

import (
	"strings"
	"testing"
)

func TestTLSValidation(t *testing.T) {
	cases := []struct {
		name string
		tls  TLS
		env  []string
		want string // "" means valid
		mode string
	}{
		{"off", TLS{}, nil, "", "none"},
		{"server only", TLS{CertFile: "s.crt", KeyFile: "s.key"}, nil, "", "none"},
		{"client CA defaults to require", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt"}, nil, "", "require"},
		{"request", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt", ClientAuth: "request"}, nil, "", "request"},
		{"from environment", TLS{}, []string{
			"TONGBAN_SERVER_TLS_CERT_FILE=s.crt", "TONGBAN_SERVER_TLS_KEY_FILE=s.key",
			"TONGBAN_SERVER_TLS_CLIENT_CA_FILE=ca.crt", "TONGBAN_SERVER_TLS_CLIENT_AUTH=request",
		}, "", "request"},
		{"key without cert", TLS{KeyFile: "s.key"}, nil, "server.tls.cert_file", ""},
		{"cert without key", TLS{CertFile: "s.crt"}, nil, "server.tls.key_file", ""},
		{"require without CA", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientAuth: "require"}, nil, "server.tls.client_ca_file", ""},
		{"request without CA", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientAuth: "request"}, nil, "server.tls.client_ca_file", ""},
		{"none with CA", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt", ClientAuth: "none"}, nil, "server.tls.client_auth", ""},
		{"unknown mode", TLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt", ClientAuth: "optional"}, nil, "server.tls.client_auth", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Default()
			cfg.Server.TLS = tc.tls
			if err := ApplyEnv(&cfg, tc.env); err != nil {
				t.Fatal(err)
			}
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if got := cfg.Server.TLS.Mode(); got != tc.mode {
					t.Fatalf("Mode = %q, want %q", got, tc.mode)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

func TestTLSFromYAML(t *testing.T) {
	cfg := Default()
	err := Decode([]byte("server:\n  tls:\n    cert_file: s.crt\n    key_file: s.key\n    client_ca_file: ca.crt\n    client_auth: request\n"), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := TLS{CertFile: "s.crt", KeyFile: "s.key", ClientCAFile: "ca.crt", ClientAuth: "request"}
	if cfg.Server.TLS != want || !cfg.Server.TLS.Enabled() {
		t.Fatalf("server.tls = %+v, want %+v", cfg.Server.TLS, want)
	}
	if err := Decode([]byte("server:\n  tls:\n    client_cert: x\n"), &cfg); err == nil || !strings.Contains(err.Error(), "client_cert") {
		t.Fatalf("unknown server.tls key: err = %v", err)
	}
}
