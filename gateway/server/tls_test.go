package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/identity"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// whoami answers QueryDataset with the identity the service saw, in the
// grant_ids field: system, department, region, roles.
type whoami struct {
	v1.UnimplementedGatewayServer
	auth *auth.Authenticator
}

func (w *whoami) QueryDataset(ctx context.Context, _ *v1.QueryRequest) (*v1.QueryResponse, error) {
	id, err := w.auth.Authenticate(ctx)
	if err != nil {
		return nil, err
	}
	return &v1.QueryResponse{GrantIds: []string{id.SystemID, id.Department, id.Region, strings.Join(id.Roles, ",")}}, nil
}

// pki is a CA with the files a TLS deployment needs, plus a foreign CA.
type pki struct {
	caFile, serverCert, serverKey string
	clientCert, clientKey         string
	foreignCert, foreignKey       string
	client                        auth.Identity
}

func newPKI(t *testing.T) pki {
	t.Helper()
	dir := t.TempDir()
	ca, err := identity.IssueCA("Test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := identity.WriteCA(dir, ca); err != nil {
		t.Fatal(err)
	}
	p := pki{
		caFile: filepath.Join(dir, identity.CACertFile),
		client: auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100", Roles: []string{"window"}},
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p.serverCert, p.serverKey, err = identity.WriteIssued(filepath.Join(dir, "server"), srv); err != nil {
		t.Fatal(err)
	}
	cl, err := ca.IssueClient(p.client, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p.clientCert, p.clientKey, err = identity.WriteIssued(filepath.Join(dir, "client"), cl); err != nil {
		t.Fatal(err)
	}
	// The same identity, signed by a CA the gateway does not trust.
	foreign, err := identity.IssueCA("Foreign CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := foreign.IssueClient(p.client, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if p.foreignCert, p.foreignKey, err = identity.WriteIssued(filepath.Join(dir, "foreign"), fc); err != nil {
		t.Fatal(err)
	}
	return p
}

const devToken = "dev-token"

var tokenIdentity = auth.Identity{SystemID: "dev-system", Department: "market", Region: "130200"}

// startTLS starts a server with TLS in the given client-auth mode and returns
// its gRPC and REST addresses.
func startTLS(t *testing.T, p pki, mode string) (grpcAddr, restAddr string) {
	t.Helper()
	files := identity.ServerFiles{CertFile: p.serverCert, KeyFile: p.serverKey, ClientAuth: mode}
	if mode != identity.ClientAuthNone {
		files.ClientCAFile = p.caFile
	}
	tc, err := identity.ServerTLSConfig(files)
	if err != nil {
		t.Fatalf("ServerTLSConfig: %v", err)
	}
	authn := auth.New([]auth.Entry{{TokenSHA256: auth.Digest(devToken), Identity: tokenIdentity}},
		auth.WithCertificates(identity.ParseIdentity))
	s, err := New(Options{
		GRPCAddr:        "127.0.0.1:0",
		RESTAddr:        "127.0.0.1:0",
		RequestTimeout:  10 * time.Second,
		MaxBodyBytes:    1 << 20,
		ShutdownTimeout: 5 * time.Second,
		TLS:             tc,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, Services{Gateway: &whoami{auth: authn}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s.GRPCAddr(), s.RESTAddr()
}

// caller is how a test client presents itself.
type caller struct {
	cert, key string // client certificate, or none
	token     string // bearer token, or none
	headers   map[string]string
}

func clientTLS(t *testing.T, p pki, c caller) *tls.Config {
	t.Helper()
	cfg, err := identity.ClientTLSConfig(c.cert, c.key, p.caFile)
	if err != nil {
		t.Fatalf("ClientTLSConfig: %v", err)
	}
	if len(cfg.Certificates) > 0 {
		// Send the certificate whenever one is asked for, even when the
		// server's list of acceptable CAs does not name its issuer (Go's
		// default would then send none): the server must refuse it.
		cert := cfg.Certificates[0]
		cfg.Certificates = nil
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg
}

// grpcWho calls QueryDataset over gRPC and returns the identity seen.
func grpcWho(t *testing.T, p pki, addr string, c caller) ([]string, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(clientTLS(t, p, c))))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if c.token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.token)
	}
	for k, v := range c.headers {
		ctx = metadata.AppendToOutgoingContext(ctx, k, v)
	}
	resp, err := v1.NewGatewayClient(conn).QueryDataset(ctx, &v1.QueryRequest{Dataset: "d", Purpose: "p"})
	if err != nil {
		return nil, err
	}
	return resp.GetGrantIds(), nil
}

// restWho calls POST /v1/datasets/d:query over HTTPS and returns the HTTP
// status and the identity seen.
func restWho(t *testing.T, p pki, addr string, c caller) (int, []string, error) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: clientTLS(t, p, c), ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/datasets/d:query", strings.NewReader(`{"purpose":"p"}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, nil, err
	}
	var out struct {
		GrantIDs []string `json:"grant_ids"`
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatalf("decoding %s: %v", body, err)
		}
	}
	return resp.StatusCode, out.GrantIDs, nil
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	certID := []string{"approval-bureau", "approval", "130100", "window"}
	tokID := []string{"dev-system", "market", "130200", ""}
	withCert := caller{cert: p.clientCert, key: p.clientKey}
	withCertAndToken := caller{cert: p.clientCert, key: p.clientKey, token: devToken}
	foreign := caller{cert: p.foreignCert, key: p.foreignKey}
	tokenOnly := caller{token: devToken}
	// Headers a client might try to pass an identity in; none is trusted.
	forged := caller{headers: map[string]string{
		"X-Forwarded-Client-Cert":          "By=spiffe://tongban.gov;URI=spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau",
		"X-Client-Cert":                    "spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau",
		"Grpc-Metadata-X-Tongban-Identity": "spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau",
	}}

	type want struct {
		ok   bool
		id   []string
		code codes.Code // for a refused call that got through the handshake
	}
	cases := []struct {
		mode   string
		caller string
		c      caller
		want   want
	}{
		{identity.ClientAuthRequire, "certificate", withCert, want{ok: true, id: certID}},
		{identity.ClientAuthRequire, "certificate and token: the certificate wins", withCertAndToken, want{ok: true, id: certID}},
		{identity.ClientAuthRequire, "certificate of another CA", foreign, want{}},
		{identity.ClientAuthRequire, "token without certificate", tokenOnly, want{}},
		{identity.ClientAuthRequest, "certificate", withCert, want{ok: true, id: certID}},
		{identity.ClientAuthRequest, "token without certificate", tokenOnly, want{ok: true, id: tokID}},
		{identity.ClientAuthRequest, "certificate of another CA", foreign, want{}},
		{identity.ClientAuthRequest, "nothing", caller{}, want{code: codes.Unauthenticated}},
		{identity.ClientAuthRequest, "forged identity headers", forged, want{code: codes.Unauthenticated}},
		{identity.ClientAuthNone, "token", tokenOnly, want{ok: true, id: tokID}},
		{identity.ClientAuthNone, "certificate is not asked for", withCert, want{code: codes.Unauthenticated}},
	}
	addrs := map[string][2]string{}
	for _, mode := range []string{identity.ClientAuthRequire, identity.ClientAuthRequest, identity.ClientAuthNone} {
		g, r := startTLS(t, p, mode)
		addrs[mode] = [2]string{g, r}
	}
	for _, tc := range cases {
		t.Run(tc.mode+"/"+tc.caller, func(t *testing.T) {
			a := addrs[tc.mode]
			t.Run("grpc", func(t *testing.T) {
				got, err := grpcWho(t, p, a[0], tc.c)
				switch {
				case tc.want.ok:
					if err != nil {
						t.Fatalf("call failed: %v", err)
					}
					if strings.Join(got, "|") != strings.Join(tc.want.id, "|") {
						t.Fatalf("identity = %q, want %q", got, tc.want.id)
					}
				case tc.want.code != codes.OK:
					if status.Code(err) != tc.want.code {
						t.Fatalf("err = %v, want code %v", err, tc.want.code)
					}
				default:
					// Refused in the handshake.
					if err == nil {
						t.Fatalf("call succeeded as %q, want it refused", got)
					}
					if c := status.Code(err); c != codes.Unavailable {
						t.Fatalf("err = %v, want a transport failure", err)
					}
				}
			})
			t.Run("rest", func(t *testing.T) {
				code, got, err := restWho(t, p, a[1], tc.c)
				switch {
				case tc.want.ok:
					if err != nil || code != http.StatusOK {
						t.Fatalf("HTTP %d, %v", code, err)
					}
					if strings.Join(got, "|") != strings.Join(tc.want.id, "|") {
						t.Fatalf("identity = %q, want %q", got, tc.want.id)
					}
				case tc.want.code == codes.Unauthenticated:
					if err != nil || code != http.StatusUnauthorized {
						t.Fatalf("HTTP %d, %v; want 401", code, err)
					}
				default:
					if err == nil {
						t.Fatalf("HTTP %d as %q, want the handshake refused", code, got)
					}
				}
			})
		})
	}
}

func TestPlainClientRefusedByTLSServer(t *testing.T) {
	p := newPKI(t)
	_, rest := startTLS(t, p, identity.ClientAuthRequest)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + rest + "/healthz")
	if err != nil {
		return // the connection was dropped: refused
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatal("a plain-HTTP request was served by the TLS listener")
	}
}
