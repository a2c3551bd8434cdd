package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/schemas/apierr"
)

func TestAuthenticate(t *testing.T) {
	a := New([]Entry{
		{TokenSHA256: Digest("secret-1"), Identity: Identity{SystemID: "sys-1", Roles: []string{RoleAdmin}}},
		{TokenSHA256: Digest("secret-2"), Identity: Identity{SystemID: "sys-2"}},
	})
	cases := []struct {
		name   string
		header []string
		want   string
		code   codes.Code
	}{
		{"valid", []string{"Bearer secret-1"}, "sys-1", codes.OK},
		{"scheme case", []string{"bearer secret-2"}, "sys-2", codes.OK},
		{"no header", nil, "", codes.Unauthenticated},
		{"wrong scheme", []string{"Basic c2VjcmV0LTE="}, "", codes.Unauthenticated},
		{"unknown token", []string{"Bearer nope"}, "", codes.Unauthenticated},
		{"empty token", []string{"Bearer "}, "", codes.Unauthenticated},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			if tc.header != nil {
				ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", tc.header[0]))
			}
			id, err := a.Authenticate(ctx)
			if got := apierr.CodeOf(err); got != tc.code {
				t.Fatalf("code = %v, want %v (err %v)", got, tc.code, err)
			}
			if id.SystemID != tc.want {
				t.Errorf("system = %q, want %q", id.SystemID, tc.want)
			}
		})
	}
}

func TestRequire(t *testing.T) {
	a := New([]Entry{{TokenSHA256: Digest("t"), Identity: Identity{SystemID: "s", Roles: []string{RoleAuditor}}}})
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer t"))
	if _, err := a.Require(ctx, RoleAuditor); err != nil {
		t.Fatalf("auditor refused: %v", err)
	}
	_, err := a.Require(ctx, RoleAdmin)
	if apierr.CodeOf(err) != codes.PermissionDenied || apierr.ReasonOf(err) != apierr.ReasonForbiddenRole {
		t.Fatalf("err = %v, want PermissionDenied/FORBIDDEN_ROLE", err)
	}
}

func TestRateLimitPerCaller(t *testing.T) {
	a := New([]Entry{
		{TokenSHA256: Digest("a"), Identity: Identity{SystemID: "sys-a"}},
		{TokenSHA256: Digest("b"), Identity: Identity{SystemID: "sys-b"}},
	}, WithRateLimit(0.001, 3))
	ctxA := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer a"))
	ctxB := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer b"))
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctxA); err != nil {
			t.Fatalf("request %d within the burst: %v", i, err)
		}
	}
	_, err := a.Authenticate(ctxA)
	if apierr.CodeOf(err) != codes.ResourceExhausted || apierr.ReasonOf(err) != apierr.ReasonRateLimited {
		t.Fatalf("beyond the burst: err = %v, want RESOURCE_EXHAUSTED/RATE_LIMITED", err)
	}
	if _, err := a.Authenticate(ctxB); err != nil {
		t.Fatalf("another caller was limited too: %v", err)
	}
}

// TestBearerTokenFromAuthorizationValues: values given with
// WithAuthorization are read as the "authorization" metadata is (the first
// well-formed bearer token), and in its place.
func TestBearerTokenFromAuthorizationValues(t *testing.T) {
	md := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer from-metadata"))
	for _, c := range []struct {
		ctx  context.Context
		want string
	}{
		{md, "from-metadata"},
		{WithAuthorization(context.Background(), []string{"Basic x", " bearer  tok "}), "tok"},
		{WithAuthorization(md, []string{"Bearer given"}), "given"},
		{WithAuthorization(md, []string{"Basic x"}), ""},
		{WithAuthorization(context.Background(), nil), ""},
	} {
		got, ok := BearerToken(c.ctx)
		if got != c.want || ok != (c.want != "") {
			t.Errorf("BearerToken = %q, %v; want %q", got, ok, c.want)
		}
	}
}
