package auth

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/schemas/apierr"
)

func TestTokenDigests(t *testing.T) {
	long := strings.Repeat("x", 300) // beyond tokenDigest's buffer
	a := New([]Entry{
		{TokenSHA256: strings.ToUpper(Digest("upper")), Identity: Identity{SystemID: "upper"}},
		{TokenSHA256: Digest(long), Identity: Identity{SystemID: "long"}},
		{TokenSHA256: "not hex", Identity: Identity{SystemID: "broken"}},
		{TokenSHA256: Digest("short")[:62], Identity: Identity{SystemID: "short digest"}},
		{TokenSHA256: Digest("dup"), Identity: Identity{SystemID: "first"}},
		{TokenSHA256: Digest("dup"), Identity: Identity{SystemID: "second"}},
	})
	cases := []struct {
		name string
		md   metadata.MD
		want string
	}{
		{"digest given in upper case", metadata.Pairs("authorization", "Bearer upper"), "upper"},
		{"long token", metadata.Pairs("authorization", "Bearer "+long), "long"},
		{"the last entry of a digest wins", metadata.Pairs("authorization", "Bearer dup"), "second"},
		{"invalid digest matches nothing", metadata.Pairs("authorization", "Bearer not hex"), ""},
		{"short digest matches nothing", metadata.Pairs("authorization", "Bearer short"), ""},
		{"key not in lower case", metadata.MD{"Authorization": {"Bearer upper"}}, "upper"},
		{"first bearer value wins", metadata.MD{"authorization": {"Basic eA==", "Bearer  upper ", "Bearer long"}}, "upper"},
		{"other keys ignored", metadata.Pairs("x-authorization", "Bearer upper"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), tc.md))
			if tc.want == "" {
				if apierr.CodeOf(err) != codes.Unauthenticated {
					t.Fatalf("err = %v, want Unauthenticated", err)
				}
				return
			}
			if err != nil || id.SystemID != tc.want {
				t.Fatalf("got %q, %v, want %q", id.SystemID, err, tc.want)
			}
		})
	}
}

// TestRateLimitSharedByTokenAndCertificate checks that a caller's bucket is
// one, whether it comes with its token or its certificate.
func TestRateLimitSharedByTokenAndCertificate(t *testing.T) {
	a := New([]Entry{{TokenSHA256: Digest("tok"), Identity: Identity{SystemID: "sys"}}},
		WithCertificates(parseCN), WithRateLimit(0.001, 4))
	byToken := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer tok"))
	byCert := WithVerifiedCert(context.Background(), certNamed("sys"))
	for i, ctx := range []context.Context{byToken, byCert, byToken, byCert} {
		if _, err := a.Authenticate(ctx); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	for i, ctx := range []context.Context{byToken, byCert} {
		if _, err := a.Authenticate(ctx); apierr.ReasonOf(err) != apierr.ReasonRateLimited {
			t.Fatalf("request %d beyond the burst: err = %v, want RATE_LIMITED", i, err)
		}
	}
	if _, err := a.Authenticate(WithVerifiedCert(context.Background(), certNamed("other"))); err != nil {
		t.Fatalf("another caller was limited: %v", err)
	}
}
