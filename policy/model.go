package policy

import (
	"slices"
	"strings"
	"time"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Reasons a field or a request is withheld. They are stable API: never
// rename one. Those shared with other packages equal the apierr reasons.
const (
	ReasonNoGrant             = "NO_GRANT"
	ReasonPurposeNotCovered   = "PURPOSE_NOT_COVERED"
	ReasonFieldNotGranted     = "FIELD_NOT_GRANTED"
	ReasonGrantExpired        = "GRANT_EXPIRED"
	ReasonGrantNotYetValid    = "GRANT_NOT_YET_VALID"
	ReasonOutsideJurisdiction = "OUTSIDE_JURISDICTION"
	ReasonQuotaExceeded       = "QUOTA_EXCEEDED"
	ReasonDatasetNotShared    = "DATASET_NOT_SHARED"
	ReasonUnknownField        = "UNKNOWN_FIELD"
	ReasonUnknownDataset      = "UNKNOWN_DATASET"
)

// UnconditionalBasis is the legal basis reported when fields are allowed by
// the dataset's unconditional sharing class rather than by a grant.
const UnconditionalBasis = "《政务数据共享条例》无条件共享"

// Principal is an authenticated consumer: the calling system, its department
// and region, and the roles its credential carries. Region is carried for
// audit records; the rows a principal sees are set by its grants'
// jurisdictions, not by its own region.
type Principal struct {
	SystemID   string
	Department string
	Region     string
	Roles      []string
}

// String names the principal in messages: "system X", or "department Y"
// when no system id is known.
func (p Principal) String() string {
	if p.SystemID != "" {
		return "system " + p.SystemID
	}
	return "department " + p.Department
}

// Request is one question to the engine: may Principal read Fields of
// Dataset for Purpose at Time. Empty Fields asks for every field the
// principal may read.
type Request struct {
	Principal Principal
	Dataset   string
	Fields    []string
	Purpose   string
	Time      time.Time
	// Wanted, when set, are the fields the caller will be shown: a subset
	// of Fields, which may add fields decided only to check that the
	// caller may select records by them. A decision allowing none of
	// Wanted is of no use to the caller, and DecideWithQuota charges no
	// quota for it.
	Wanted []string
}

// Withheld is a requested field that the decision does not allow, and why.
type Withheld struct {
	Field  string
	Reason string
}

// GrantQuota is the quota of one grant a decision used.
type GrantQuota struct {
	GrantID   string
	PerMinute int
	PerDay    int
}

// Decision is the outcome of Decide when at least one field is allowed.
// The exported fields are the decision-wide view, suitable for audit records
// and responses; FieldsFor and MaskFor give the exact view of one record.
// A Decision shares read-only data with its Snapshot: do not modify its
// slices or maps.
type Decision struct {
	// Dataset is the dataset decided on.
	Dataset string
	// Fields are the allowed fields, in request order (dictionary order
	// when the request named none).
	Fields []string
	// Masks gives the mask of each allowed field that is masked; fields
	// absent from the map are returned as they are.
	Masks map[string]v1.MaskKind
	// Jurisdiction lists the region-code prefixes of the records that may
	// be returned; a record is admitted when its region code starts with
	// any of them. A single "" admits every region.
	Jurisdiction []string
	// GrantIDs are the grants that contributed allowed fields.
	GrantIDs []string
	// LegalBasis lists the legal bases of those grants (and
	// UnconditionalBasis when the dataset's sharing class allowed fields).
	LegalBasis []string
	// Withheld lists the requested fields not allowed, with reasons.
	Withheld []Withheld
	// Quotas are the quotas of the contributing grants that have one.
	Quotas []GrantQuota
	// Unconditional reports that some fields were allowed by the dataset's
	// unconditional sharing class.
	Unconditional bool

	idx    []int // dictionary index of each allowed field, aligned with Fields
	scopes []scope
}

// scope is what one jurisdiction allows: the union of the grants with that
// jurisdiction.
type scope struct {
	prefix string
	fields []int32 // by dictionary index: notAllowed, or the field's v1.MaskKind
}

// notAllowed marks a field a scope does not allow.
const notAllowed int32 = -1

func newScope(prefix string, nf int) scope {
	s := scope{prefix: prefix, fields: make([]int32, nf)}
	for i := range s.fields {
		s.fields[i] = notAllowed
	}
	return s
}

func (s *scope) allows(i int) bool { return s.fields[i] != notAllowed }

func (s *scope) mask(i int) v1.MaskKind { return v1.MaskKind(s.fields[i]) }

// grant allows field i with mask m, keeping the least restrictive mask.
func (s *scope) grant(i int, m v1.MaskKind) {
	if !s.allows(i) || lessRestrictive(m, s.mask(i)) {
		s.fields[i] = int32(m)
	}
}

// Admits reports whether a record whose region field holds regionCode may
// be returned under this decision. A record outside it is withheld with
// reason OUTSIDE_JURISDICTION.
func (d *Decision) Admits(regionCode string) bool {
	for _, p := range d.Jurisdiction {
		if strings.HasPrefix(regionCode, p) {
			return true
		}
	}
	return false
}

// FieldsFor returns the allowed fields of a record whose region field holds
// regionCode: the fields of the grants whose jurisdiction admits it. It is
// nil when the record is not admitted and d.Fields when every jurisdiction
// of the decision admits it.
func (d *Decision) FieldsFor(regionCode string) []string {
	all := true
	for i := range d.scopes {
		if !strings.HasPrefix(regionCode, d.scopes[i].prefix) {
			all = false
			break
		}
	}
	if all {
		return d.Fields
	}
	var out []string
	for j, fi := range d.idx {
		for i := range d.scopes {
			s := &d.scopes[i]
			if s.allows(fi) && strings.HasPrefix(regionCode, s.prefix) {
				out = append(out, d.Fields[j])
				break
			}
		}
	}
	return out
}

// MaskFor returns the mask to apply to field of a record whose region field
// holds regionCode: the least restrictive mask among the grants whose
// jurisdiction admits the record and that give the field. It is
// MASK_KIND_REDACT for a field the record may not show, so a caller that
// forgets FieldsFor still leaks nothing.
func (d *Decision) MaskFor(regionCode, field string) v1.MaskKind {
	for j, f := range d.Fields {
		if f == field {
			return d.maskAt(d.idx[j], regionCode)
		}
	}
	return v1.MaskKind_MASK_KIND_REDACT
}

// AppendMasks appends to dst the mask of each of fields for a record whose
// region field holds regionCode, as MaskFor gives it. Fields in the order
// of d.Fields (as FieldsFor returns them, or any part of that in order)
// are found in one pass.
func (d *Decision) AppendMasks(dst []v1.MaskKind, regionCode string, fields []string) []v1.MaskKind {
	next := 0
	for _, f := range fields {
		j := -1
		for k := next; k < len(d.Fields); k++ {
			if d.Fields[k] == f {
				j = k
				break
			}
		}
		if j < 0 {
			j = slices.Index(d.Fields, f)
		}
		if j < 0 {
			dst = append(dst, v1.MaskKind_MASK_KIND_REDACT)
			continue
		}
		next = j + 1
		dst = append(dst, d.maskAt(d.idx[j], regionCode))
	}
	return dst
}

// maskAt is MaskFor for the field of dictionary index fi.
func (d *Decision) maskAt(fi int, regionCode string) v1.MaskKind {
	best, found := v1.MaskKind_MASK_KIND_REDACT, false
	for i := range d.scopes {
		s := &d.scopes[i]
		if !s.allows(fi) || !strings.HasPrefix(regionCode, s.prefix) {
			continue
		}
		if !found || lessRestrictive(s.mask(fi), best) {
			best, found = s.mask(fi), true
		}
	}
	return best
}

// Withholds reports whether field was requested and withheld, and why.
func (d *Decision) Withholds(field string) (string, bool) {
	i := slices.IndexFunc(d.Withheld, func(w Withheld) bool { return w.Field == field })
	if i < 0 {
		return "", false
	}
	return d.Withheld[i].Reason, true
}

// restrictiveness orders masks: no mask, then the partial masks, then
// redaction.
func restrictiveness(k v1.MaskKind) int {
	switch k {
	case v1.MaskKind_MASK_KIND_UNSPECIFIED:
		return 0
	case v1.MaskKind_MASK_KIND_REDACT:
		return 2
	default:
		return 1
	}
}

// lessRestrictive reports whether a reveals more than b; ties between
// different partial masks go to the lower enum value, so that the choice is
// deterministic.
func lessRestrictive(a, b v1.MaskKind) bool {
	ra, rb := restrictiveness(a), restrictiveness(b)
	if ra != rb {
		return ra < rb
	}
	return a < b
}

// EffectiveState returns the state of g at now: a PROPOSED or ACTIVE grant
// whose valid_until has passed (now >= valid_until) is EXPIRED. Expiry is
// computed at read time and never stored, so it needs no job to run.
func EffectiveState(g *v1.Grant, now time.Time) v1.GrantState {
	st := g.GetState()
	if (st == v1.GrantState_GRANT_STATE_ACTIVE || st == v1.GrantState_GRANT_STATE_PROPOSED) &&
		g.GetValidUntil() != nil && !now.Before(g.GetValidUntil().AsTime()) {
		return v1.GrantState_GRANT_STATE_EXPIRED
	}
	return st
}
