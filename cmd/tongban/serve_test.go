package main

import (
	"strings"
	"testing"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/config"
)

// TestServeRefusesDemoTokens checks every demo token the README lists, and
// that a real token passes.
func TestServeRefusesDemoTokens(t *testing.T) {
	tests := []struct {
		token  string
		refuse bool
	}{
		{"demo-approval-bureau", true},
		{"demo-enforcement", true},
		{"demo-admin", true},
		{"demo-admin-2", true},
		{"demo-reviewer", true},
		{"demo-auditor", true},
		{"demo-subject", true},
		{"a-real-token-issued-by-the-operator", false},
	}
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			cfg := config.Config{Identities: []config.Identity{{SystemID: "x", TokenSHA256: auth.Digest(tc.token)}}}
			err := refuseDemoTokens(cfg)
			if (err != nil) != tc.refuse {
				t.Fatalf("refuseDemoTokens(%q) = %v, want refused %v", tc.token, err, tc.refuse)
			}
			if err != nil && !strings.Contains(err.Error(), "identities[0].token_sha256") {
				t.Fatalf("error %q does not name the key", err)
			}
		})
	}
}
