package workflow

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/store"
	"github.com/tongban/tongban/policy/store/sqlstore"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var t0 = time.Date(2026, 11, 21, 9, 0, 0, 0, time.UTC)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

type sinkLog struct {
	mu    sync.Mutex
	fail  error
	trans []string
}

func (s *sinkLog) RecordTransition(_ context.Context, g *v1.Grant, t *v1.GrantTransition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.trans = append(s.trans, fmt.Sprintf("%s:%s>%s:%s/%s", g.GetId(), stateName(t.GetFrom()), stateName(t.GetTo()), t.GetActor(), t.GetActorRole()))
	return nil
}

func (s *sinkLog) setFail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = err
}

func (s *sinkLog) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.trans...)
}

type fixture struct {
	st    store.Store
	wf    *Workflow
	clock *fakeClock
	sink  *sinkLog
	bus   *policy.LocalBus
	dict  *datasets.Dictionary
	path  string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "grants.db")
	st, err := sqlstore.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st, clock: &fakeClock{now: t0}, sink: &sinkLog{}, bus: policy.NewLocalBus(), dict: datasets.Default(), path: path}
	n := 0
	var mu sync.Mutex
	f.wf = New(st, f.dict, Options{
		Clock: f.clock.Now, Sink: f.sink, Publisher: f.bus,
		NewID: func() string { mu.Lock(); defer mu.Unlock(); n++; return fmt.Sprintf("g-%d", n) },
	})
	return f
}

var (
	admin1   = Actor{ID: "admin-1", Roles: []string{RoleAdmin}}
	admin2   = Actor{ID: "admin-2", Roles: []string{RoleAdmin}}
	legal1   = Actor{ID: "legal-1", Roles: []string{RoleLegalReviewer}}
	legal2   = Actor{ID: "legal-2", Roles: []string{RoleLegalReviewer}}
	auditor  = Actor{ID: "auditor-1", Roles: []string{RoleAuditor}}
	adminLaw = Actor{ID: "admin-1", Roles: []string{RoleAdmin, RoleLegalReviewer}}
)

func licenceGrant() *v1.Grant {
	return &v1.Grant{
		Consumer:     &v1.Consumer{SystemId: "approval-bureau"},
		Dataset:      "market.business_licences",
		Fields:       []string{"credit_code", "name", "legal_representative_id"},
		Masks:        []*v1.FieldMask{{Field: "legal_representative_id", Mask: v1.MaskKind_MASK_KIND_RESIDENT_ID}},
		Purposes:     []string{"approval"},
		LegalBasis:   "《中华人民共和国行政许可法》第三十三条",
		Jurisdiction: "1301",
		ValidFrom:    timestamppb.New(t0.Add(-time.Hour)),
		ValidUntil:   timestamppb.New(t0.Add(24 * time.Hour)),
		Quota:        &v1.Quota{PerMinute: 10},
	}
}

func enterpriseGrant() *v1.Grant {
	g := licenceGrant()
	g.Dataset = "market.enterprises"
	g.Fields = []string{"credit_code", "name", "contact_phone"}
	g.Masks = []*v1.FieldMask{{Field: "contact_phone", Mask: v1.MaskKind_MASK_KIND_PHONE}}
	return g
}

func wantErr(t *testing.T, err error, code codes.Code, reason, contains string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %v %s", code, reason)
	}
	if got := apierr.CodeOf(err); got != code {
		t.Fatalf("error %v: code %v, want %v", err, got, code)
	}
	if reason != "" && apierr.ReasonOf(err) != reason {
		t.Fatalf("error %v: reason %s, want %s", err, apierr.ReasonOf(err), reason)
	}
	if contains != "" && !strings.Contains(apierr.From(err).Msg, contains) {
		t.Fatalf("error message %q does not contain %q", apierr.From(err).Msg, contains)
	}
}

func TestProposeValidation(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(g *v1.Grant)
		reason string
		msg    string
	}{
		{"no consumer", func(g *v1.Grant) { g.Consumer = nil }, "INVALID_ARGUMENT", "grant.consumer: names neither a system nor a department"},
		{"role on a system consumer", func(g *v1.Grant) { g.Consumer.Role = "officer" }, "INVALID_ARGUMENT", "grant.consumer.role:"},
		{"unknown dataset", func(g *v1.Grant) { g.Dataset = "market.nothing" }, "UNKNOWN_DATASET", `grant.dataset: unknown dataset "market.nothing"`},
		{"no fields", func(g *v1.Grant) { g.Fields = nil; g.Masks = nil }, "INVALID_ARGUMENT", "grant.fields: at least one field is required"},
		{"unknown field", func(g *v1.Grant) { g.Fields = append(g.Fields[:2:2], "foo") }, "UNKNOWN_FIELD", `grant.fields[2]: "foo" is not a field of market.business_licences`},
		{"duplicate field", func(g *v1.Grant) { g.Fields = append(g.Fields, "name") }, "INVALID_ARGUMENT", `grant.fields[3]: "name" is listed twice`},
		{"mask on ungranted field", func(g *v1.Grant) {
			g.Masks = append(g.Masks, &v1.FieldMask{Field: "address", Mask: v1.MaskKind_MASK_KIND_ADDRESS})
		}, "INVALID_ARGUMENT", `grant.masks[1].field: "address" is not a granted field`},
		{"mask without kind", func(g *v1.Grant) { g.Masks[0].Mask = 0 }, "INVALID_ARGUMENT", "grant.masks[0].mask: a mask kind is required"},
		{"no purpose", func(g *v1.Grant) { g.Purposes = nil }, "INVALID_ARGUMENT", "grant.purposes: at least one purpose is required"},
		{"empty purpose", func(g *v1.Grant) { g.Purposes = []string{"approval", " "} }, "INVALID_ARGUMENT", "grant.purposes[1]: is empty"},
		{"no legal basis", func(g *v1.Grant) { g.LegalBasis = "  " }, "INVALID_ARGUMENT", "grant.legal_basis:"},
		{"jurisdiction letters", func(g *v1.Grant) { g.Jurisdiction = "13a1" }, "INVALID_ARGUMENT", `grant.jurisdiction: "13a1" is not a region-code prefix`},
		{"jurisdiction too short", func(g *v1.Grant) { g.Jurisdiction = "1" }, "INVALID_ARGUMENT", "grant.jurisdiction"},
		{"jurisdiction too long", func(g *v1.Grant) { g.Jurisdiction = "1301021" }, "INVALID_ARGUMENT", "grant.jurisdiction"},
		{"until before from", func(g *v1.Grant) { g.ValidUntil = g.ValidFrom }, "INVALID_ARGUMENT", "grant.valid_until: must be after valid_from"},
		{"negative quota", func(g *v1.Grant) { g.Quota.PerDay = -1 }, "INVALID_ARGUMENT", "grant.quota.per_day: must not be negative"},
	}
	f := newFixture(t)
	ctx := context.Background()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := licenceGrant()
			tt.edit(g)
			_, err := f.wf.Propose(ctx, admin1, g)
			wantErr(t, err, codes.InvalidArgument, tt.reason, tt.msg)
		})
	}
	if recs, _ := f.st.List(ctx, store.Filter{}); len(recs) != 0 {
		t.Errorf("invalid proposals stored %d grants", len(recs))
	}
	for _, j := range []string{"", "13", "130102"} {
		g := licenceGrant()
		g.Jurisdiction = j
		if _, err := f.wf.Propose(ctx, admin1, g); err != nil {
			t.Errorf("jurisdiction %q: %v", j, err)
		}
	}
}

func TestRoles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	normal, err := f.wf.Propose(ctx, admin1, licenceGrant())
	if err != nil {
		t.Fatal(err)
	}
	major, err := f.wf.Propose(ctx, adminLaw, enterpriseGrant())
	if err != nil {
		t.Fatal(err)
	}
	approve := v1.ReviewDecision_REVIEW_DECISION_APPROVE
	tests := []struct {
		name string
		do   func() error
		want string
	}{
		{"legal reviewer cannot propose", func() error { _, err := f.wf.Propose(ctx, legal1, licenceGrant()); return err }, "only an admin may propose"},
		{"auditor cannot propose", func() error { _, err := f.wf.Propose(ctx, auditor, licenceGrant()); return err }, "only an admin may propose"},
		{"auditor cannot review", func() error { _, err := f.wf.Review(ctx, auditor, normal.Id, approve, "ok"); return err }, "reviewed by an admin"},
		{"auditor cannot revoke", func() error { _, err := f.wf.Revoke(ctx, auditor, normal.Id, "hide it"); return err }, "only an admin may revoke"},
		{"legal reviewer cannot revoke", func() error { _, err := f.wf.Revoke(ctx, legal1, normal.Id, "no"); return err }, "only an admin may revoke"},
		{"proposer cannot approve own normal grant", func() error { _, err := f.wf.Review(ctx, admin1, normal.Id, approve, ""); return err }, "admin-1 proposed grant g-1 and so cannot review it"},
		{"legal reviewer does not review normal grants", func() error { _, err := f.wf.Review(ctx, legal1, normal.Id, approve, "ok"); return err }, "reviewed by an admin"},
		{"admin cannot approve a major grant", func() error { _, err := f.wf.Review(ctx, admin2, major.Id, approve, "ok"); return err }, "major dataset market.enterprises are reviewed by a legal_reviewer"},
		{"proposer who is also legal reviewer cannot review", func() error { _, err := f.wf.Review(ctx, adminLaw, major.Id, approve, "ok"); return err }, "admin-1 proposed grant g-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, tt.do(), codes.PermissionDenied, apierr.ReasonForbiddenRole, tt.want)
		})
	}
	_, err = f.wf.Propose(ctx, Actor{Roles: []string{RoleAdmin}}, licenceGrant())
	wantErr(t, err, codes.Unauthenticated, "", "")
	for _, id := range []string{normal.Id, major.Id} {
		g, err := f.wf.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if g.State != v1.GrantState_GRANT_STATE_PROPOSED || len(g.History) != 1 {
			t.Errorf("grant %s changed by refused calls: %v, %d transitions", id, g.State, len(g.History))
		}
	}
}

func TestNormalLifecycle(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	in := licenceGrant()
	in.Id, in.State, in.ProposedBy = "mine", v1.GrantState_GRANT_STATE_ACTIVE, "someone-else"
	g, err := f.wf.Propose(ctx, admin1, in)
	if err != nil {
		t.Fatal(err)
	}
	if g.Id != "g-1" || g.State != v1.GrantState_GRANT_STATE_PROPOSED || g.ProposedBy != "admin-1" || g.NeedsLegalReview {
		t.Fatalf("proposed grant = id %s state %v by %s review %v", g.Id, g.State, g.ProposedBy, g.NeedsLegalReview)
	}
	if in.Id != "mine" {
		t.Error("Propose modified the caller's message")
	}
	g, err = f.wf.Review(ctx, admin2, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, "")
	if err != nil {
		t.Fatalf("approval by a second admin: %v", err)
	}
	if g.State != v1.GrantState_GRANT_STATE_ACTIVE {
		t.Fatalf("state after approval = %v", g.State)
	}
	_, err = f.wf.Review(ctx, Actor{ID: "admin-3", Roles: []string{RoleAdmin}}, g.Id, v1.ReviewDecision_REVIEW_DECISION_REJECT, "too late")
	wantErr(t, err, codes.FailedPrecondition, "", "is ACTIVE")
	_, err = f.wf.Revoke(ctx, admin1, g.Id, "")
	wantErr(t, err, codes.InvalidArgument, "", "reason")
	g, err = f.wf.Revoke(ctx, admin1, g.Id, "系统停用")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != v1.GrantState_GRANT_STATE_REVOKED {
		t.Fatalf("state after revoke = %v", g.State)
	}
	_, err = f.wf.Revoke(ctx, admin2, g.Id, "again")
	wantErr(t, err, codes.FailedPrecondition, "", "is REVOKED")
	var hist []string
	for _, h := range g.History {
		hist = append(hist, fmt.Sprintf("%s>%s:%s/%s:%s", stateName(h.From), stateName(h.To), h.Actor, h.ActorRole, h.Opinion))
		if !h.At.AsTime().Equal(t0) {
			t.Errorf("transition at %v, want the clock's %v", h.At.AsTime(), t0)
		}
	}
	want := "[UNSPECIFIED>PROPOSED:admin-1/admin: PROPOSED>ACTIVE:admin-2/admin: ACTIVE>REVOKED:admin-1/admin:系统停用]"
	if fmt.Sprint(hist) != want {
		t.Errorf("history = %v\nwant      %s", hist, want)
	}
	if got := f.sink.list(); len(got) != 3 || got[2] != "g-1:ACTIVE>REVOKED:admin-1/admin" {
		t.Errorf("sink saw %v", got)
	}
	all, err := f.wf.List(ctx, Filter{})
	if err != nil || len(all) != 1 || all[0].State != v1.GrantState_GRANT_STATE_REVOKED {
		t.Errorf("List after revoke = %v, %v; the revoked grant must stay listed", all, err)
	}
	_, err = f.wf.Get(ctx, "g-404")
	wantErr(t, err, codes.NotFound, "", "")
}

func TestMajorNeedsLegalReview(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.wf.Propose(ctx, admin1, enterpriseGrant())
	if err != nil {
		t.Fatal(err)
	}
	if !g.NeedsLegalReview {
		t.Fatal("grant on market.enterprises does not need legal review")
	}
	_, err = f.wf.Review(ctx, legal1, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, " ")
	wantErr(t, err, codes.InvalidArgument, "", "written opinion")
	opinion := "经审核，法律依据充分，同意。"
	g, err = f.wf.Review(ctx, legal1, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, opinion)
	if err != nil {
		t.Fatal(err)
	}
	last := g.History[len(g.History)-1]
	if g.State != v1.GrantState_GRANT_STATE_ACTIVE || last.ActorRole != RoleLegalReviewer || last.Opinion != opinion || last.Actor != "legal-1" {
		t.Errorf("after legal review: state %v, last transition %v", g.State, last)
	}
}

func TestRejectedNeverActivates(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	eng, err := policy.NewEngine(ctx, f.dict, f.st, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Follow(f.bus, 0)()
	g, err := f.wf.Propose(ctx, admin1, enterpriseGrant())
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.wf.Review(ctx, legal1, g.Id, v1.ReviewDecision_REVIEW_DECISION_REJECT, "")
	wantErr(t, err, codes.InvalidArgument, "", "rejection needs a written opinion")
	_, err = f.wf.Review(ctx, legal1, g.Id, v1.ReviewDecision_REVIEW_DECISION_UNSPECIFIED, "hmm")
	wantErr(t, err, codes.InvalidArgument, "", "approve or reject")
	g, err = f.wf.Review(ctx, legal1, g.Id, v1.ReviewDecision_REVIEW_DECISION_REJECT, "超出履职必需范围")
	if err != nil {
		t.Fatal(err)
	}
	if g.State != v1.GrantState_GRANT_STATE_REJECTED {
		t.Fatalf("state = %v", g.State)
	}
	for _, a := range []Actor{legal1, legal2} {
		_, err = f.wf.Review(ctx, a, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, "改为同意")
		wantErr(t, err, codes.FailedPrecondition, "", "is REJECTED")
	}
	_, err = f.wf.Revoke(ctx, admin2, g.Id, "cleanup")
	wantErr(t, err, codes.FailedPrecondition, "", "")
	_, err = eng.Decide(policy.Request{Principal: policy.Principal{SystemID: "approval-bureau"}, Dataset: "market.enterprises", Fields: []string{"name"}, Purpose: "approval"})
	wantErr(t, err, codes.PermissionDenied, policy.ReasonNoGrant, "")
	rejected, err := f.wf.List(ctx, Filter{State: v1.GrantState_GRANT_STATE_REJECTED})
	if err != nil || len(rejected) != 1 {
		t.Errorf("List(REJECTED) = %d grants, %v; want 1", len(rejected), err)
	}
}

func TestExpiryIsComputed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	g, err := f.wf.Propose(ctx, admin1, licenceGrant())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.wf.Review(ctx, admin2, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, ""); err != nil {
		t.Fatal(err)
	}
	late, err := f.wf.Propose(ctx, admin1, licenceGrant())
	if err != nil {
		t.Fatal(err)
	}
	until := g.ValidUntil.AsTime()
	f.clock.Set(until.Add(-time.Nanosecond))
	if got, _ := f.wf.Get(ctx, g.Id); got.State != v1.GrantState_GRANT_STATE_ACTIVE {
		t.Errorf("one instant before valid_until: %v, want ACTIVE", got.State)
	}
	f.clock.Set(until)
	if got, _ := f.wf.Get(ctx, g.Id); got.State != v1.GrantState_GRANT_STATE_EXPIRED {
		t.Errorf("at valid_until: %v, want EXPIRED", got.State)
	}
	expired, err := f.wf.List(ctx, Filter{State: v1.GrantState_GRANT_STATE_EXPIRED})
	if err != nil || len(expired) != 2 {
		t.Errorf("List(EXPIRED) = %d grants, %v; want 2", len(expired), err)
	}
	if active, _ := f.wf.List(ctx, Filter{State: v1.GrantState_GRANT_STATE_ACTIVE}); len(active) != 0 {
		t.Errorf("List(ACTIVE) after expiry = %d grants", len(active))
	}
	_, err = f.wf.Review(ctx, admin2, late.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, "")
	wantErr(t, err, codes.FailedPrecondition, "", "is EXPIRED")
	_, err = f.wf.Revoke(ctx, admin2, g.Id, "x")
	wantErr(t, err, codes.FailedPrecondition, "", "is EXPIRED")
}

func TestSinkFailureFailsClosed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	boom := errors.New("audit log unreachable")
	f.sink.setFail(boom)
	_, err := f.wf.Propose(ctx, admin1, licenceGrant())
	wantErr(t, err, codes.Unavailable, apierr.ReasonAuditUnavailable, "could not be recorded")
	if !errors.Is(err, boom) {
		t.Errorf("error %v does not wrap the sink's", err)
	}
	if recs, _ := f.st.List(ctx, store.Filter{}); len(recs) != 0 {
		t.Fatalf("a proposal the sink refused was stored")
	}
	f.sink.setFail(nil)
	g, err := f.wf.Propose(ctx, admin1, licenceGrant())
	if err != nil {
		t.Fatal(err)
	}
	f.sink.setFail(boom)
	_, err = f.wf.Review(ctx, admin2, g.Id, v1.ReviewDecision_REVIEW_DECISION_APPROVE, "")
	wantErr(t, err, codes.Unavailable, apierr.ReasonAuditUnavailable, "")
	if got, _ := f.wf.Get(ctx, g.Id); got.State != v1.GrantState_GRANT_STATE_PROPOSED {
		t.Errorf("state after a refused approval = %v, want PROPOSED", got.State)
	}
}

func TestConcurrentReviewsOneWins(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for round := range 5 {
		g, err := f.wf.Propose(ctx, admin1, enterpriseGrant())
		if err != nil {
			t.Fatal(err)
		}
		reviewers := []Actor{legal1, legal2, {ID: "legal-3", Roles: []string{RoleLegalReviewer}}, {ID: "legal-4", Roles: []string{RoleLegalReviewer}}}
		errs := make([]error, len(reviewers))
		var wg sync.WaitGroup
		for i, r := range reviewers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := v1.ReviewDecision_REVIEW_DECISION_APPROVE
				if i%2 == 1 {
					d = v1.ReviewDecision_REVIEW_DECISION_REJECT
				}
				_, errs[i] = f.wf.Review(ctx, r, g.Id, d, fmt.Sprintf("opinion of %s", r.ID))
			}()
		}
		wg.Wait()
		wins := 0
		for i, err := range errs {
			switch c := apierr.CodeOf(err); c {
			case codes.OK:
				wins++
			case codes.Aborted, codes.FailedPrecondition:
			default:
				t.Errorf("round %d reviewer %d: %v", round, i, err)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d concurrent reviews won, want 1 (%v)", round, wins, errs)
		}
		got, err := f.wf.Get(ctx, g.Id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.History) != 2 {
			t.Errorf("round %d: history has %d transitions, want 2", round, len(got.History))
		}
	}
}

func TestImportDemoGrants(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	demo := policy.DemoGrants(t0)
	n, err := f.wf.Import(ctx, demo)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(demo) {
		t.Errorf("Import created %d of %d", n, len(demo))
	}
	if n, err := f.wf.Import(ctx, policy.DemoGrants(t0)); err != nil || n != 0 {
		t.Errorf("second Import = %d, %v; want 0", n, err)
	}
	if got := len(f.sink.list()); got != 2*len(demo) {
		t.Errorf("sink saw %d transitions, want %d", got, 2*len(demo))
	}
	for _, g := range demo {
		ds, _ := f.dict.Dataset(g.Dataset)
		if ds.Sensitivity != "major" {
			continue
		}
		last := g.History[len(g.History)-1]
		if !g.NeedsLegalReview || last.ActorRole != RoleLegalReviewer || last.Opinion == "" || last.Actor == g.ProposedBy {
			t.Errorf("demo grant %s on major %s lacks a legal review: %v", g.Id, g.Dataset, last)
		}
	}
	eng, err := policy.NewEngine(ctx, f.dict, f.st, policy.EngineOptions{Clock: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if eng.Snapshot().Grants() != len(demo) {
		t.Errorf("engine compiled %d grants, want %d", eng.Snapshot().Grants(), len(demo))
	}
	d, err := eng.Decide(policy.Request{Principal: policy.Principal{SystemID: "approval-bureau"}, Dataset: "resources.land_use_certificates", Purpose: "approval"})
	if err != nil || len(d.Fields) == 0 || !d.Admits("130102") || d.Admits("130200") {
		t.Errorf("approval bureau on certificates: %+v, %v", d, err)
	}
	bad := policy.DemoGrants(t0)[:1]
	bad[0].Id = "bad"
	bad[0].Fields = append(bad[0].Fields, "nope")
	_, err = f.wf.Import(ctx, bad)
	wantErr(t, err, codes.InvalidArgument, "", "")
}
