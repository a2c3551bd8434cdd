package policy

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Snapshot is an immutable, indexed form of the dataset dictionary and the
// grants in force, prepared once and evaluated many times. It is safe for
// concurrent use.
type Snapshot struct {
	dict     *datasets.Dictionary
	datasets map[string]*dsEntry
	revision int64
	grants   int
	skipped  []SkippedGrant
	// kept holds recent decisions (see decisions).
	kept *decisions
}

// SkippedGrant is a grant that Prepare could not compile, for example one
// naming a dataset or field no longer in the dictionary. It allows nothing.
type SkippedGrant struct {
	GrantID string
	Err     error
}

type dsEntry struct {
	name     string
	sharing  string
	names    []string
	index    map[string]int
	personal []bool
	all      []int
	bySystem map[string][]*compiled
	byDept   map[string][]*compiled
}

type compiled struct {
	id           string
	role         string
	fields       []bool        // by dictionary index
	masks        []v1.MaskKind // by dictionary index
	purposes     []string
	legalBasis   string
	jurisdiction string
	from, until  int64 // Unix nanoseconds; open bounds are MinInt64 / MaxInt64
	quota        GrantQuota
}

// Prepare compiles the dictionary and grants into a Snapshot. Only grants in
// state ACTIVE (or EXPIRED, so that expiry can be reported as the reason) are
// compiled; their validity windows are checked at decision time. A grant
// that does not fit the dictionary is skipped (it allows nothing) and listed
// by Skipped. Revision is the store revision the grants were read at.
func Prepare(dict *datasets.Dictionary, grants []*v1.Grant, revision int64) *Snapshot {
	s := &Snapshot{dict: dict, datasets: make(map[string]*dsEntry, len(dict.Datasets)), revision: revision, kept: newDecisions()}
	for _, ds := range dict.Datasets {
		e := &dsEntry{
			name:     ds.Name,
			sharing:  ds.Sharing,
			names:    ds.FieldNames(),
			index:    make(map[string]int, len(ds.Fields)),
			personal: make([]bool, len(ds.Fields)),
			all:      make([]int, len(ds.Fields)),
			bySystem: map[string][]*compiled{},
			byDept:   map[string][]*compiled{},
		}
		for i, f := range ds.Fields {
			e.index[f.Name] = i
			e.personal[i] = f.Class == "personal"
			e.all[i] = i
		}
		s.datasets[ds.Name] = e
	}
	for _, g := range grants {
		st := g.GetState()
		if st != v1.GrantState_GRANT_STATE_ACTIVE && st != v1.GrantState_GRANT_STATE_EXPIRED {
			continue
		}
		c, e, err := s.compile(g)
		if err != nil {
			s.skipped = append(s.skipped, SkippedGrant{GrantID: g.GetId(), Err: err})
			continue
		}
		if sys := g.GetConsumer().GetSystemId(); sys != "" {
			e.bySystem[sys] = append(e.bySystem[sys], c)
		} else {
			dep := g.GetConsumer().GetDepartment()
			e.byDept[dep] = append(e.byDept[dep], c)
		}
		s.grants++
	}
	return s
}

func (s *Snapshot) compile(g *v1.Grant) (*compiled, *dsEntry, error) {
	e, ok := s.datasets[g.GetDataset()]
	if !ok {
		return nil, nil, fmt.Errorf("grant %s: unknown dataset %q", g.GetId(), g.GetDataset())
	}
	if g.GetConsumer().GetSystemId() == "" && g.GetConsumer().GetDepartment() == "" {
		return nil, nil, fmt.Errorf("grant %s: consumer names neither a system nor a department", g.GetId())
	}
	c := &compiled{
		id:           g.GetId(),
		role:         g.GetConsumer().GetRole(),
		fields:       make([]bool, len(e.names)),
		masks:        make([]v1.MaskKind, len(e.names)),
		purposes:     slices.Clone(g.GetPurposes()),
		legalBasis:   g.GetLegalBasis(),
		jurisdiction: g.GetJurisdiction(),
		from:         math.MinInt64,
		until:        math.MaxInt64,
		quota:        GrantQuota{GrantID: g.GetId(), PerMinute: int(g.GetQuota().GetPerMinute()), PerDay: int(g.GetQuota().GetPerDay())},
	}
	if g.GetValidFrom() != nil {
		c.from = g.GetValidFrom().AsTime().UnixNano()
	}
	if g.GetValidUntil() != nil {
		c.until = g.GetValidUntil().AsTime().UnixNano()
	}
	for _, f := range g.GetFields() {
		i, ok := e.index[f]
		if !ok {
			return nil, nil, fmt.Errorf("grant %s: %q is not a field of %s", g.GetId(), f, e.name)
		}
		c.fields[i] = true
	}
	for _, m := range g.GetMasks() {
		i, ok := e.index[m.GetField()]
		if !ok {
			return nil, nil, fmt.Errorf("grant %s: mask on %q, which is not a field of %s", g.GetId(), m.GetField(), e.name)
		}
		c.masks[i] = m.GetMask()
	}
	return c, e, nil
}

// Revision returns the store revision the snapshot was prepared from.
func (s *Snapshot) Revision() int64 { return s.revision }

// Grants returns how many grants the snapshot compiled.
func (s *Snapshot) Grants() int { return s.grants }

// Skipped returns the grants Prepare could not compile.
func (s *Snapshot) Skipped() []SkippedGrant { return slices.Clone(s.skipped) }

// Dictionary returns the dataset dictionary the snapshot was prepared from.
func (s *Snapshot) Dictionary() *datasets.Dictionary { return s.dict }

// Reason ranks: a higher rank is a more specific story.
const (
	rankNone uint8 = iota
	rankNoGrant
	rankFieldNotGranted
	rankPurposeNotCovered
	rankNotYetValid
	rankExpired
)

var rankReason = [...]string{
	rankNone:              ReasonNoGrant,
	rankNoGrant:           ReasonNoGrant,
	rankFieldNotGranted:   ReasonFieldNotGranted,
	rankPurposeNotCovered: ReasonPurposeNotCovered,
	rankNotYetValid:       ReasonGrantNotYetValid,
	rankExpired:           ReasonGrantExpired,
}

// ReasonRank tells how specific a story a reason a field is withheld for
// (Withheld.Reason) tells: the higher, the more specific. A request Decide
// denies gets the reason of highest rank among the fields it withholds:
// GRANT_EXPIRED, then GRANT_NOT_YET_VALID, PURPOSE_NOT_COVERED,
// FIELD_NOT_GRANTED and NO_GRANT (rank 1). Any other reason ranks 0, below
// them all. Callers that deny for Decide's reasons use it to pick the same
// reason Decide would.
func ReasonRank(reason string) int {
	for r := rankExpired; r >= rankNoGrant; r-- {
		if rankReason[r] == reason {
			return int(r)
		}
	}
	return 0
}

var rankStory = [...]string{
	rankNone:              "",
	rankNoGrant:           "",
	rankFieldNotGranted:   " (the grants for this purpose do not include them)",
	rankPurposeNotCovered: " (they are granted only for other purposes)",
	rankNotYetValid:       " (the grant covering them is not yet valid)",
	rankExpired:           " (the grant covering them has expired)",
}

// Decide answers a request. It is pure: the answer depends only on the
// snapshot and the request, including req.Time. Errors are *apierr.Error:
// NotFound (UNKNOWN_DATASET), InvalidArgument (UNKNOWN_FIELD, or a missing
// purpose or time), Unauthenticated (no principal), PermissionDenied
// (DATASET_NOT_SHARED, or no requested field allowed, with the most
// specific reason). The slices and map of a Decision may be shared with
// other decisions of the snapshot: they are read-only.
func (s *Snapshot) Decide(req Request) (Decision, error) {
	if !req.Time.IsZero() {
		if d, ok := s.kept.get(&req); ok {
			return d, nil
		}
	}
	d, from, until, err := s.decide(req)
	if err == nil {
		s.kept.put(&req, d, from, until)
	}
	return d, err
}

// decide is Decide without the kept decisions. It also returns the window
// of request times [from, until) over which the same request gets the same
// decision.
func (s *Snapshot) decide(req Request) (_ Decision, from, until int64, _ error) {
	from, until = openWindow()
	e, ok := s.datasets[req.Dataset]
	if !ok {
		return Decision{}, 0, 0, apierr.Newf(codes.NotFound, ReasonUnknownDataset, "unknown dataset %q", req.Dataset).With("dataset", req.Dataset)
	}
	p := req.Principal
	if p.SystemID == "" && p.Department == "" {
		return Decision{}, 0, 0, apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "the request names no authenticated consumer")
	}
	idx := e.all
	if len(req.Fields) > 0 {
		idx = make([]int, 0, len(req.Fields))
		for k, f := range req.Fields {
			i, ok := e.index[f]
			if !ok {
				field := fmt.Sprintf("fields[%d]", k)
				return Decision{}, 0, 0, apierr.Newf(codes.InvalidArgument, ReasonUnknownField, "%s: %q is not a field of %s", field, f, e.name).With("field", f)
			}
			if !slices.Contains(idx, i) {
				idx = append(idx, i)
			}
		}
	}
	if e.sharing == "not_shared" {
		return Decision{}, 0, 0, apierr.Newf(codes.PermissionDenied, ReasonDatasetNotShared, "dataset %s is not shared outside its department", e.name).With("dataset", e.name)
	}
	if req.Purpose == "" {
		return Decision{}, 0, 0, apierr.Invalid("purpose", "a purpose is required")
	}
	if req.Time.IsZero() {
		return Decision{}, 0, 0, apierr.Invalid("time", "the decision time is required")
	}
	now := req.Time.UnixNano()
	nf := len(e.names)

	var rankBuf [32]uint8
	var rank []uint8
	if nf <= len(rankBuf) {
		rank = rankBuf[:nf]
	} else {
		rank = make([]uint8, nf)
	}
	d := Decision{Dataset: e.name}

	if e.sharing == "unconditional" {
		sc := newScope("", nf)
		for _, i := range idx {
			if !e.personal[i] {
				sc.grant(i, v1.MaskKind_MASK_KIND_UNSPECIFIED)
				d.Unconditional = true
			}
		}
		if d.Unconditional {
			d.scopes = append(d.scopes, sc)
			d.LegalBasis = append(d.LegalBasis, UnconditionalBasis)
		}
	}

	consider := func(g *compiled) {
		if g.role != "" && !slices.Contains(p.Roles, g.role) {
			return
		}
		window(&from, &until, now, g.from, g.until)
		purposeOK := slices.Contains(g.purposes, req.Purpose)
		var timeRank uint8
		switch {
		case now < g.from:
			timeRank = rankNotYetValid
		case now >= g.until:
			timeRank = rankExpired
		}
		active := purposeOK && timeRank == rankNone
		contributes := false
		for _, i := range idx {
			var r uint8
			switch has := g.fields[i]; {
			case active && has:
				contributes = true
				continue
			case active:
				r = rankFieldNotGranted
			case has && !purposeOK:
				r = rankPurposeNotCovered
			case has:
				r = timeRank
			default:
				r = rankNoGrant
			}
			if r > rank[i] {
				rank[i] = r
			}
		}
		if !contributes {
			return
		}
		var sc *scope
		for k := range d.scopes {
			if d.scopes[k].prefix == g.jurisdiction {
				sc = &d.scopes[k]
				break
			}
		}
		if sc == nil {
			d.scopes = append(d.scopes, newScope(g.jurisdiction, nf))
			sc = &d.scopes[len(d.scopes)-1]
		}
		for _, i := range idx {
			if !g.fields[i] {
				continue
			}
			sc.grant(i, g.masks[i])
		}
		d.GrantIDs = append(d.GrantIDs, g.id)
		if g.legalBasis != "" && !slices.Contains(d.LegalBasis, g.legalBasis) {
			d.LegalBasis = append(d.LegalBasis, g.legalBasis)
		}
		if g.quota.PerMinute > 0 || g.quota.PerDay > 0 {
			d.Quotas = append(d.Quotas, g.quota)
		}
	}
	if p.SystemID != "" {
		for _, g := range e.bySystem[p.SystemID] {
			consider(g)
		}
	}
	if p.Department != "" {
		for _, g := range e.byDept[p.Department] {
			consider(g)
		}
	}

	var worst uint8
	var missing []string
	d.Fields = make([]string, 0, len(idx))
	d.idx = make([]int, 0, len(idx))
	for _, i := range idx {
		allowed, mask := false, v1.MaskKind_MASK_KIND_UNSPECIFIED
		for k := range d.scopes {
			sc := &d.scopes[k]
			if !sc.allows(i) {
				continue
			}
			if !allowed || lessRestrictive(sc.mask(i), mask) {
				mask = sc.mask(i)
			}
			allowed = true
		}
		if allowed {
			d.Fields = append(d.Fields, e.names[i])
			d.idx = append(d.idx, i)
			if mask != v1.MaskKind_MASK_KIND_UNSPECIFIED {
				if d.Masks == nil {
					d.Masks = make(map[string]v1.MaskKind, 4)
				}
				d.Masks[e.names[i]] = mask
			}
			continue
		}
		r := max(rank[i], rankNoGrant)
		worst = max(worst, r)
		if len(req.Fields) > 0 {
			d.Withheld = append(d.Withheld, Withheld{Field: e.names[i], Reason: rankReason[r]})
			missing = append(missing, e.names[i])
		}
	}
	if len(d.Fields) == 0 {
		return Decision{}, 0, 0, denial(p, e.name, req.Purpose, missing, worst)
	}
	d.Jurisdiction = jurisdictions(d.scopes)
	return d, from, until, nil
}

func denial(p Principal, dataset, purpose string, missing []string, r uint8) *apierr.Error {
	what := dataset
	if len(missing) > 0 {
		what = fmt.Sprintf("%s fields [%s]", dataset, strings.Join(missing, " "))
	}
	return apierr.Newf(codes.PermissionDenied, rankReason[r], "no active grant lets %s read %s for purpose %q%s", p, what, purpose, rankStory[r]).
		With("dataset", dataset).With("purpose", purpose)
}

// jurisdictions returns the minimal set of prefixes admitting what the
// scopes admit.
func jurisdictions(scopes []scope) []string {
	if len(scopes) == 1 {
		return []string{scopes[0].prefix}
	}
	ps := make([]string, 0, len(scopes))
	for _, s := range scopes {
		ps = append(ps, s.prefix)
	}
	sort.Slice(ps, func(i, j int) bool { return len(ps[i]) < len(ps[j]) || len(ps[i]) == len(ps[j]) && ps[i] < ps[j] })
	out := ps[:0]
	for _, p := range ps {
		covered := false
		for _, q := range out {
			if strings.HasPrefix(p, q) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	return out
}
