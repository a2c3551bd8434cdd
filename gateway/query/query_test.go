package query

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

const (
	goodCode = "91350100M000100Y43" // published GB 32100 example
)

type snapshotDecider struct{ s *policy.Snapshot }

func (d snapshotDecider) Decide(_ context.Context, r policy.Request) (policy.Decision, error) {
	return d.s.Decide(r)
}

type fakeFetcher struct {
	records []*v1.SourceRecord
	err     error
	mu      sync.Mutex
	calls   int
	// shared answers as the cache does: the same records, marked shared,
	// fetched at fetchedAt, delivered as delivery (DELIVERY_CACHE when
	// unset).
	shared    bool
	fetchedAt time.Time
	delivery  v1.Delivery
}

func (f *fakeFetcher) Fetch(_ context.Context, _ *datasets.Dataset, _ *v1.FetchRequest) (Result, error) {
	f.mu.Lock()
	f.calls++
	f.mu.Unlock()
	if f.err != nil {
		return Result{}, f.err
	}
	if f.shared {
		d := f.delivery
		if d == v1.Delivery_DELIVERY_UNSPECIFIED {
			d = v1.Delivery_DELIVERY_CACHE
		}
		return Result{Records: f.records, Delivery: d, FetchedAt: f.fetchedAt, Shared: true}, nil
	}
	return Result{Records: f.records, Delivery: v1.Delivery_DELIVERY_LIVE, FetchedAt: time.Now()}, nil
}

type fakeRecorder struct {
	mu  sync.Mutex
	got []Exchange
	err error
}

func (r *fakeRecorder) RecordExchange(_ context.Context, ex Exchange) (*v1.Receipt, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	r.got = append(r.got, ex)
	return &v1.Receipt{Node: "test", LeafIndex: uint64(len(r.got) - 1)}, nil
}

func licence(region string) *v1.SourceRecord {
	f, _ := structpb.NewStruct(map[string]any{
		"credit_code":             goodCode,
		"name":                    "石家庄恒信餐饮管理有限公司",
		"legal_representative":    "张伟",
		"legal_representative_id": "11010519491231002X",
		"region_code":             region,
		"registered_capital":      100.0,
		"status":                  "存续",
	})
	return &v1.SourceRecord{Id: goodCode, Fields: f}
}

func newPipeline(t testing.TB, f *fakeFetcher, r *fakeRecorder) *Pipeline {
	t.Helper()
	dict := datasets.Default()
	now := time.Now()
	return &Pipeline{
		Dict:   dict,
		Policy: snapshotDecider{policy.Prepare(dict, policy.DemoGrants(now), 1)},
		Fetch:  f,
		Record: r,
	}
}

var approvalBureau = policy.Principal{SystemID: "approval-bureau", Department: "approval", Region: "130100"}

func TestQueryShapesAndRecords(t *testing.T) {
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
	rec := &fakeRecorder{}
	p := newPipeline(t, f, rec)
	resp, err := p.Run(context.Background(), Request{Principal: approvalBureau, RequestID: "r1", Query: &v1.QueryRequest{
		Dataset: "market.business_licences",
		Keys:    map[string]string{"credit_code": goodCode},
		Purpose: "approval",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 1 {
		t.Fatalf("records = %d, want 1", len(resp.Records))
	}
	got := resp.Records[0].GetFields().GetFields()
	if id := got["legal_representative_id"].GetStringValue(); id != "110105********002X" {
		t.Errorf("legal_representative_id = %q, want masked", id)
	}
	if got["name"].GetStringValue() == "" {
		t.Error("name missing")
	}
	if resp.Records[0].GetProvenance().GetDepartment() != "market" || resp.Records[0].GetProvenance().GetRecordId() != goodCode {
		t.Errorf("provenance = %v", resp.Records[0].GetProvenance())
	}
	if resp.Receipt == nil {
		t.Error("no receipt")
	}
	if len(rec.got) != 1 || rec.got[0].Decision != DecisionPermit || rec.got[0].ResponseDigest == "" {
		t.Fatalf("recorded = %+v", rec.got)
	}
	if len(rec.got[0].Subjects) != 1 || rec.got[0].Subjects[0] != goodCode {
		t.Errorf("subjects = %v", rec.got[0].Subjects)
	}
}

func TestQueryErrors(t *testing.T) {
	cases := []struct {
		name   string
		who    policy.Principal
		q      *v1.QueryRequest
		fetch  *fakeFetcher
		code   codes.Code
		reason string
	}{
		{"bad credit code", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91350100M000100Y44"}, Purpose: "approval"}, nil, codes.InvalidArgument, apierr.ReasonInvalidIdentifier},
		{"unknown dataset", approvalBureau, &v1.QueryRequest{Dataset: "market.nope", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}, nil, codes.NotFound, apierr.ReasonUnknownDataset},
		{"unknown field", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval", Fields: []string{"name", "shoe_size"}}, nil, codes.InvalidArgument, apierr.ReasonUnknownField},
		{"not a key", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"name": "x"}, Purpose: "approval"}, nil, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"no purpose", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}}, nil, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"no selector", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Purpose: "approval"}, nil, codes.InvalidArgument, apierr.ReasonInvalidArgument},
		{"no grant", policy.Principal{SystemID: "stranger", Department: "x"}, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}, nil, codes.PermissionDenied, ""},
		{"outside jurisdiction", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}, &fakeFetcher{records: []*v1.SourceRecord{licence("130602")}}, codes.PermissionDenied, apierr.ReasonOutsideJurisdiction},
		{"not found", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}, &fakeFetcher{err: apierr.New(codes.NotFound, apierr.ReasonNotFound, "no such licence")}, codes.NotFound, apierr.ReasonNotFound},
		{"department down", approvalBureau, &v1.QueryRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}, &fakeFetcher{err: apierr.Unavailable("market", errors.New("refused"))}, codes.Unavailable, apierr.ReasonDepartmentDown},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := tc.fetch
			if f == nil {
				f = &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
			}
			p := newPipeline(t, f, &fakeRecorder{})
			_, err := p.Run(context.Background(), Request{Principal: tc.who, Query: tc.q})
			if apierr.CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want code %v", err, tc.code)
			}
			if tc.reason != "" && apierr.ReasonOf(err) != tc.reason {
				t.Fatalf("reason = %q, want %q (err %v)", apierr.ReasonOf(err), tc.reason, err)
			}
		})
	}
}

func TestQueryFailsClosedWhenAuditFails(t *testing.T) {
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
	p := newPipeline(t, f, &fakeRecorder{err: errors.New("disk full")})
	resp, err := p.Run(context.Background(), Request{Principal: approvalBureau, Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
	}})
	if resp != nil || apierr.ReasonOf(err) != apierr.ReasonAuditUnavailable {
		t.Fatalf("resp = %v, err = %v; want refusal with AUDIT_UNAVAILABLE", resp, err)
	}
}

func TestDenialIsRecorded(t *testing.T) {
	rec := &fakeRecorder{}
	f := &fakeFetcher{}
	p := newPipeline(t, f, rec)
	_, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "stranger"}, Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
	}})
	if err == nil {
		t.Fatal("stranger was served")
	}
	if f.calls != 0 {
		t.Error("department was asked although the request was denied")
	}
	if len(rec.got) != 1 || rec.got[0].Decision != DecisionDeny {
		t.Fatalf("recorded = %+v, want one deny", rec.got)
	}
}

func TestRunLeavesSourceRecordsUnchanged(t *testing.T) {
	src := licence("130104")
	before := proto.Clone(src)
	p := newPipeline(t, &fakeFetcher{records: []*v1.SourceRecord{src}}, &fakeRecorder{})
	for i := 0; i < 2; i++ {
		if _, err := p.Run(context.Background(), Request{Principal: approvalBureau, Query: &v1.QueryRequest{
			Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
		}}); err != nil {
			t.Fatal(err)
		}
	}
	if !proto.Equal(before, src) {
		t.Fatalf("shaping changed the cached source record:\nbefore %v\nafter  %v", before, src)
	}
}

func TestDigest(t *testing.T) {
	rec := func(name string, order []string) *v1.Record {
		m := map[string]any{}
		for _, k := range order {
			m[k] = map[string]any{"name": name, "code": goodCode, "capital": 100.5, "ok": true, "geo": map[string]any{"type": "Point", "coordinates": []any{114.5, 38.0}}}[k]
		}
		f, _ := structpb.NewStruct(m)
		return &v1.Record{Fields: f, Provenance: &v1.Provenance{Department: "market", RecordId: goodCode}}
	}
	a, err := digest([]*v1.Record{rec("甲", []string{"name", "code", "capital", "ok", "geo"})}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := digest([]*v1.Record{rec("甲", []string{"geo", "ok", "capital", "code", "name"})}, nil)
	c, _ := digest([]*v1.Record{rec("乙", []string{"name", "code", "capital", "ok", "geo"})}, nil)
	if a != b {
		t.Error("digest depends on field order")
	}
	if a == c {
		t.Error("digest does not depend on values")
	}
	if len(a) != 64 {
		t.Errorf("digest %q is not hex SHA-256", a)
	}
}

func TestSelectingByUngrantedOrMaskedFieldIsRefused(t *testing.T) {
	enforcement := policy.Principal{SystemID: "enforcement-platform", Department: "enforcement", Region: "130100"}
	tests := []struct {
		name      string
		principal policy.Principal
		query     *v1.QueryRequest
	}{
		{"filter on a field not granted", enforcement, &v1.QueryRequest{
			Dataset: "market.business_licences", Purpose: "inspection",
			Filter: map[string]string{"legal_representative_id": "11010519491231002X"},
		}},
		{"filter on a field not granted, other fields named", enforcement, &v1.QueryRequest{
			Dataset: "market.business_licences", Purpose: "inspection", Fields: []string{"name"},
			Filter: map[string]string{"legal_representative_id": "11010519491231002X"},
		}},
		{"filter on a masked field", approvalBureau, &v1.QueryRequest{
			Dataset: "market.business_licences", Purpose: "approval", Fields: []string{"name"},
			Filter: map[string]string{"legal_representative_id": "11010519491231002X"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
			rec := &fakeRecorder{}
			p := newPipeline(t, f, rec)
			_, err := p.Run(context.Background(), Request{Principal: tt.principal, RequestID: "r", Query: tt.query})
			if apierr.CodeOf(err) != codes.PermissionDenied || apierr.ReasonOf(err) != policy.ReasonFieldNotGranted {
				t.Fatalf("err = %v, want PERMISSION_DENIED %s", err, policy.ReasonFieldNotGranted)
			}
			if f.calls != 0 {
				t.Errorf("department called %d times for a refused query", f.calls)
			}
			if len(rec.got) != 1 || rec.got[0].Decision != DecisionDeny {
				t.Errorf("recorded = %+v, want one denial", rec.got)
			}
		})
	}
}

func TestSelectorFieldsAreNotReturnedUnlessAsked(t *testing.T) {
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
	rec := &fakeRecorder{}
	p := newPipeline(t, f, rec)
	resp, err := p.Run(context.Background(), Request{Principal: approvalBureau, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Purpose: "approval", Fields: []string{"name"},
		Filter: map[string]string{"status": "存续"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 1 {
		t.Fatalf("records = %d, want 1", len(resp.Records))
	}
	got := resp.Records[0].GetFields().GetFields()
	if len(got) != 1 || got["name"] == nil {
		t.Errorf("fields = %v, want only name", got)
	}
	if len(resp.Withheld) != 0 {
		t.Errorf("withheld = %v, want none", resp.Withheld)
	}
	if r := rec.got[len(rec.got)-1]; len(r.FieldsReturned) != 1 || r.FieldsReturned[0] != "name" {
		t.Errorf("recorded fields returned = %v, want [name]", r.FieldsReturned)
	}
}

// TestDepartmentNotFoundIsRecorded: a lookup the department answers with
// NOT_FOUND (as the cache reports it) is recorded like an empty answer.
func TestDepartmentNotFoundIsRecorded(t *testing.T) {
	f := &fakeFetcher{err: apierr.New(codes.NotFound, apierr.ReasonNotFound, "no record")}
	rec := &fakeRecorder{}
	p := newPipeline(t, f, rec)
	_, err := p.Run(context.Background(), Request{Principal: approvalBureau, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Purpose: "approval",
		Keys: map[string]string{"credit_code": goodCode},
	}})
	if apierr.CodeOf(err) != codes.NotFound || apierr.ReasonOf(err) != apierr.ReasonNotFound {
		t.Fatalf("err = %v, want NOT_FOUND", err)
	}
	if len(rec.got) != 1 || rec.got[0].DenyReason != apierr.ReasonNotFound || len(rec.got[0].Subjects) != 1 {
		t.Fatalf("recorded = %+v, want one NOT_FOUND exchange naming the subject", rec.got)
	}
}
