package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	"github.com/tongban/tongban/schemas/apierr"
)

// parseCN is a stand-in for identity.ParseIdentity: the common name is the
// system, "bad" has no identity.
func parseCN(c *x509.Certificate) (Identity, error) {
	if c.Subject.CommonName == "bad" {
		return Identity{}, errors.New("no identity URI")
	}
	return Identity{SystemID: c.Subject.CommonName}, nil
}

func certNamed(cn string) *x509.Certificate {
	c := &x509.Certificate{}
	c.Subject.CommonName = cn
	return c
}

func grpcPeer(ctx context.Context, chains [][]*x509.Certificate) context.Context {
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: chains}}})
}

func TestAuthenticateCertificate(t *testing.T) {
	entries := []Entry{{TokenSHA256: Digest("tok"), Identity: Identity{SystemID: "token-system"}}}
	withCerts := New(entries, WithCertificates(parseCN))
	tokensOnly := New(entries)
	bearer := func(ctx context.Context) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer tok"))
	}
	bg := context.Background()
	cases := []struct {
		name string
		a    *Authenticator
		ctx  context.Context
		want string
		code codes.Code
	}{
		{"REST certificate", withCerts, WithVerifiedCert(bg, certNamed("rest-system")), "rest-system", codes.OK},
		{"gRPC peer certificate", withCerts, grpcPeer(bg, [][]*x509.Certificate{{certNamed("grpc-system")}}), "grpc-system", codes.OK},
		{"certificate wins over token", withCerts, bearer(WithVerifiedCert(bg, certNamed("rest-system"))), "rest-system", codes.OK},
		{"gRPC certificate wins over token", withCerts, bearer(grpcPeer(bg, [][]*x509.Certificate{{certNamed("grpc-system")}})), "grpc-system", codes.OK},
		{"invalid certificate identity does not fall back", withCerts, bearer(WithVerifiedCert(bg, certNamed("bad"))), "", codes.Unauthenticated},
		{"TLS peer without verified chain uses token", withCerts, bearer(grpcPeer(bg, nil)), "token-system", codes.OK},
		{"TLS peer without verified chain nor token", withCerts, grpcPeer(bg, nil), "", codes.Unauthenticated},
		{"certificates not accepted", tokensOnly, WithVerifiedCert(bg, certNamed("rest-system")), "", codes.Unauthenticated},
		{"certificates not accepted, token used", tokensOnly, bearer(WithVerifiedCert(bg, certNamed("rest-system"))), "token-system", codes.OK},
		{"nil certificate", withCerts, bearer(WithVerifiedCert(bg, nil)), "token-system", codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := tc.a.Authenticate(tc.ctx)
			if got := apierr.CodeOf(err); got != tc.code {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.code, err)
			}
			if id.SystemID != tc.want {
				t.Fatalf("system = %q, want %q", id.SystemID, tc.want)
			}
		})
	}
}

func TestMetadataCannotForgeCertificate(t *testing.T) {
	a := New(nil, WithCertificates(parseCN))
	md := metadata.Pairs("x-forwarded-client-cert", "URI=spiffe://tongban.gov/region/130100/department/approval/system/x",
		"x-client-cert", "x")
	if _, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), md)); apierr.CodeOf(err) != codes.Unauthenticated {
		t.Fatalf("err = %v, want Unauthenticated", err)
	}
}
