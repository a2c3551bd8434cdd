package query

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var refKey = bytes.Repeat([]byte{0x5a}, 32)

// idGrant is an active grant of fields of dataset to system for purpose
// approval in jurisdiction, with masks given as field, kind pairs.
func idGrant(id, system, dataset, jurisdiction string, fields []string, masks ...any) *v1.Grant {
	g := &v1.Grant{
		Id:           id,
		Consumer:     &v1.Consumer{SystemId: system, Department: "d-" + system},
		Dataset:      dataset,
		Fields:       fields,
		Purposes:     []string{"approval"},
		LegalBasis:   "test basis",
		Jurisdiction: jurisdiction,
		State:        v1.GrantState_GRANT_STATE_ACTIVE,
	}
	for i := 0; i < len(masks); i += 2 {
		g.Masks = append(g.Masks, &v1.FieldMask{Field: masks[i].(string), Mask: masks[i+1].(v1.MaskKind)})
	}
	return g
}

// idGrants are the grants of the record-id tests, on top of the demo grants.
func idGrants() []*v1.Grant {
	lic, ent := "market.business_licences", "market.enterprises"
	public := []string{"name", "status", "region_code"}
	withKey := []string{"credit_code", "name", "status", "region_code"}
	return []*v1.Grant{
		// withheld-sys may not see the credit code at all, in either dataset.
		idGrant("g-withheld", "withheld-sys", lic, "1301", public),
		idGrant("g-withheld-ent", "withheld-sys", ent, "1301", public),
		// masked-sys sees it redacted.
		idGrant("g-masked", "masked-sys", lic, "1301", withKey, "credit_code", v1.MaskKind_MASK_KIND_REDACT),
		// split-sys sees it in 130104 (Qiaoxi) and only masked elsewhere in
		// Shijiazhuang.
		idGrant("g-split-qiaoxi", "split-sys", lic, "130104", withKey),
		idGrant("g-split-city", "split-sys", lic, "1301", withKey, "credit_code", v1.MaskKind_MASK_KIND_NAME),
	}
}

func idPipeline(t testing.TB, refs *RecordRefs, f *fakeFetcher, rec *fakeRecorder) *Pipeline {
	t.Helper()
	dict := datasets.Default()
	grants := append(policy.DemoGrants(time.Now()), idGrants()...)
	snap := policy.Prepare(dict, grants, 1)
	if len(snap.Skipped()) > 0 {
		t.Fatalf("grants skipped: %v", snap.Skipped())
	}
	return &Pipeline{Dict: dict, Policy: snapshotDecider{snap}, Fetch: f, Record: rec, Refs: refs}
}

func mustRefs(t testing.TB, key []byte) *RecordRefs {
	t.Helper()
	r, err := NewRecordRefs(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// licenceWith is a licence record with the given credit code and region.
func licenceWith(code, region string) *v1.SourceRecord {
	r := licence(region)
	r.Fields.Fields["credit_code"] = structpb.NewStringValue(code)
	r.Id = code
	return r
}

const otherCode = "91130104MA0000001X" // a second record id (not looked up, so not validated)

// TestRecordIDIsReleasedOnlyWithItsKeyField: the real id is released only
// where the request's own decision (fields asked for, all when none are
// named, and the fields selected by) shows the key field unmasked.
func TestRecordIDIsReleasedOnlyWithItsKeyField(t *testing.T) {
	refs := mustRefs(t, refKey)
	lic := "market.business_licences"
	byStatus := func(fields ...string) *v1.QueryRequest {
		return &v1.QueryRequest{Dataset: lic, Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: fields}
	}
	byCode := &v1.QueryRequest{Dataset: lic, Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval"}
	tests := []struct {
		name    string
		system  string
		refs    *RecordRefs
		records []*v1.SourceRecord
		query   *v1.QueryRequest
		// want is the record id of each record returned: the id itself,
		// "ref" for its opaque reference, or "" for none.
		want []string
	}{
		{"key granted", "approval-bureau", refs, []*v1.SourceRecord{licence("130104")}, byCode, []string{goodCode}},
		{"key granted, not asked for", "approval-bureau", refs, []*v1.SourceRecord{licence("130104")},
			byStatus("name"), []string{"ref"}},
		{"key granted, asked for", "approval-bureau", refs, []*v1.SourceRecord{licence("130104")},
			byStatus("name", "credit_code"), []string{goodCode}},
		{"key granted, no fields named", "approval-bureau", refs, []*v1.SourceRecord{licence("130104")},
			byStatus(), []string{goodCode}},
		{"key granted, looked up by it, fields named without it", "approval-bureau", refs, []*v1.SourceRecord{licence("130104")},
			&v1.QueryRequest{Dataset: lic, Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval", Fields: []string{"name"}},
			[]string{goodCode}},
		{"key granted, not asked for, no reference key", "approval-bureau", nil, []*v1.SourceRecord{licence("130104")},
			byStatus("name"), []string{""}},
		{"key withheld", "withheld-sys", refs, []*v1.SourceRecord{licence("130104")}, byStatus(), []string{"ref"}},
		{"key withheld, fields named", "withheld-sys", refs, []*v1.SourceRecord{licence("130104")},
			byStatus("name", "status"), []string{"ref"}},
		{"key masked, looked up by it", "masked-sys", refs, []*v1.SourceRecord{licence("130104")}, byCode, []string{"ref"}},
		{"key masked, fields named without it", "masked-sys", refs, []*v1.SourceRecord{licence("130104")},
			byStatus("name"), []string{"ref"}},
		{"key unmasked in one region only", "split-sys", refs,
			[]*v1.SourceRecord{licenceWith(goodCode, "130104"), licenceWith(otherCode, "130105")},
			byStatus(), []string{goodCode, "ref"}},
		{"key withheld, no reference key", "withheld-sys", nil, []*v1.SourceRecord{licence("130104")}, byStatus(), []string{""}},
		{"key masked, no reference key", "masked-sys", nil, []*v1.SourceRecord{licence("130104")}, byCode, []string{""}},
		{"key granted, no reference key", "approval-bureau", nil, []*v1.SourceRecord{licence("130104")}, byCode, []string{goodCode}},
	}
	for _, tt := range tests {
		for _, shared := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/shared=%v", tt.name, shared), func(t *testing.T) {
				testReleasedIDs(t, tt.refs, tt.system, tt.records, tt.query, tt.want, shared)
			})
		}
	}
}

// testReleasedIDs runs query twice as system over records and checks the
// record ids released; with shared, the records come as the cache hands
// them out, so the second answer is made from kept renderings.
func testReleasedIDs(t *testing.T, refs *RecordRefs, system string, records []*v1.SourceRecord, query *v1.QueryRequest, wantIDs []string, shared bool) {
	t.Helper()
	lic := "market.business_licences"
	rec := &fakeRecorder{}
	p := idPipeline(t, refs, &fakeFetcher{records: records, shared: shared, fetchedAt: time.Now()}, rec)
	who := policy.Principal{SystemID: system, Department: "d-" + system, Region: "130100"}
	var first []string
	for run := range 2 {
		resp, err := p.Run(context.Background(), Request{Principal: who, RequestID: "r", Query: query})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Records) != len(wantIDs) {
			t.Fatalf("records = %d, want %d", len(resp.Records), len(wantIDs))
		}
		var got []string
		for i, r := range resp.Records {
			id, src := r.GetProvenance().GetRecordId(), records[i].GetId()
			got = append(got, id)
			switch want := wantIDs[i]; want {
			case "ref":
				if !strings.HasPrefix(id, RefPrefix) || strings.Contains(id, src) || strings.Contains(id, src[2:10]) {
					t.Errorf("record %d: id %q, want an opaque reference", i, id)
				}
				if id != refs.Ref(lic, src) {
					t.Errorf("record %d: id %q, want Ref = %q", i, id, refs.Ref(lic, src))
				}
			default:
				if id != want {
					t.Errorf("record %d: id %q, want %q", i, id, want)
				}
			}
		}
		if run == 0 {
			first = got
		} else if strings.Join(got, ",") != strings.Join(first, ",") {
			t.Errorf("ids changed between queries: %v then %v", first, got)
		}
		// A key field not asked for is neither listed as withheld
		// nor returned.
		for _, w := range resp.Withheld {
			if w.Field == "credit_code" && len(query.Fields) > 0 && !contains(query.Fields, "credit_code") {
				t.Errorf("credit_code listed as withheld though not asked for")
			}
		}
		if fs := query.GetFields(); len(fs) > 0 {
			for _, r := range resp.Records {
				for name := range r.GetFields().GetFields() {
					if !contains(fs, name) {
						t.Errorf("field %s returned though not asked for", name)
					}
				}
			}
		}
		// What was recorded is what was released.
		d, err := digest(resp.Records, nil)
		if err != nil {
			t.Fatal(err)
		}
		if last := rec.got[len(rec.got)-1]; last.ResponseDigest != d {
			t.Errorf("recorded digest %s, digest of the answer %s", last.ResponseDigest, d)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestRecordRefDiffersAcrossDatasets: the same credit code in two datasets
// gets two references, so answers on the two cannot be joined by it.
func TestRecordRefDiffersAcrossDatasets(t *testing.T) {
	refs := mustRefs(t, refKey)
	who := policy.Principal{SystemID: "withheld-sys", Department: "d-withheld-sys"}
	var ids []string
	for _, ds := range []string{"market.business_licences", "market.enterprises"} {
		p := idPipeline(t, refs, &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, &fakeRecorder{})
		resp, err := p.Run(context.Background(), Request{Principal: who, RequestID: "r", Query: &v1.QueryRequest{
			Dataset: ds, Filter: map[string]string{"status": "存续"}, Purpose: "approval",
		}})
		if err != nil {
			t.Fatalf("%s: %v", ds, err)
		}
		if len(resp.Records) != 1 {
			t.Fatalf("%s: records = %d, want 1", ds, len(resp.Records))
		}
		ids = append(ids, resp.Records[0].GetProvenance().GetRecordId())
	}
	if !strings.HasPrefix(ids[0], RefPrefix) || !strings.HasPrefix(ids[1], RefPrefix) || ids[0] == ids[1] {
		t.Fatalf("ids = %q, want two different references", ids)
	}
}

// TestDigestCoversReleasedID: the digest recorded in the audit log is over
// the reference released, so it differs from a digest over the real id.
func TestDigestCoversReleasedID(t *testing.T) {
	rec := &fakeRecorder{}
	p := idPipeline(t, mustRefs(t, refKey), &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, rec)
	resp, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "masked-sys"}, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Keys: map[string]string{"credit_code": goodCode}, Purpose: "approval",
	}})
	if err != nil {
		t.Fatal(err)
	}
	released, err := digest(resp.Records, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := rec.got[0].ResponseDigest; got != released {
		t.Fatalf("recorded digest %s, want the digest of the released records %s", got, released)
	}
	withID := proto.Clone(resp.Records[0]).(*v1.Record)
	withID.Provenance.RecordId = goodCode
	raw, _ := digest([]*v1.Record{withID}, nil)
	if raw == released {
		t.Fatal("the digest does not depend on the record id")
	}
}

// TestWithheldKeyAskedForIsListed: a key field asked for and not granted is
// still reported as withheld; one not asked for is not.
func TestWithheldKeyAskedForIsListed(t *testing.T) {
	for _, tt := range []struct {
		fields []string
		listed bool
	}{
		{[]string{"name"}, false},
		{[]string{"name", "credit_code"}, true},
	} {
		rec := &fakeRecorder{}
		p := idPipeline(t, mustRefs(t, refKey), &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}, rec)
		resp, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "withheld-sys"}, RequestID: "r", Query: &v1.QueryRequest{
			Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: tt.fields,
		}})
		if err != nil {
			t.Fatal(err)
		}
		listed := len(resp.Withheld) == 1 && resp.Withheld[0].Field == "credit_code"
		if listed != tt.listed || (!tt.listed && len(resp.Withheld) != 0) {
			t.Errorf("fields %v: withheld = %v, want credit_code listed: %v", tt.fields, resp.Withheld, tt.listed)
		}
		want := DecisionPermit
		if tt.listed {
			want = DecisionPartial
		}
		if got := rec.got[0].Decision; got != want {
			t.Errorf("fields %v: recorded decision %s, want %s", tt.fields, got, want)
		}
	}
}

// TestOnlyKeyGrantedIsDenied: a grant of the key field alone does not let a
// query for other fields through.
func TestOnlyKeyGrantedIsDenied(t *testing.T) {
	dict := datasets.Default()
	snap := policy.Prepare(dict, []*v1.Grant{
		idGrant("g-key", "key-sys", "market.business_licences", "1301", []string{"credit_code", "status"}),
	}, 1)
	f := &fakeFetcher{records: []*v1.SourceRecord{licence("130104")}}
	rec := &fakeRecorder{}
	p := &Pipeline{Dict: dict, Policy: snapshotDecider{snap}, Fetch: f, Record: rec, Refs: mustRefs(t, refKey)}
	_, err := p.Run(context.Background(), Request{Principal: policy.Principal{SystemID: "key-sys"}, RequestID: "r", Query: &v1.QueryRequest{
		Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, Purpose: "approval", Fields: []string{"name"},
	}})
	if err == nil || f.calls != 0 {
		t.Fatalf("err = %v, department calls = %d; want a denial before any fetch", err, f.calls)
	}
	if len(rec.got) != 1 || rec.got[0].Decision != DecisionDeny || rec.got[0].DenyReason != policy.ReasonFieldNotGranted {
		t.Fatalf("recorded = %+v, want one FIELD_NOT_GRANTED denial", rec.got)
	}
}

func TestRecordRefs(t *testing.T) {
	a := mustRefs(t, refKey)
	b := mustRefs(t, bytes.Repeat([]byte{0xa5}, 32))
	lic, ent := "market.business_licences", "market.enterprises"
	ref := a.Ref(lic, goodCode)
	if len(ref) != len(RefPrefix)+22 || !strings.HasPrefix(ref, RefPrefix) {
		t.Errorf("Ref = %q, want %s and 22 base64url characters", ref, RefPrefix)
	}
	for _, c := range strings.TrimPrefix(ref, RefPrefix) {
		if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", c) {
			t.Fatalf("Ref = %q is not base64url", ref)
		}
	}
	cases := []struct {
		name string
		x, y string
		same bool
	}{
		{"stable", a.Ref(lic, goodCode), a.Ref(lic, goodCode), true},
		{"dataset", a.Ref(lic, goodCode), a.Ref(ent, goodCode), false},
		{"id", a.Ref(lic, goodCode), a.Ref(lic, otherCode), false},
		{"key", a.Ref(lic, goodCode), b.Ref(lic, goodCode), false},
		{"unambiguous", a.Ref("ab", "c"), a.Ref("a", "bc"), false},
	}
	for _, c := range cases {
		if (c.x == c.y) != c.same {
			t.Errorf("%s: %q vs %q, want same = %v", c.name, c.x, c.y, c.same)
		}
	}
	var none *RecordRefs
	if got := none.Ref(lic, goodCode); got != "" {
		t.Errorf("nil RecordRefs gave %q", got)
	}
	if got := a.Ref(lic, ""); got != "" {
		t.Errorf("Ref of an empty id = %q", got)
	}
	if _, err := NewRecordRefs(make([]byte, MinRecordRefKey-1)); err == nil {
		t.Error("a short key was accepted")
	}
	key := bytes.Clone(refKey)
	c := mustRefs(t, key)
	key[0] ^= 1
	if c.Ref(lic, goodCode) != ref {
		t.Error("RecordRefs keeps the caller's key slice")
	}
}

// TestRelease checks the helper other packages call, with the decisions of
// the test grants.
func TestRelease(t *testing.T) {
	dict := datasets.Default()
	snap := policy.Prepare(dict, append(policy.DemoGrants(time.Now()), idGrants()...), 1)
	lic, _ := dict.Dataset("market.business_licences")
	refs := mustRefs(t, refKey)
	decide := func(system string, fields ...string) *policy.Decision {
		t.Helper()
		d, err := snap.Decide(policy.Request{Principal: policy.Principal{SystemID: system}, Dataset: lic.Name, Purpose: "approval", Fields: fields, Time: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return &d
	}
	ref := refs.Ref(lic.Name, goodCode)
	cases := []struct {
		name   string
		dec    *policy.Decision
		ds     *datasets.Dataset
		refs   *RecordRefs
		region string
		want   string
	}{
		{"granted", decide("approval-bureau"), lic, refs, "130104", goodCode},
		{"granted, key not decided", decide("approval-bureau", "name"), lic, refs, "130104", ref},
		{"withheld", decide("withheld-sys"), lic, refs, "130104", ref},
		{"masked", decide("masked-sys"), lic, refs, "130104", ref},
		{"split, unmasked region", decide("split-sys"), lic, refs, "130104", goodCode},
		{"split, masked region", decide("split-sys"), lic, refs, "130105", ref},
		{"outside jurisdiction", decide("approval-bureau"), lic, refs, "130602", ref},
		{"dataset without keys", decide("approval-bureau"), &datasets.Dataset{Name: lic.Name, Fields: lic.Fields}, refs, "130104", ref},
		{"withheld, no reference key", decide("withheld-sys"), lic, nil, "130104", ""},
		{"granted, no reference key", decide("approval-bureau"), lic, nil, "130104", goodCode},
	}
	for _, c := range cases {
		if got := c.refs.Release(c.dec, c.ds, c.region, goodCode); got != c.want {
			t.Errorf("%s: Release = %q, want %q", c.name, got, c.want)
		}
	}
	if got := refs.Release(decide("approval-bureau"), lic, "130104", ""); got != "" {
		t.Errorf("Release of an empty id = %q", got)
	}
}

func TestMostSpecific(t *testing.T) {
	w := func(reasons ...string) []policy.Withheld {
		var out []policy.Withheld
		for i, r := range reasons {
			out = append(out, policy.Withheld{Field: string(rune('a' + i)), Reason: r})
		}
		return out
	}
	cases := []struct {
		in   []policy.Withheld
		want string
	}{
		{nil, policy.ReasonFieldNotGranted},
		{w(policy.ReasonNoGrant), policy.ReasonNoGrant},
		{w(policy.ReasonFieldNotGranted, policy.ReasonPurposeNotCovered), policy.ReasonPurposeNotCovered},
		{w(policy.ReasonNoGrant, policy.ReasonGrantExpired, policy.ReasonGrantNotYetValid), policy.ReasonGrantExpired},
		{w("SOMETHING_NEW"), "SOMETHING_NEW"},
		{w("SOMETHING_NEW", policy.ReasonNoGrant), policy.ReasonNoGrant},
	}
	for _, c := range cases {
		if got := mostSpecific(c.in); got != c.want {
			t.Errorf("mostSpecific(%v) = %s, want %s", c.in, got, c.want)
		}
	}
}

// BenchmarkRunRefs is BenchmarkRun/page100 for a caller that may not see
// the credit codes: every record id becomes a reference.
func BenchmarkRunRefs(b *testing.B) {
	p := idPipeline(b, mustRefs(b, refKey), &fakeFetcher{records: pageOfLicences(100)}, nil)
	p.Record = discardRecorder{}
	who := policy.Principal{SystemID: "withheld-sys", Department: "d-withheld-sys"}
	q := &v1.QueryRequest{Dataset: "market.business_licences", Filter: map[string]string{"status": "存续"}, Purpose: "approval"}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		resp, err := p.Run(ctx, Request{Principal: who, RequestID: "b", Query: q})
		if err != nil {
			b.Fatal(err)
		}
		if id := resp.Records[0].GetProvenance().GetRecordId(); !strings.HasPrefix(id, RefPrefix) {
			b.Fatalf("record id %q", id)
		}
	}
}

func BenchmarkRef(b *testing.B) {
	refs := mustRefs(b, refKey)
	b.ReportAllocs()
	for b.Loop() {
		_ = refs.Ref("market.business_licences", goodCode)
	}
}
