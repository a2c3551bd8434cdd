// Package workflow is the legal review of grants (法制审核): who may propose,
// review and revoke a data-sharing grant, and the record of every step.
//
// The life of a grant:
//
//	propose (admin) ──► PROPOSED ──review──► ACTIVE ──revoke (admin)──► REVOKED
//	                          │                  │
//	                          └──► REJECTED      └── now >= valid_until ──► EXPIRED
//
// Rules:
//
//   - Only an actor holding the role admin proposes and revokes. A proposal
//     is validated against the dataset dictionary (Validate).
//   - A grant on a normal dataset is reviewed by an admin; a grant on a
//     major dataset only by a legal_reviewer, who must give a written
//     opinion. A rejection always needs an opinion.
//   - Every review, approval or rejection, must come from an actor other
//     than the proposer, on normal datasets too: no one approves their own
//     proposal.
//   - An auditor only reads (Get, List). Nobody can delete a grant: revoked
//     and rejected grants stay listed with their history, so no role can
//     both grant and hide a grant.
//   - Revocation takes effect at once (the change is published to the
//     engines); expiry needs no step: a PROPOSED or ACTIVE grant whose
//     valid_until has passed reads as EXPIRED (policy.EffectiveState).
//   - Every transition is appended to the grant's history (from, to, actor,
//     role, time, opinion) and reported to the TransitionSink before it is
//     stored. If the sink fails, the transition fails (fail closed). If the
//     store then refuses the write (a concurrent review won), the sink has
//     seen a transition that did not take effect; audit readers tell by the
//     grant's history, which never shows it.
//   - Concurrent transitions of one grant are settled by the store's
//     optimistic concurrency: exactly one wins, the others fail with
//     ABORTED (CONFLICT).
package workflow

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Roles of the admin API. They are separated: see the package doc.
const (
	RoleAdmin         = "admin"
	RoleLegalReviewer = "legal_reviewer"
	RoleAuditor       = "auditor"
)

// Actor is the authenticated person acting on a grant.
type Actor struct {
	ID    string
	Roles []string
}

// Has reports whether the actor holds role.
func (a Actor) Has(role string) bool { return slices.Contains(a.Roles, role) }

// Clock returns the current time.
type Clock func() time.Time

// TransitionSink receives every transition before it is stored; the gateway
// connects it to the audit log. An error fails the transition.
type TransitionSink interface {
	RecordTransition(ctx context.Context, g *v1.Grant, t *v1.GrantTransition) error
}

// SinkFunc adapts a function to TransitionSink.
type SinkFunc func(ctx context.Context, g *v1.Grant, t *v1.GrantTransition) error

// RecordTransition implements TransitionSink.
func (f SinkFunc) RecordTransition(ctx context.Context, g *v1.Grant, t *v1.GrantTransition) error {
	return f(ctx, g, t)
}

// Options configures a Workflow. The zero value is usable.
type Options struct {
	// Clock gives the time of transitions and of expiry (time.Now when
	// nil).
	Clock Clock
	// Sink receives every transition; nil records nothing beyond the
	// grant's own history.
	Sink TransitionSink
	// Publisher announces every stored change to the engines; nil
	// announces nothing (engines then learn by polling).
	Publisher policy.Publisher
	// NewID returns the id of a proposed grant ("g-" and 16 random hex
	// digits when nil).
	NewID func() string
	// Logger receives failures to publish (slog.Default when nil).
	Logger *slog.Logger
}

// Workflow applies the grant rules on a store.
type Workflow struct {
	st    store.Store
	dict  *datasets.Dictionary
	clock Clock
	sink  TransitionSink
	pub   policy.Publisher
	newID func() string
	log   *slog.Logger
}

// New returns a Workflow over st, validating grants against dict.
func New(st store.Store, dict *datasets.Dictionary, opts Options) *Workflow {
	w := &Workflow{st: st, dict: dict, clock: opts.Clock, sink: opts.Sink, pub: opts.Publisher, newID: opts.NewID, log: opts.Logger}
	if w.clock == nil {
		w.clock = time.Now
	}
	if w.newID == nil {
		w.newID = randomID
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	return w
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "g-" + hex.EncodeToString(b[:])
}

// Filter selects grants for List. Empty fields match everything; State is
// matched against the effective state (EXPIRED included).
type Filter struct {
	State      v1.GrantState
	Dataset    string
	SystemID   string
	Department string
}

func forbidden(format string, args ...any) *apierr.Error {
	return apierr.Newf(codes.PermissionDenied, apierr.ReasonForbiddenRole, format, args...)
}

func authenticated(a Actor) error {
	if strings.TrimSpace(a.ID) == "" {
		return apierr.New(codes.Unauthenticated, apierr.ReasonUnauthenticated, "the actor is not identified")
	}
	return nil
}

// Propose records a new grant in state PROPOSED and returns it. Only an
// admin proposes; the grant is validated (Validate) and its output-only
// fields (id, state, proposed_by, history, needs_legal_review) are set
// here, whatever the caller sent.
func (w *Workflow) Propose(ctx context.Context, actor Actor, g *v1.Grant) (*v1.Grant, error) {
	if err := authenticated(actor); err != nil {
		return nil, err
	}
	if !actor.Has(RoleAdmin) {
		return nil, forbidden("only an admin may propose grants; %s is not one", actor.ID)
	}
	if g == nil {
		return nil, apierr.Invalid("grant", "is required")
	}
	g = proto.Clone(g).(*v1.Grant)
	g.Id, g.State, g.ProposedBy, g.History, g.NeedsLegalReview = "", 0, "", nil, false
	if err := Validate(w.dict, g); err != nil {
		return nil, err
	}
	ds, _ := w.dict.Dataset(g.Dataset)
	g.Id = w.newID()
	g.State = v1.GrantState_GRANT_STATE_PROPOSED
	g.ProposedBy = actor.ID
	g.NeedsLegalReview = ds.Sensitivity == "major"
	t := &v1.GrantTransition{
		From: v1.GrantState_GRANT_STATE_UNSPECIFIED, To: v1.GrantState_GRANT_STATE_PROPOSED,
		Actor: actor.ID, ActorRole: RoleAdmin, At: timestamppb.New(w.clock()),
	}
	g.History = append(g.History, t)
	if err := w.record(ctx, g, t); err != nil {
		return nil, err
	}
	rec, err := w.st.Create(ctx, g)
	if err != nil {
		return nil, fmt.Errorf("storing proposed grant %s: %w", g.Id, err)
	}
	w.publish(ctx, rec)
	return w.view(rec.Grant), nil
}

// Review approves or rejects a PROPOSED grant. On a normal dataset the
// reviewer is an admin; on a major dataset a legal_reviewer with a written
// opinion. The reviewer is never the proposer, and a rejection always needs
// an opinion.
func (w *Workflow) Review(ctx context.Context, actor Actor, id string, decision v1.ReviewDecision, opinion string) (*v1.Grant, error) {
	if err := authenticated(actor); err != nil {
		return nil, err
	}
	rec, err := w.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	g := rec.Grant
	major := g.GetNeedsLegalReview()
	if ds, ok := w.dict.Dataset(g.GetDataset()); ok && ds.Sensitivity == "major" {
		major = true
	}
	role := RoleAdmin
	if major {
		role = RoleLegalReviewer
	}
	if !actor.Has(role) {
		if major {
			return nil, forbidden("grants on the major dataset %s are reviewed by a %s; %s is not one", g.GetDataset(), RoleLegalReviewer, actor.ID)
		}
		return nil, forbidden("grants on %s are reviewed by an %s; %s is not one", g.GetDataset(), RoleAdmin, actor.ID)
	}
	if actor.ID == g.GetProposedBy() {
		return nil, forbidden("%s proposed grant %s and so cannot review it", actor.ID, id)
	}
	now := w.clock()
	if st := policy.EffectiveState(g, now); st != v1.GrantState_GRANT_STATE_PROPOSED {
		return nil, apierr.Newf(codes.FailedPrecondition, apierr.ReasonFailedPrecondition, "grant %s is %s; only a proposed grant can be reviewed", id, stateName(st))
	}
	var to v1.GrantState
	switch decision {
	case v1.ReviewDecision_REVIEW_DECISION_APPROVE:
		to = v1.GrantState_GRANT_STATE_ACTIVE
		if major && strings.TrimSpace(opinion) == "" {
			return nil, apierr.Invalid("opinion", "a legal reviewer's approval of a grant on the major dataset %s needs a written opinion", g.GetDataset())
		}
	case v1.ReviewDecision_REVIEW_DECISION_REJECT:
		to = v1.GrantState_GRANT_STATE_REJECTED
		if strings.TrimSpace(opinion) == "" {
			return nil, apierr.Invalid("opinion", "a rejection needs a written opinion")
		}
	default:
		return nil, apierr.Invalid("decision", "must be approve or reject")
	}
	return w.transition(ctx, rec, &v1.GrantTransition{
		From: v1.GrantState_GRANT_STATE_PROPOSED, To: to,
		Actor: actor.ID, ActorRole: role, At: timestamppb.New(now), Opinion: opinion,
	})
}

// Revoke ends a PROPOSED or ACTIVE grant at once. Only an admin revokes, and
// the reason is required; it is recorded as the transition's opinion.
func (w *Workflow) Revoke(ctx context.Context, actor Actor, id, reason string) (*v1.Grant, error) {
	if err := authenticated(actor); err != nil {
		return nil, err
	}
	if !actor.Has(RoleAdmin) {
		return nil, forbidden("only an admin may revoke grants; %s is not one", actor.ID)
	}
	if strings.TrimSpace(reason) == "" {
		return nil, apierr.Invalid("reason", "a revocation needs a reason")
	}
	rec, err := w.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	now := w.clock()
	st := policy.EffectiveState(rec.Grant, now)
	if st != v1.GrantState_GRANT_STATE_ACTIVE && st != v1.GrantState_GRANT_STATE_PROPOSED {
		return nil, apierr.Newf(codes.FailedPrecondition, apierr.ReasonFailedPrecondition, "grant %s is %s; only a proposed or active grant can be revoked", id, stateName(st))
	}
	return w.transition(ctx, rec, &v1.GrantTransition{
		From: st, To: v1.GrantState_GRANT_STATE_REVOKED,
		Actor: actor.ID, ActorRole: RoleAdmin, At: timestamppb.New(now), Opinion: reason,
	})
}

func (w *Workflow) transition(ctx context.Context, rec store.Record, t *v1.GrantTransition) (*v1.Grant, error) {
	g := proto.Clone(rec.Grant).(*v1.Grant)
	g.State = t.To
	g.History = append(g.History, t)
	if err := w.record(ctx, g, t); err != nil {
		return nil, err
	}
	out, err := w.st.Update(ctx, g, rec.Version)
	if err != nil {
		return nil, err
	}
	w.publish(ctx, out)
	return w.view(out.Grant), nil
}

func (w *Workflow) record(ctx context.Context, g *v1.Grant, t *v1.GrantTransition) error {
	if w.sink == nil {
		return nil
	}
	if err := w.sink.RecordTransition(ctx, proto.Clone(g).(*v1.Grant), proto.Clone(t).(*v1.GrantTransition)); err != nil {
		return apierr.Newf(codes.Unavailable, apierr.ReasonAuditUnavailable, "grant %s: the transition to %s could not be recorded, so it was not made", g.GetId(), stateName(t.To)).WithCause(err)
	}
	return nil
}

func (w *Workflow) publish(ctx context.Context, rec store.Record) {
	if w.pub == nil {
		return
	}
	if err := w.pub.Publish(ctx, policy.Change{GrantID: rec.Grant.GetId(), Revision: rec.Revision}); err != nil {
		w.log.Error("publishing a grant change failed; engines will see it at their next poll", "grant_id", rec.Grant.GetId(), "revision", rec.Revision, "err", err)
	}
}

// view returns g as readers see it: with its effective state.
func (w *Workflow) view(g *v1.Grant) *v1.Grant {
	g.State = policy.EffectiveState(g, w.clock())
	return g
}

func stateName(s v1.GrantState) string {
	return strings.TrimPrefix(s.String(), "GRANT_STATE_")
}

// Get returns the grant with the given id, with its effective state.
func (w *Workflow) Get(ctx context.Context, id string) (*v1.Grant, error) {
	rec, err := w.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return w.view(rec.Grant), nil
}

// List returns the grants matching f, ordered by id, with their effective
// states. Revoked, rejected and expired grants are listed too.
func (w *Workflow) List(ctx context.Context, f Filter) ([]*v1.Grant, error) {
	sf := store.Filter{Dataset: f.Dataset, SystemID: f.SystemID, Department: f.Department}
	switch f.State {
	case v1.GrantState_GRANT_STATE_REJECTED, v1.GrantState_GRANT_STATE_REVOKED:
		sf.State = f.State // never computed
	}
	recs, err := w.st.List(ctx, sf)
	if err != nil {
		return nil, err
	}
	out := make([]*v1.Grant, 0, len(recs))
	for _, r := range recs {
		g := w.view(r.Grant)
		if f.State != v1.GrantState_GRANT_STATE_UNSPECIFIED && g.State != f.State {
			continue
		}
		out = append(out, g)
	}
	return out, nil
}

// Import stores grants that were decided elsewhere, such as policy.DemoGrants
// or an export from another gateway, keeping their ids, states and
// histories. Each is validated, and its history must follow the workflow's
// rules (see checkHistory): an imported grant is active only if someone other
// than its proposer approved it in the required role, with an opinion where
// one is required. Grants whose id is already stored are left
// as they are. Every transition in an imported grant's history is reported
// to the sink. It returns how many grants it created.
func (w *Workflow) Import(ctx context.Context, grants []*v1.Grant) (int, error) {
	created := 0
	for i, g := range grants {
		if err := Validate(w.dict, g); err != nil {
			return created, fmt.Errorf("importing grants[%d] (%s): %w", i, g.GetId(), err)
		}
		if g.GetId() == "" || len(g.GetHistory()) == 0 || g.GetState() == v1.GrantState_GRANT_STATE_UNSPECIFIED {
			return created, apierr.Invalid(fmt.Sprintf("grants[%d]", i), "an imported grant needs an id, a state and its history")
		}
		if err := checkHistory(w.dict, g); err != nil {
			return created, fmt.Errorf("importing grants[%d] (%s): %w", i, g.GetId(), err)
		}
		if _, err := w.st.Get(ctx, g.GetId()); err == nil {
			continue
		} else if apierr.CodeOf(err) != codes.NotFound {
			return created, fmt.Errorf("importing grant %s: %w", g.GetId(), err)
		}
		for _, t := range g.GetHistory() {
			if err := w.record(ctx, g, t); err != nil {
				return created, err
			}
		}
		rec, err := w.st.Create(ctx, g)
		if apierr.CodeOf(err) == codes.AlreadyExists {
			continue
		}
		if err != nil {
			return created, fmt.Errorf("importing grant %s: %w", g.GetId(), err)
		}
		created++
		w.publish(ctx, rec)
	}
	return created, nil
}
