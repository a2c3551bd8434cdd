package query

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/policytest"
	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var _ FreeDecider = policytest.QuotaDecider{}

// keyGrants: grant A releases name, status and region_code of licences
// with no quota, grant B only the key field credit_code, with a quota of
// 10 a day and a legal basis of its own.
func keyGrants(system string) []*v1.Grant {
	lic := "market.business_licences"
	a := idGrant("g-a", system, lic, "1301", []string{"name", "status", "region_code"})
	a.LegalBasis = "basis A"
	b := idGrant("g-b", system, lic, "1301", []string{"credit_code"})
	b.LegalBasis = "basis B"
	b.Quota = &v1.Quota{PerDay: 10}
	return []*v1.Grant{a, b}
}

// TestKeyNotAskedForIsReferenced: a grant that releases only the key field
// does not release the record ids of a query that neither asks for the key
// nor selects by it: such a query is decided on its own fields only, so the
// grant is never charged, never cited, and every id is a reference.
func TestKeyNotAskedForIsReferenced(t *testing.T) {
	dict := datasets.Default()
	lim := policytest.NewCountingLimiter()
	rec := &fakeRecorder{}
	refs := mustRefs(t, refKey)
	p := &Pipeline{
		Dict:   dict,
		Policy: policytest.QuotaDecider{Snap: policy.Prepare(dict, keyGrants("k-sys"), 1), Limiter: lim},
		Fetch:  &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}},
		Record: rec,
		Refs:   refs,
	}
	wantRef := refs.Ref("market.business_licences", goodCode)
	const calls = 25 // well past B's quota of 10 a day
	for i := range calls {
		resp, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "k-sys"}, RequestID: "r", Query: &v1.QueryRequest{
			Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: []string{"name"},
		}})
		if err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
		if !slices.Equal(resp.GrantIds, []string{"g-a"}) || !slices.Equal(resp.LegalBasis, []string{"basis A"}) {
			t.Fatalf("query %d cites grants %v, bases %v; want only g-a", i+1, resp.GrantIds, resp.LegalBasis)
		}
		if got := resp.Records[0].GetProvenance().GetRecordId(); got != wantRef {
			t.Fatalf("query %d: record id %q, want the reference %q (the key is neither asked for nor selected by)", i+1, got, wantRef)
		}
		if len(resp.Withheld) != 0 {
			t.Fatalf("query %d: withheld %v", i+1, resp.Withheld)
		}
	}
	if n := lim.Count("g-b"); n != 0 {
		t.Errorf("the key-only grant was charged %d times", n)
	}
	for _, ex := range rec.got {
		if slices.Contains(ex.GrantIDs, "g-b") || slices.Contains(ex.LegalBasis, "basis B") {
			t.Fatalf("audit cites the key-only grant: %+v", ex)
		}
	}
}

// TestKeyAskedForIsReleased: where the request's own decision covers the
// key field (asked for, all fields when none are named, or selected by),
// the real id is released and the grant of the key is charged and cited
// like any grant the request reads under.
func TestKeyAskedForIsReleased(t *testing.T) {
	lic := "market.business_licences"
	tests := []struct {
		name  string
		query *v1.QueryRequest
	}{
		{"key asked for", &v1.QueryRequest{Dataset: lic, Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: []string{"name", "credit_code"}}},
		{"no fields named", &v1.QueryRequest{Dataset: lic, Filter: map[string]string{"status": "存续"}, Purpose: "approval"}},
		{"looked up by the key", &v1.QueryRequest{Dataset: lic, Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval", Fields: []string{"name"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dict := datasets.Default()
			lim := policytest.NewCountingLimiter()
			rec := &fakeRecorder{}
			p := &Pipeline{
				Dict:   dict,
				Policy: policytest.QuotaDecider{Snap: policy.Prepare(dict, keyGrants("k-sys"), 1), Limiter: lim},
				Fetch:  &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}},
				Record: rec,
				Refs:   mustRefs(t, refKey),
			}
			resp, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "k-sys"}, RequestID: "r", Query: tt.query})
			if err != nil {
				t.Fatal(err)
			}
			if got := resp.Records[0].GetProvenance().GetRecordId(); got != goodCode {
				t.Errorf("record id %q, want %s", got, goodCode)
			}
			if !slices.Contains(resp.GrantIds, "g-b") || !slices.Contains(resp.LegalBasis, "basis B") {
				t.Errorf("answer cites grants %v, bases %v; want g-b and basis B among them", resp.GrantIds, resp.LegalBasis)
			}
			if n := lim.Count("g-b"); n != 1 {
				t.Errorf("grant of the key charged %d times, want 1", n)
			}
			if ex := rec.got[len(rec.got)-1]; !slices.Contains(ex.GrantIDs, "g-b") || !slices.Contains(ex.LegalBasis, "basis B") {
				t.Errorf("audit cites grants %v, bases %v; want g-b and basis B among them", ex.GrantIDs, ex.LegalBasis)
			}
			fs := tt.query.GetFields()
			if len(fs) > 0 && !slices.Contains(fs, "credit_code") {
				if _, shown := resp.Records[0].GetFields().GetFields()["credit_code"]; shown {
					t.Error("credit_code returned though only selected by")
				}
			}
		})
	}
}

// TestKeyOnlyGrantIsNotChargedOnDenial: when nothing asked for is granted,
// the request is denied without charging the grant of the key field.
func TestKeyOnlyGrantIsNotChargedOnDenial(t *testing.T) {
	dict := datasets.Default()
	lic := "market.business_licences"
	status := idGrant("g-status", "d-sys", lic, "1301", []string{"status"})
	key := idGrant("g-key", "d-sys", lic, "1301", []string{"credit_code"})
	key.Quota = &v1.Quota{PerDay: 10}
	lim := policytest.NewCountingLimiter()
	rec := &fakeRecorder{}
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
	p := &Pipeline{Dict: dict, Policy: policytest.QuotaDecider{Snap: policy.Prepare(dict, []*v1.Grant{status, key}, 1), Limiter: lim}, Fetch: f, Record: rec}
	for range 3 {
		_, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "d-sys"}, RequestID: "r", Query: &v1.QueryRequest{
			Dataset: lic, Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: []string{"name"},
		}})
		if apierr.CodeOf(err) != codes.PermissionDenied {
			t.Fatalf("err = %v, want PERMISSION_DENIED", err)
		}
	}
	if n := lim.Count("g-key"); n != 0 {
		t.Errorf("denied requests charged the key-only grant %d times", n)
	}
	if f.calls != 0 {
		t.Errorf("department called %d times", f.calls)
	}
}

// TestKeyOnlyGrantAdmitsNoRecord: a grant of the key field alone, with a
// wider jurisdiction than the grant of the fields asked for, does not bring
// the records of its other regions into an area query's answer (as empty
// records), and does not release the id of the record it admits: the key
// is neither asked for nor selected by.
func TestKeyOnlyGrantAdmitsNoRecord(t *testing.T) {
	dict := datasets.Default()
	const ds = "resources.parcels"
	fields := idGrant("g-fields", "j-sys", ds, "130104", []string{"address", "region_code"})
	key := idGrant("g-key", "j-sys", ds, "1301", []string{"parcel_id"})
	parcel := func(id, region string) *v1.SourceRecord {
		f, _ := structpb.NewStruct(map[string]any{"parcel_id": id, "region_code": region, "address": "中山路" + id})
		return &v1.SourceRecord{Id: id, Fields: f}
	}
	rec := &fakeRecorder{}
	refs := mustRefs(t, refKey)
	p := &Pipeline{
		Dict:   dict,
		Policy: snapshotDecider{policy.Prepare(dict, []*v1.Grant{fields, key}, 1)},
		Fetch:  &fakeFetcher{records: []*v1.SourceRecord{parcel("130104001", "130104"), parcel("130105002", "130105")}},
		Record: rec,
		Refs:   refs,
	}
	resp, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "j-sys"}, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: ds, Bbox: &v1.BBox{MinLon: 114, MinLat: 37, MaxLon: 115, MaxLat: 39}, Purpose: "approval", Fields: []string{"address"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Records) != 1 || resp.Records[0].GetProvenance().GetRecordId() != refs.Ref(ds, "130104001") {
		t.Fatalf("records = %v, want only the parcel of 130104, with its reference", resp.Records)
	}
	if ex := rec.got[len(rec.got)-1]; ex.Decision != DecisionPartial || slices.Contains(ex.GrantIDs, "g-key") {
		t.Errorf("recorded decision %s citing %v, want partial (a record outside the jurisdiction) citing only g-fields", ex.Decision, ex.GrantIDs)
	}
}

// TestSelectorOnlyDenialChargesNothing: a caller whose grants allow only
// the field it selects by (grant B: credit_code) and none of the fields it
// asks for is refused, and the refusal is charged to no quota.
func TestSelectorOnlyDenialChargesNothing(t *testing.T) {
	dict := datasets.Default()
	lim := policytest.NewCountingLimiter()
	b := keyGrants("k-sys")[1]
	p := &Pipeline{
		Dict:   dict,
		Policy: policytest.QuotaDecider{Snap: policy.Prepare(dict, []*v1.Grant{b}, 1), Limiter: lim},
		Fetch:  &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}},
		Record: &fakeRecorder{},
	}
	for i := range 3 {
		_, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "k-sys"}, RequestID: "r", Query: &v1.QueryRequest{
			Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval", Fields: []string{"name"},
		}})
		if apierr.CodeOf(err) != codes.PermissionDenied {
			t.Fatalf("query %d: err = %v, want PERMISSION_DENIED", i+1, err)
		}
	}
	if n := lim.Count("g-b"); n != 0 {
		t.Errorf("three refused queries were charged %d times to the grant of the selector field", n)
	}
}
