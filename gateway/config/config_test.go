package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := Load(filepath.Join("..", "..", "deploy", "tongban.yaml"), nil)
	if err != nil {
		t.Fatalf("deploy/tongban.yaml: %v", err)
	}
	if len(cfg.Departments.Connectors) == 0 || len(cfg.Identities) == 0 {
		t.Fatalf("example lost its connectors or identities: %+v", cfg)
	}
}

func TestDefaultIsValid(t *testing.T) {
	cfg := Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidationNamesTheKey(t *testing.T) {
	cases := map[string]struct {
		yaml string
		want string
	}{
		"unknown key":      {"server:\n  rest_adr: x\n", "rest_adr"},
		"bad address":      {"server:\n  rest_addr: nowhere\n", "server.rest_addr"},
		"bad store":        {"store:\n  driver: mysql\n", "store.driver"},
		"postgres no dsn":  {"store:\n  driver: postgres\n", "store.dsn"},
		"bad token digest": {"identities:\n  - {token_sha256: abc, system_id: s}\n", "identities[0].token_sha256"},
		"bad role":         {"identities:\n  - {token_sha256: " + strings.Repeat("a", 64) + ", system_id: s, roles: [root]}\n", "identities[0].roles[0]"},
		"subject w/o id":   {"identities:\n  - {token_sha256: " + strings.Repeat("a", 64) + ", system_id: s, roles: [subject]}\n", "identities[0].subject"},
		"bad level":        {"log:\n  level: loud\n", "log.level"},
		"bad connector":    {"departments:\n  connectors:\n    - {name: m, type: soap}\n", "connectors[0].type"},
		"negative stale":   {"cache:\n  max_stale: -1s\n", "cache.max_stale"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.yaml")
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %q", err, tc.want)
			}
		})
	}
}

func TestEnvOverrides(t *testing.T) {
	cfg := Default()
	err := ApplyEnv(&cfg, []string{"TONGBAN_SERVER_REST_ADDR=127.0.0.1:18080", "TONGBAN_CACHE_MAX_STALE=5m", "PATH=/bin", "TONGBAN_TOKEN=x"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.RESTAddr != "127.0.0.1:18080" || cfg.Cache.MaxStale != 5*time.Minute {
		t.Fatalf("overrides not applied: %+v", cfg)
	}
	if err := ApplyEnv(&cfg, []string{"TONGBAN_SERVER_RESTADDR=x"}); err == nil || !strings.Contains(err.Error(), "TONGBAN_SERVER_RESTADDR") {
		t.Fatalf("typo accepted: %v", err)
	}
	if err := ApplyEnv(&cfg, []string{"TONGBAN_CACHE_MAX_STALE=soon"}); err == nil || !strings.Contains(err.Error(), "TONGBAN_CACHE_MAX_STALE") {
		t.Fatalf("bad duration accepted: %v", err)
	}
}
