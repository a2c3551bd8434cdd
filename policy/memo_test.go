package policy

import (
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestKeptDecisionsMatchDecide: a decision answered from the kept ones is
// the decision evaluated afresh, for callers, fields and purposes that
// differ, at times just before, at and after every grant's start and end,
// taken in random order so that a decision kept at one time is asked for
// at another.
func TestKeptDecisionsMatchDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	t1, t2, t3 := t0.Add(24*time.Hour), t0.Add(48*time.Hour), t0.Add(72*time.Hour)
	lic := "market.business_licences"
	grant := func(id string, c *v1.Consumer, fields []string, purpose string, from, until time.Time, masks ...*v1.FieldMask) *v1.Grant {
		g := &v1.Grant{Id: id, Consumer: c, Dataset: lic, Fields: fields, Purposes: []string{purpose}, LegalBasis: "basis of " + id,
			Jurisdiction: "1301", State: v1.GrantState_GRANT_STATE_ACTIVE, Masks: masks}
		if !from.IsZero() {
			g.ValidFrom = timestamppb.New(from)
		}
		if !until.IsZero() {
			g.ValidUntil = timestamppb.New(until)
		}
		return g
	}
	a := &v1.Consumer{SystemId: "sys-a", Department: "dept-a"}
	grants := []*v1.Grant{
		grant("g-window", a, []string{"name", "status"}, "approval", t1, t2),
		grant("g-from", a, []string{"credit_code", "name"}, "approval", t0, time.Time{},
			&v1.FieldMask{Field: "credit_code", Mask: v1.MaskKind_MASK_KIND_REDACT}),
		grant("g-until", &v1.Consumer{Department: "dept-d"}, []string{"region_code", "status"}, "enforcement", time.Time{}, t3),
		grant("g-role", &v1.Consumer{SystemId: "sys-a", Role: "auditor"}, []string{"legal_representative_id"}, "approval", time.Time{}, time.Time{}),
	}
	s := Prepare(datasets.Default(), grants, 1)
	if len(s.Skipped()) > 0 {
		t.Fatalf("skipped: %v", s.Skipped())
	}
	principals := []Principal{
		{SystemID: "sys-a", Department: "dept-a"},
		{SystemID: "sys-a", Department: "dept-a", Roles: []string{"auditor"}},
		{SystemID: "sys-b", Department: "dept-d"},
	}
	var times []time.Time
	for _, b := range []time.Time{t0, t1, t2, t3} {
		times = append(times, b.Add(-time.Nanosecond), b, b.Add(time.Nanosecond))
	}
	var reqs []Request
	for _, p := range principals {
		for _, fields := range [][]string{nil, {"name"}, {"credit_code", "name"}, {"legal_representative_id"}, {"no_such_field"}} {
			for _, purpose := range []string{"approval", "enforcement"} {
				for _, at := range times {
					reqs = append(reqs, Request{Principal: p, Dataset: lic, Fields: fields, Purpose: purpose, Time: at})
				}
			}
		}
	}
	kept := 0
	for round := range 3 {
		r := rand.New(rand.NewPCG(7, uint64(round)))
		for _, i := range r.Perm(len(reqs)) {
			req := reqs[i]
			before := s.kept.slot(&req).Load()
			got, gotErr := s.Decide(req)
			if before != nil && before == s.kept.slot(&req).Load() && gotErr == nil {
				kept++
			}
			want, _, _, wantErr := s.decide(req)
			if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
				t.Fatalf("%+v: error %v, evaluated afresh %v", req, gotErr, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%+v at %v:\nkept:  %+v\nfresh: %+v", req.Principal, req.Time, got, want)
			}
		}
	}
	if kept == 0 {
		t.Fatal("no decision was answered from the kept ones")
	}
}

// TestKeptDecisionWindow: a decision is kept exactly for the times over
// which no grant it considered starts or ends.
func TestKeptDecisionWindow(t *testing.T) {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(time.Hour)
	g := &v1.Grant{Id: "g", Consumer: &v1.Consumer{SystemId: "sys"}, Dataset: "market.business_licences", Fields: []string{"name"},
		Purposes: []string{"approval"}, Jurisdiction: "1301", State: v1.GrantState_GRANT_STATE_ACTIVE,
		ValidFrom: timestamppb.New(start), ValidUntil: timestamppb.New(end)}
	s := Prepare(datasets.Default(), []*v1.Grant{g}, 1)
	req := Request{Principal: Principal{SystemID: "sys"}, Dataset: "market.business_licences", Purpose: "approval", Time: start.Add(time.Minute)}
	if _, err := s.Decide(req); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Time
		kept bool
	}{
		{start.Add(-time.Nanosecond), false},
		{start, true},
		{end.Add(-time.Nanosecond), true},
		{end, false},
	} {
		req.Time = c.at
		if _, ok := s.kept.get(&req); ok != c.kept {
			t.Errorf("at %v: kept = %v, want %v", c.at, ok, c.kept)
		}
	}
}

// TestKeptDecisionsCheckTheirKey: a request whose hash lands in the slot of
// another's kept decision does not get it, whichever part of the request
// differs.
func TestKeptDecisionsCheckTheirKey(t *testing.T) {
	tab := newDecisions()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	base := Request{Principal: Principal{SystemID: "s", Department: "d", Roles: []string{"r"}}, Dataset: "ds", Fields: []string{"f"},
		Purpose: "p", Time: at}
	from, until := openWindow()
	tab.put(&base, Decision{Dataset: "kept"}, from, until)
	if _, ok := tab.get(&base); !ok {
		t.Fatal("the kept decision is not found")
	}
	vary := map[string]func(r *Request, v string){
		"system":     func(r *Request, v string) { r.Principal.SystemID = v },
		"department": func(r *Request, v string) { r.Principal.Department = v },
		"roles":      func(r *Request, v string) { r.Principal.Roles = []string{v} },
		"dataset":    func(r *Request, v string) { r.Dataset = v },
		"purpose":    func(r *Request, v string) { r.Purpose = v },
		"fields":     func(r *Request, v string) { r.Fields = []string{"f", v} },
	}
	for name, set := range vary {
		found := false
		for i := range 200_000 { // about 1 in decisionSlots collides
			req := base
			set(&req, "v"+strconv.Itoa(i))
			if tab.slot(&req) != tab.slot(&base) {
				continue
			}
			found = true
			if _, ok := tab.get(&req); ok {
				t.Errorf("%s differs, same slot: got the kept decision", name)
			}
			break
		}
		if !found {
			t.Errorf("%s: no colliding request found", name)
		}
	}
}
