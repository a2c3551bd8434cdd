package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/identity"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

// TestServeMutualTLS issues a CA, a server and a client certificate with the
// real binary's ca commands, runs `tongban serve` with server.tls in
// "request" mode and checks, over REST and gRPC, that the identity the
// policy engine sees is the certificate's (it names the system in its
// denial: the node has no grants), that a bearer token still works without a
// certificate, and that a caller with neither is refused.
func TestServeMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a gateway node")
	}
	bin := buildBinary(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	for _, args := range [][]string{
		{"init", "--dir", ca},
		{"issue", "--dir", ca, "--server", "--host", "127.0.0.1"},
		{"issue", "--dir", ca, "--system", "approval-bureau", "--department", "approval", "--region", "130100"},
	} {
		if code, _, errs := runCA(t, args...); code != 0 {
			t.Fatalf("ca %v: exit %d: %s", args, code, errs)
		}
	}
	rest := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	grpcAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cfg := fmt.Sprintf(`node: tls-node
server:
  grpc_addr: %s
  rest_addr: %s
  tls:
    cert_file: %s
    key_file: %s
    client_ca_file: %s
    client_auth: request
identities:
  - {token_sha256: %s, system_id: token-system, department: market, region: "130200"}
store: {driver: sqlite, path: %s}
audit: {dir: %s, signing_key_file: %s, subject_key_file: %s}
forms: {corrections_path: %s}
`, grpcAddr, rest,
		filepath.Join(ca, "server.crt"), filepath.Join(ca, "server.key"), filepath.Join(ca, "ca.crt"),
		auth.Digest("tls-e2e-token"),
		filepath.Join(dir, "grants.db"), filepath.Join(dir, "audit"), filepath.Join(dir, "audit.key"),
		filepath.Join(dir, "subject.key"), filepath.Join(dir, "corrections.db"))
	cfgPath := filepath.Join(dir, "tongban.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	node := startProcess(t, bin, "serve", "--config", cfgPath)

	withCert, err := identity.ClientTLSConfig(filepath.Join(ca, "clients", "approval-bureau.crt"), filepath.Join(ca, "clients", "approval-bureau.key"), filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	noCert, err := identity.ClientTLSConfig("", "", filepath.Join(ca, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	do := func(tc *tls.Config, method, path, token, body string) (int, string, error) {
		tr := &http.Transport{TLSClientConfig: tc}
		defer tr.CloseIdleConnections()
		req, err := http.NewRequest(method, "https://"+rest+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}

	// Ready when /readyz answers over TLS (bounded: 90 s, 450 tries).
	ready := false
	for i := 0; i < 450 && !ready; i++ {
		select {
		case err := <-node.done:
			node.done <- err
			t.Fatalf("serve exited early: %v\nstderr:\n%s", err, node.stderr())
		default:
		}
		if code, _, err := do(noCert, "GET", "/readyz", "", ""); err == nil && code == http.StatusOK {
			ready = true
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !ready {
		t.Fatalf("serve not ready\nstderr:\n%s", node.stderr())
	}

	const query = `{"keys": {"credit_code": "91350100M000100Y43"}, "purpose": "approval"}`
	const path = "/v1/datasets/market.business_licences:query"
	cases := []struct {
		name  string
		tc    *tls.Config
		token string
		code  int
		want  string
	}{
		{"certificate", withCert, "", http.StatusForbidden, "approval-bureau"},
		{"certificate wins over token", withCert, "tls-e2e-token", http.StatusForbidden, "approval-bureau"},
		{"token without certificate", noCert, "tls-e2e-token", http.StatusForbidden, "token-system"},
		{"neither", noCert, "", http.StatusUnauthorized, "UNAUTHENTICATED"},
	}
	for _, tc := range cases {
		t.Run("rest/"+tc.name, func(t *testing.T) {
			code, body, err := do(tc.tc, "POST", path, tc.token, query)
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.code || !strings.Contains(body, tc.want) {
				t.Fatalf("HTTP %d %s; want %d mentioning %q", code, body, tc.code, tc.want)
			}
		})
	}

	t.Run("grpc/certificate", func(t *testing.T) {
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(withCert)))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err = v1.NewGatewayClient(conn).QueryDataset(ctx, &v1.QueryRequest{
			Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91350100M000100Y43"}, Purpose: "approval",
		})
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "approval-bureau") {
			t.Fatalf("err = %v, want PermissionDenied naming approval-bureau", err)
		}
	})

	t.Run("plain HTTP refused", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + rest + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("served plain HTTP")
			}
		}
	})
	node.stop(t)
}
