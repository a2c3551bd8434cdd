package workflow

import (
	"fmt"
	"strings"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Validate checks a grant against the dataset dictionary and returns the
// first problem as an INVALID_ARGUMENT *apierr.Error naming the field, for
// example `grant.fields[2]: "foo" is not a field of market.enterprises`.
// Output-only fields (id, state, history) are not checked.
func Validate(dict *datasets.Dictionary, g *v1.Grant) error {
	if g == nil {
		return apierr.Invalid("grant", "is required")
	}
	c := g.GetConsumer()
	switch {
	case c.GetSystemId() == "" && c.GetDepartment() == "":
		return apierr.Invalid("grant.consumer", "names neither a system nor a department")
	case c.GetSystemId() != "" && c.GetRole() != "":
		return apierr.Invalid("grant.consumer.role", "only a department consumer has a role; a system consumer is matched by its system id alone")
	}
	ds, ok := dict.Dataset(g.GetDataset())
	if !ok {
		e := apierr.Invalid("grant.dataset", "unknown dataset %q", g.GetDataset())
		e.Reason = apierr.ReasonUnknownDataset
		return e
	}
	if ds.Sharing == "not_shared" {
		e := apierr.Invalid("grant.dataset", "%s is not shared outside its department", ds.Name)
		e.Reason = apierr.ReasonNotShared
		return e
	}
	if len(g.GetFields()) == 0 {
		return apierr.Invalid("grant.fields", "at least one field is required")
	}
	granted := map[string]bool{}
	for i, f := range g.GetFields() {
		path := fmt.Sprintf("grant.fields[%d]", i)
		if !ds.HasField(f) {
			e := apierr.Invalid(path, "%q is not a field of %s", f, ds.Name)
			e.Reason = apierr.ReasonUnknownField
			return e
		}
		if granted[f] {
			return apierr.Invalid(path, "%q is listed twice", f)
		}
		granted[f] = true
	}
	masked := map[string]bool{}
	for i, m := range g.GetMasks() {
		path := fmt.Sprintf("grant.masks[%d]", i)
		if !granted[m.GetField()] {
			return apierr.Invalid(path+".field", "%q is not a granted field", m.GetField())
		}
		if masked[m.GetField()] {
			return apierr.Invalid(path+".field", "%q is masked twice", m.GetField())
		}
		masked[m.GetField()] = true
		if _, known := v1.MaskKind_name[int32(m.GetMask())]; !known || m.GetMask() == v1.MaskKind_MASK_KIND_UNSPECIFIED {
			return apierr.Invalid(path+".mask", "a mask kind is required")
		}
	}
	if len(g.GetPurposes()) == 0 {
		return apierr.Invalid("grant.purposes", "at least one purpose is required")
	}
	purposes := map[string]bool{}
	for i, p := range g.GetPurposes() {
		path := fmt.Sprintf("grant.purposes[%d]", i)
		if strings.TrimSpace(p) == "" {
			return apierr.Invalid(path, "is empty")
		}
		if purposes[p] {
			return apierr.Invalid(path, "%q is listed twice", p)
		}
		purposes[p] = true
	}
	if strings.TrimSpace(g.GetLegalBasis()) == "" {
		return apierr.Invalid("grant.legal_basis", "the law or regulation and article is required")
	}
	if j := g.GetJurisdiction(); j != "" && !isRegionPrefix(j) {
		return apierr.Invalid("grant.jurisdiction", "%q is not a region-code prefix of 2 to 6 digits", j)
	}
	if g.GetValidFrom() != nil {
		if err := g.GetValidFrom().CheckValid(); err != nil {
			return apierr.Invalid("grant.valid_from", "%v", err)
		}
	}
	if g.GetValidUntil() != nil {
		if err := g.GetValidUntil().CheckValid(); err != nil {
			return apierr.Invalid("grant.valid_until", "%v", err)
		}
		if g.GetValidFrom() != nil && !g.GetValidUntil().AsTime().After(g.GetValidFrom().AsTime()) {
			return apierr.Invalid("grant.valid_until", "must be after valid_from")
		}
	}
	if g.GetQuota().GetPerMinute() < 0 {
		return apierr.Invalid("grant.quota.per_minute", "must not be negative")
	}
	if g.GetQuota().GetPerDay() < 0 {
		return apierr.Invalid("grant.quota.per_day", "must not be negative")
	}
	return nil
}

func isRegionPrefix(s string) bool {
	if len(s) < 2 || len(s) > 6 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// checkHistory checks that an imported grant's history follows the rules a
// grant made here follows, so that Import cannot store an active grant that
// no one (or only its proposer) approved, or a rejected grant as active:
// it starts with the proposal by ProposedBy, each transition starts where
// the previous one ended and is one the workflow makes, with the role and
// opinion it requires, and the last one ends in the grant's state.
func checkHistory(dict *datasets.Dictionary, g *v1.Grant) error {
	h := g.GetHistory()
	if len(h) == 0 || g.GetProposedBy() == "" {
		return apierr.Invalid("grant.history", "an imported grant needs its proposer and history")
	}
	ds, _ := dict.Dataset(g.GetDataset())
	major := ds.Sensitivity == "major" || g.GetNeedsLegalReview()
	prev := v1.GrantState_GRANT_STATE_UNSPECIFIED
	for i, t := range h {
		path := fmt.Sprintf("grant.history[%d]", i)
		if t.GetFrom() != prev {
			return apierr.Invalid(path, "starts in %s, but the grant was %s", stateName(t.GetFrom()), stateName(prev))
		}
		opinion := strings.TrimSpace(t.GetOpinion()) != ""
		switch from, to := t.GetFrom(), t.GetTo(); {
		case from == v1.GrantState_GRANT_STATE_UNSPECIFIED && to == v1.GrantState_GRANT_STATE_PROPOSED:
			if t.GetActor() != g.GetProposedBy() || t.GetActorRole() != RoleAdmin {
				return apierr.Invalid(path, "the proposal must be made by the proposer %q as %s", g.GetProposedBy(), RoleAdmin)
			}
		case from == v1.GrantState_GRANT_STATE_PROPOSED && (to == v1.GrantState_GRANT_STATE_ACTIVE || to == v1.GrantState_GRANT_STATE_REJECTED):
			role := RoleAdmin
			if major {
				role = RoleLegalReviewer
			}
			switch {
			case t.GetActor() == "" || t.GetActor() == g.GetProposedBy():
				return apierr.Invalid(path, "the review must be made by someone other than the proposer")
			case t.GetActorRole() != role:
				return apierr.Invalid(path, "grants on %s are reviewed by a %s, not a %s", g.GetDataset(), role, t.GetActorRole())
			case !opinion && (major || to == v1.GrantState_GRANT_STATE_REJECTED):
				return apierr.Invalid(path, "the review needs a written opinion")
			}
		case (from == v1.GrantState_GRANT_STATE_PROPOSED || from == v1.GrantState_GRANT_STATE_ACTIVE) && to == v1.GrantState_GRANT_STATE_REVOKED:
			if t.GetActor() == "" || t.GetActorRole() != RoleAdmin || !opinion {
				return apierr.Invalid(path, "a revocation is made by an %s with a reason", RoleAdmin)
			}
		default:
			return apierr.Invalid(path, "%s to %s is not a transition of the grant workflow", stateName(from), stateName(to))
		}
		prev = t.GetTo()
	}
	if prev != g.GetState() {
		return apierr.Invalid("grant.state", "is %s, but the history ends in %s", stateName(g.GetState()), stateName(prev))
	}
	return nil
}
