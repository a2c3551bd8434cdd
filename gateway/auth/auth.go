// Package auth authenticates callers. Member systems present a client
// certificate (mutual TLS) whose identity URI names them, or a bearer token;
// tokens are kept only as SHA-256 digests. The same code serves gRPC and
// REST: for gRPC the verified certificate comes from the connection's peer,
// for REST the server's middleware puts it into the request context with
// WithVerifiedCert, and grpc-gateway forwards the Authorization header as
// incoming metadata; services call Authenticate with their request context.
//
// When a request carries both a verified client certificate and a bearer
// token, the certificate wins and the token is ignored.
package auth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"slices"
	"strings"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

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

// Authenticator maps verified client certificates and bearer tokens to
// identities.
type Authenticator struct {
	limits   *callerLimits
	byDigest map[[sha256.Size]byte]tokenIdentity
	certs    CertParser
}

// tokenIdentity is the identity of a token, with its caller's rate limiter
// (nil without rate limits) looked up once in New.
type tokenIdentity struct {
	id  Identity
	lim *rate.Limiter
}

// CertParser reads the identity a verified client certificate carries
// (gateway/identity.ParseIdentity).
type CertParser func(cert *x509.Certificate) (Identity, error)

// Option configures an Authenticator.
type Option func(*Authenticator)

// WithRateLimit limits every caller (by system id) to rps requests per
// second with the given burst, across all methods; 0 rps means no limit.
// Grants carry their own quotas; this limit protects the gateway itself.
func WithRateLimit(rps float64, burst int) Option {
	return func(a *Authenticator) {
		if rps > 0 {
			a.limits = &callerLimits{rps: rps, burst: max(burst, 1), byID: map[string]*rate.Limiter{}}
		}
	}
}

// callerLimits holds one token bucket per caller.
type callerLimits struct {
	rps   float64
	burst int
	mu    sync.Mutex
	byID  map[string]*rate.Limiter
}

func (l *callerLimits) allow(id string) bool {
	return l.limiter(id).Allow()
}

// limiter returns the token bucket of caller id, making it on first use.
func (l *callerLimits) limiter(id string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byID[id]
	if !ok {
		lim = rate.NewLimiter(rate.Limit(l.rps), l.burst)
		l.byID[id] = lim
	}
	return lim
}

// WithCertificates makes the authenticator accept verified client
// certificates, reading their identity with parse. Without it, certificates
// are ignored and every caller needs a bearer token.
func WithCertificates(parse CertParser) Option {
	return func(a *Authenticator) { a.certs = parse }
}

// Entry is one identity with the hex SHA-256 digest of its token.
type Entry struct {
	TokenSHA256 string
	Identity    Identity
}

// New returns an authenticator for the given token identities. An entry
// whose TokenSHA256 is not 64 hex digits matches no token.
func New(entries []Entry, opts ...Option) *Authenticator {
	a := &Authenticator{byDigest: make(map[[sha256.Size]byte]tokenIdentity, len(entries))}
	for _, o := range opts {
		o(a)
	}
	for _, e := range entries {
		var d [sha256.Size]byte
		if n, err := hex.Decode(d[:], []byte(e.TokenSHA256)); err != nil || n != len(d) {
			continue
		}
		ti := tokenIdentity{id: e.Identity}
		if a.limits != nil {
			ti.lim = a.limits.limiter(e.Identity.SystemID)
		}
		a.byDigest[d] = ti
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

// Authenticate returns the caller's identity from the request context: from
// its verified client certificate when there is one (and the authenticator
// accepts certificates), otherwise from its bearer token. A verified
// certificate that carries no valid identity is refused; the request does
// not fall back to the token.
func (a *Authenticator) Authenticate(ctx context.Context) (Identity, error) {
	id, lim, err := a.identify(ctx)
	if err != nil {
		return id, err
	}
	if a.limits == nil {
		return id, nil
	}
	if lim == nil {
		lim = a.limits.limiter(id.SystemID)
	}
	if !lim.Allow() {
		return id, apierr.Newf(codes.ResourceExhausted, apierr.ReasonRateLimited,
			"%s sends more than %g requests per second (burst %d): slow down", id.SystemID, a.limits.rps, a.limits.burst).
			With("system_id", id.SystemID)
	}
	return id, nil
}

// identify returns the caller's identity and, for a token, its rate
// limiter when there are rate limits.
func (a *Authenticator) identify(ctx context.Context) (Identity, *rate.Limiter, error) {
	if a.certs != nil {
		if cert := VerifiedCert(ctx); cert != nil {
			id, err := a.certs(cert)
			if err != nil {
				return Identity{}, nil, apierr.Newf(codes.Unauthenticated, apierr.ReasonUnauthenticated,
					"the client certificate carries no valid Tongban identity: %v", err).WithCause(err)
			}
			return id, nil, nil
		}
	}
	token, ok := BearerToken(ctx)
	if !ok {
		return Identity{}, nil, errNoToken
	}
	// Tokens are looked up by their SHA-256 digest, never compared as
	// they are: how long a lookup takes tells nothing about the tokens.
	ti, ok := a.byDigest[tokenDigest(token)]
	if !ok {
		return Identity{}, nil, errBadToken
	}
	return ti.id, ti.lim, nil
}

// tokenDigest returns SHA-256 of token, without allocating for tokens of
// ordinary length.
func tokenDigest(token string) [sha256.Size]byte {
	var buf [256]byte
	if len(token) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], token)])
	}
	return sha256.Sum256([]byte(token))
}

type verifiedCertKey struct{}

// WithVerifiedCert returns ctx carrying the leaf of a client certificate
// chain that the TLS handshake verified. Only the REST server's middleware
// calls it, with http.Request.TLS.VerifiedChains[0][0]; nothing a client
// sends in headers or metadata can set this value.
func WithVerifiedCert(ctx context.Context, cert *x509.Certificate) context.Context {
	return context.WithValue(ctx, verifiedCertKey{}, cert)
}

// VerifiedCert returns the verified client certificate of the request: the
// one WithVerifiedCert attached (REST), or the leaf of the first verified
// chain of the gRPC peer's TLS connection. It returns nil when the caller
// presented no certificate or the connection is not TLS.
func VerifiedCert(ctx context.Context) *x509.Certificate {
	if c, ok := ctx.Value(verifiedCertKey{}).(*x509.Certificate); ok && c != nil {
		return c
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return ti.State.VerifiedChains[0][0]
}

// authorizationKey is the context key of WithAuthorization.
type authorizationKey struct{}

// WithAuthorization returns ctx carrying the values of a request's
// Authorization header, for a front end that calls the services in process
// (the REST query route) rather than through gRPC metadata. BearerToken
// reads them instead of the incoming metadata.
func WithAuthorization(ctx context.Context, values []string) context.Context {
	return context.WithValue(ctx, authorizationKey{}, values)
}

// Authorization returns the caller's Authorization values: those given with
// WithAuthorization, or else the incoming "authorization" metadata.
func Authorization(ctx context.Context) []string {
	if values, given := ctx.Value(authorizationKey{}).([]string); given {
		return values
	}
	// Only this key is read: FromIncomingContext would copy all of them.
	return metadata.ValueFromIncomingContext(ctx, "authorization")
}

// BearerToken extracts the bearer token from the caller's Authorization
// values (Authorization).
func BearerToken(ctx context.Context) (string, bool) {
	for _, v := range Authorization(ctx) {
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
