package api

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/tongban/tongban/gateway/auth"
	"github.com/tongban/tongban/gateway/autofill"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

type formsDecider struct{ s *policy.Snapshot }

func (d formsDecider) Decide(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.s.Decide(r)
}

// nothingFetcher knows no records.
type nothingFetcher struct{}

func (nothingFetcher) Fetch(_ context.Context, ds *datasets.Dataset, _ *v1.FetchRequest) (query.Result, error) {
	return query.Result{}, apierr.Newf(codes.NotFound, apierr.ReasonNotFound, "no record of %s", ds.Name)
}

type formsRecorder struct{}

func (formsRecorder) RecordExchange(context.Context, query.Exchange) (*v1.Receipt, error) {
	return &v1.Receipt{Node: "test"}, nil
}

func formsToken(token string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
}

func TestFormsService(t *testing.T) {
	dict := datasets.Default()
	store := autofill.NewMemoryStore()
	svc := &Forms{
		Auth: auth.New([]auth.Entry{
			{TokenSHA256: auth.Digest("window"), Identity: auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100"}},
			{TokenSHA256: auth.Digest("market"), Identity: auth.Identity{SystemID: "market-desk", Department: "market"}},
			{TokenSHA256: auth.Digest("auditor"), Identity: auth.Identity{SystemID: "aud", Roles: []string{auth.RoleAuditor}}},
		}),
		Engine: &autofill.Engine{
			Dict: dict, Forms: forms.Default(), Policy: formsDecider{policy.Prepare(dict, policy.DemoGrants(time.Now()), 1)},
			Fetch: nothingFetcher{}, Record: formsRecorder{}, Corrections: store,
		},
	}
	const code = "91350100M000100Y43"
	if l, err := svc.ListForms(context.Background(), &v1.ListFormsRequest{}); err != nil || len(l.GetForms()) == 0 {
		t.Fatalf("list forms = %v, %v", l, err)
	}
	if _, err := svc.AutofillForm(context.Background(), &v1.AutofillRequest{Form: "food_business_licence", ApplicantId: code}); apierr.CodeOf(err) != codes.Unauthenticated {
		t.Errorf("no token: err = %v", err)
	}
	resp, err := svc.AutofillForm(formsToken("window"), &v1.AutofillRequest{Form: "food_business_licence", ApplicantId: code})
	if err != nil || resp.GetReceipt() == nil {
		t.Fatalf("autofill = %v, %v", resp, err)
	}
	b, err := svc.AutofillBundle(formsToken("window"), &v1.AutofillBundleRequest{Bundle: "open_restaurant", ApplicantId: code})
	if err != nil || len(b.GetForms()) != 3 {
		t.Fatalf("bundle = %v, %v", b, err)
	}
	c, err := svc.CreateCorrection(formsToken("window"), &v1.CreateCorrectionRequest{Form: "food_business_licence", ApplicantId: code, Field: "operator_name", ProposedValue: "新名称"})
	if err != nil || c.GetDepartment() != "market" {
		t.Fatalf("correction = %v, %v", c, err)
	}
	tests := []struct {
		token, department string
		code              codes.Code
		n                 int
	}{
		{"market", "", codes.OK, 1},       // own queue by default
		{"market", "market", codes.OK, 1}, // own queue named
		{"market", "resources", codes.PermissionDenied, 0},
		{"window", "", codes.OK, 0}, // the approval bureau's own (empty) queue
		{"window", "market", codes.PermissionDenied, 0},
		{"auditor", "", codes.OK, 1}, // auditors read all
	}
	for _, tc := range tests {
		l, err := svc.ListCorrections(formsToken(tc.token), &v1.ListCorrectionsRequest{Department: tc.department})
		if apierr.CodeOf(err) != tc.code || len(l.GetCorrections()) != tc.n {
			t.Errorf("%s lists %q: %d corrections, err %v; want %d, %v", tc.token, tc.department, len(l.GetCorrections()), err, tc.n, tc.code)
		}
	}
	// Record ids: real to the holding department, a reference to others.
	refs, err := query.NewRecordRefs(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	svc.Engine.Refs = refs
	held := &autofill.Correction{ID: "corr-held", Form: "food_business_licence", Field: "operator_name", ApplicantID: code,
		Dataset: "market.business_licences", SourceField: "name", Department: "market", RecordID: code, State: "open",
		RaisedBy: "approval-bureau", RaisedAt: time.Now()}
	if err := store.Add(context.Background(), held); err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]string{"market": code, "auditor": refs.Ref("market.business_licences", code)} {
		l, err := svc.ListCorrections(formsToken(token), &v1.ListCorrectionsRequest{Department: "market"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, got := range l.GetCorrections() {
			if got.GetId() != held.ID {
				continue
			}
			found = true
			if got.GetRecordId() != want {
				t.Errorf("%s reads record id %q, want %q", token, got.GetRecordId(), want)
			}
		}
		if !found {
			t.Errorf("%s lists %d corrections of market without %s", token, len(l.GetCorrections()), held.ID)
		}
	}
	// Only the correction's department (or an admin) resolves it.
	if _, err := svc.ResolveCorrection(formsToken("window"), &v1.ResolveCorrectionRequest{Id: c.GetId()}); apierr.CodeOf(err) != codes.PermissionDenied {
		t.Errorf("another department resolved a correction: err = %v", err)
	}
	r, err := svc.ResolveCorrection(formsToken("market"), &v1.ResolveCorrectionRequest{Id: c.GetId()})
	if err != nil || r.GetState() != "resolved" {
		t.Fatalf("resolve = %v, %v", r, err)
	}
	if _, err := svc.ResolveCorrection(formsToken("market"), &v1.ResolveCorrectionRequest{}); apierr.CodeOf(err) != codes.InvalidArgument {
		t.Errorf("empty id: err = %v", err)
	}
}
