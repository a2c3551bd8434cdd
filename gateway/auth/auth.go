// Package auth authenticates callers. Member systems and staff present a
// bearer token; tokens are kept only as SHA-256 digests. The same code serves
// gRPC and REST: grpc-gateway forwards the Authorization header as incoming
// metadata, so services call Authenticate with their request context.
package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/schemas/apierr"
)

// Roles a caller may hold. Member systems hold none.
const (
	RoleAdmin         = "admin"
	RoleLegalReviewer = "legal_reviewer"
	RoleAuditor       = "auditor"
	RoleSubject       = "subject"
)

// Identity is an authenticated caller.
type Identity struct {
	// SystemID identifies the calling system or staff member.
	SystemID string
	// Department is the caller's department.
	Department string
	// Region is the caller's region code.
	Region string
	// Roles held by the caller.
	Roles []string
	// Subject is the identifier whose access log a "subject" identity may read.
	Subject string
}

// HasRole reports whether the identity holds role.
func (id Identity) HasRole(role string) bool { return slices.Contains(id.Roles, role) }

// Authenticator maps bearer tokens to identities.
type Authenticator struct {
	byDigest map[string]Identity
}

// Entry is one identity with the hex SHA-256 digest of its token.
type Entry struct {
	TokenSHA256 string
	Identity    Identity
}

// New returns an authenticator for the given identities.
func New(entries []Entry) *Authenticator {
	a := &Authenticator{byDigest: make(map[string]Identity, len(entries))}
	for _, e := range entries {
		a.byDigest[strings.ToLower(e.TokenSHA256)] = e.Identity
	}
	return a
}

// Digest returns the hex SHA-256 of a token, the form stored in config.
func Digest(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

var errNoToken = apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated,
	`missing credentials: send "Authorization: Bearer <token>"`)

var errBadToken = apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated,
	"the bearer token is not valid")

// Authenticate returns the caller's identity from the request context.
func (a *Authenticator) Authenticate(ctx context.Context) (Identity, error) {
	token, ok := BearerToken(ctx)
	if !ok {
		return Identity{}, errNoToken
	}
	id, ok := a.byDigest[Digest(token)]
	if !ok {
		return Identity{}, errBadToken
	}
	return id, nil
}

// BearerToken extracts the bearer token from incoming metadata.
func BearerToken(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	for _, v := range md.Get("authorization") {
		scheme, token, ok := strings.Cut(strings.TrimSpace(v), " ")
		if ok && strings.EqualFold(scheme, "bearer") && strings.TrimSpace(token) != "" {
			return strings.TrimSpace(token), true
		}
	}
	return "", false
}

// Require authenticates the caller and checks that it holds one of roles.
func (a *Authenticator) Require(ctx context.Context, roles ...string) (Identity, error) {
	id, err := a.Authenticate(ctx)
	if err != nil {
		return id, err
	}
	for _, r := range roles {
		if id.HasRole(r) {
			return id, nil
		}
	}
	return id, apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole,
		"%s may not do this: it needs role %s", id.SystemID, strings.Join(roles, " or "))
}
