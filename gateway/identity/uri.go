// Package identity issues and reads the X.509 certificates member systems
// use to authenticate to the gateway with mutual TLS.
//
// A client certificate carries the caller's identity in exactly one URI
// subject alternative name in the Tongban trust domain, a SPIFFE ID whose
// path lists, in this order,
//
//	spiffe://tongban.gov/region/{region}/department/{department}/system/{system}[/role/{role}]...[/subject/{subject}]
//
// for example
//
//	spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau
//	spiffe://tongban.gov/region/130100/department/enforcement/system/field-terminals/role/inspector
//
// The identity lives in the path (not in a query string) because SPIFFE IDs
// may carry neither query nor fragment, so that the certificates also work
// with SPIFFE-aware proxies and meshes. The form is canonical: one identity
// has exactly one URI, roles appear in ascending order without repeats, and
// anything else is refused. The certificate's common name and organisation
// are informational only; the gateway reads the URI alone.
package identity

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/schemas/ident"
)

// TrustDomain is the SPIFFE trust domain of Tongban identities.
const TrustDomain = "tongban.gov"

// prefix starts every identity URI.
const prefix = "spiffe://" + TrustDomain + "/"

// Limits on the parts of an identity.
const (
	maxSystemLen     = 64
	maxDepartmentLen = 32
	maxRoleLen       = 32
	maxRoles         = 16
	// MaxURILen bounds the length of an identity URI.
	MaxURILen = 2048
)

// Validate checks that id can be carried in a certificate: a region code of
// six digits, a department and a system id of the allowed characters, roles
// that are distinct and well formed, and a subject (a unified social credit
// code or resident ID) exactly when the identity holds role "subject".
func Validate(id auth.Identity) error {
	var errs []error
	if err := checkRegion(id.Region); err != nil {
		errs = append(errs, fmt.Errorf("region: %w", err))
	}
	if err := checkName(id.Department, maxDepartmentLen, false); err != nil {
		errs = append(errs, fmt.Errorf("department: %w", err))
	}
	if err := checkName(id.SystemID, maxSystemLen, true); err != nil {
		errs = append(errs, fmt.Errorf("system: %w", err))
	}
	if len(id.Roles) > maxRoles {
		errs = append(errs, fmt.Errorf("roles: at most %d", maxRoles))
	}
	seen := map[string]bool{}
	for _, r := range id.Roles {
		if err := checkName(r, maxRoleLen, false); err != nil {
			errs = append(errs, fmt.Errorf("role %q: %w", r, err))
		}
		if seen[r] {
			errs = append(errs, fmt.Errorf("role %q: repeated", r))
		}
		seen[r] = true
	}
	switch {
	case seen[auth.RoleSubject] && id.Subject == "":
		errs = append(errs, errors.New("subject: an identity with role subject must name its subject"))
	case !seen[auth.RoleSubject] && id.Subject != "":
		errs = append(errs, errors.New("subject: only an identity with role subject may name a subject"))
	case id.Subject != "" && ident.Kind(id.Subject) == "":
		errs = append(errs, errors.New("subject: is neither a valid unified social credit code nor a valid resident ID"))
	}
	return errors.Join(errs...)
}

// URI returns the canonical identity URI of id.
func URI(id auth.Identity) (*url.URL, error) {
	if err := Validate(id); err != nil {
		return nil, fmt.Errorf("invalid identity: %w", err)
	}
	u, err := url.Parse(format(id))
	if err != nil {
		// Unreachable: every part was checked to be URI-safe.
		return nil, fmt.Errorf("formatting identity URI: %w", err)
	}
	return u, nil
}

// format writes the canonical URI of a valid identity.
func format(id auth.Identity) string {
	var b strings.Builder
	b.WriteString(prefix)
	b.WriteString("region/" + id.Region)
	b.WriteString("/department/" + id.Department)
	b.WriteString("/system/" + id.SystemID)
	roles := slices.Clone(id.Roles)
	slices.Sort(roles)
	for _, r := range roles {
		b.WriteString("/role/" + r)
	}
	if id.Subject != "" {
		b.WriteString("/subject/" + id.Subject)
	}
	return b.String()
}

// IsTongbanURI reports whether s is in the Tongban trust domain (whether or
// not it is a valid identity).
func IsTongbanURI(s string) bool {
	return strings.HasPrefix(strings.ToLower(s), prefix)
}

// ParseURI parses an identity URI strictly: the canonical form only, with no
// query, fragment, escapes, empty or dot segments, unknown keys, or parts out
// of order.
func ParseURI(s string) (auth.Identity, error) {
	if len(s) > MaxURILen {
		return auth.Identity{}, fmt.Errorf("identity URI is longer than %d bytes", MaxURILen)
	}
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return auth.Identity{}, fmt.Errorf("identity URI %q does not start with %s", clip(s), prefix)
	}
	if strings.ContainsAny(rest, "?#%") {
		return auth.Identity{}, errors.New("identity URI must not carry a query, a fragment or escapes")
	}
	segs := strings.Split(rest, "/")
	if len(segs)%2 != 0 {
		return auth.Identity{}, errors.New("identity URI path must be key/value pairs")
	}
	var id auth.Identity
	// Fixed prefix: region, department, system.
	want := []string{"region", "department", "system"}
	if len(segs) < 2*len(want) {
		return auth.Identity{}, errors.New("identity URI must name region, department and system, in this order")
	}
	for i, key := range want {
		if segs[2*i] != key {
			return auth.Identity{}, fmt.Errorf("identity URI: expected %q at path segment %d, found %q", key, 2*i+1, clip(segs[2*i]))
		}
	}
	id.Region, id.Department, id.SystemID = segs[1], segs[3], segs[5]
	for i := 6; i < len(segs); i += 2 {
		key, val := segs[i], segs[i+1]
		switch {
		case key == "role" && id.Subject == "":
			if n := len(id.Roles); n > 0 && id.Roles[n-1] >= val {
				return auth.Identity{}, errors.New("identity URI: roles must appear once each, in ascending order")
			}
			id.Roles = append(id.Roles, val)
		case key == "subject" && id.Subject == "":
			if val == "" {
				return auth.Identity{}, errors.New("identity URI: empty subject")
			}
			id.Subject = val
		default:
			return auth.Identity{}, fmt.Errorf("identity URI: unexpected %q at path segment %d", clip(key), i+1)
		}
	}
	if err := Validate(id); err != nil {
		return auth.Identity{}, fmt.Errorf("identity URI: %w", err)
	}
	if format(id) != s {
		// Defence in depth: accept only what we would have written.
		return auth.Identity{}, errors.New("identity URI is not in canonical form")
	}
	return id, nil
}

func checkRegion(r string) error {
	if len(r) != 6 {
		return fmt.Errorf("%q is not a six-digit administrative division code", clip(r))
	}
	for i := 0; i < len(r); i++ {
		if r[i] < '0' || r[i] > '9' {
			return fmt.Errorf("%q is not a six-digit administrative division code", clip(r))
		}
	}
	return nil
}

// checkName checks an identifier: 1 to max characters of a-z, 0-9, '-' and
// '_' starting with a letter or digit; with upper, also A-Z and '.'.
func checkName(s string, maxLen int, upper bool) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("longer than %d characters", maxLen)
	}
	allowed := "a-z, 0-9, '-' and '_'"
	if upper {
		allowed = "A-Z, a-z, 0-9, '.', '-' and '_'"
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '-' || c == '_') ||
			upper && (c >= 'A' && c <= 'Z' || i > 0 && c == '.')
		if !ok {
			return fmt.Errorf("%q: use only %s, starting with a letter or digit", clip(s), allowed)
		}
	}
	return nil
}

// clip shortens attacker-supplied text quoted in an error.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
