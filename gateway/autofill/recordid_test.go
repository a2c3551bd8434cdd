package autofill

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func testRefs(t *testing.T) *query.RecordRefs {
	t.Helper()
	r, err := query.NewRecordRefs(bytes.Repeat([]byte{0x3c}, query.MinRecordRefKey))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// grantEdit changes the demo grant with id id.
type grantEdit struct {
	id   string
	edit func(g *v1.Grant)
}

// editedGrants returns the demo grants with edits applied.
func editedGrants(t *testing.T, edits ...grantEdit) []*v1.Grant {
	t.Helper()
	grants := policy.DemoGrants(time.Now())
	for _, e := range edits {
		i := slices.IndexFunc(grants, func(g *v1.Grant) bool { return g.GetId() == e.id })
		if i < 0 {
			t.Fatalf("no demo grant %s", e.id)
		}
		e.edit(grants[i])
	}
	return grants
}

// queryIDs returns, for each record the department holds of dataset under
// lookup by=applicant, the record id a query by p under grants and refs
// for fields (all when none) shows: real id → shown id.
func queryIDs(t *testing.T, grants []*v1.Grant, refs *query.RecordRefs, p policy.Principal, dataset, by, applicant string, fields []string) map[string]string {
	t.Helper()
	ctx := context.Background()
	te := newEngine(t, grants)
	ds, _ := te.Dict.Dataset(dataset)
	res, err := te.fetch.Fetch(ctx, ds, &v1.FetchRequest{Dataset: dataset, Keys: map[string]string{by: applicant}, PageSize: 100})
	if err != nil {
		t.Fatalf("fetching %s: %v", dataset, err)
	}
	pl := &query.Pipeline{Dict: te.Dict, Policy: te.Policy, Fetch: te.fetch, Record: te.rec, Refs: refs}
	resp, err := pl.Run(ctx, query.Request{Principal: p, RequestID: "q", Query: &v1.QueryRequest{
		Dataset: dataset, Keys: map[string]string{by: applicant}, Purpose: "approval", PageSize: 100, Fields: fields,
	}})
	if err != nil {
		t.Fatalf("querying %s: %v", dataset, err)
	}
	if len(resp.GetRecords()) != len(res.Records) {
		t.Fatalf("query of %s returned %d records of %d", dataset, len(resp.GetRecords()), len(res.Records))
	}
	out := map[string]string{}
	for i, r := range resp.GetRecords() {
		out[res.Records[i].GetId()] = r.GetProvenance().GetRecordId()
	}
	return out
}

// TestProvenanceReleasesRecordIDLikeAQuery: an auto-filled field's
// provenance names the department's record id only where the form's own
// decision (over the fields it shows and chooses records by) gives the
// dataset's key fields of that record unmasked, as a query for the same
// fields would; otherwise the same opaque reference such a query gives, or
// none without a reference key. Key fields the form does not show are not
// decided, so never listed as withheld or returned, and the id is then a
// reference even when a grant would release the key.
func TestProvenanceReleasesRecordIDLikeAQuery(t *testing.T) {
	ent := sim().SampleEnterprise()
	per := sim().SamplePerson()
	noApplicantName := grantEdit{"demo-approval-permits", withoutField("applicant_name")}
	tests := []struct {
		name      string
		edits     []grantEdit
		noRefs    bool
		form      string
		applicant string
		// field is filled from dataset, looked up by by.
		field, dataset, by string
		// want: "id" the real id, "ref" its reference, "" none.
		want string
		// keyOnly: the key field is not on the form, so the audit record
		// must not name it and the id is a reference.
		keyOnly string
	}{
		{name: "key granted", form: "food_business_licence", applicant: ent.CreditCode,
			field: "premises_area", dataset: "resources.land_use_certificates", by: "holder_id", want: "id"},
		{name: "key withheld", edits: []grantEdit{{"demo-approval-certificates", withoutField("certificate_no")}},
			form: "food_business_licence", applicant: ent.CreditCode,
			field: "premises_area", dataset: "resources.land_use_certificates", by: "holder_id", want: "ref"},
		{name: "key masked", edits: []grantEdit{{"demo-approval-certificates", masking("certificate_no", v1.MaskKind_MASK_KIND_REDACT)}},
			form: "food_business_licence", applicant: ent.CreditCode,
			field: "premises_area", dataset: "resources.land_use_certificates", by: "holder_id", want: "ref"},
		{name: "key masked, and the record chosen by it", edits: []grantEdit{{"demo-approval-licences", masking("credit_code", v1.MaskKind_MASK_KIND_NAME)}},
			form: "food_business_licence", applicant: ent.CreditCode,
			field: "residence", dataset: "market.business_licences", by: "credit_code", want: "ref"},
		{name: "key withheld, no reference key", noRefs: true, edits: []grantEdit{{"demo-approval-certificates", withoutField("certificate_no")}},
			form: "food_business_licence", applicant: ent.CreditCode,
			field: "premises_area", dataset: "resources.land_use_certificates", by: "holder_id", want: ""},
		{name: "key not on the form, granted", edits: []grantEdit{noApplicantName},
			form: "tour_guide_certificate", applicant: per.ResidentID,
			field: "name", dataset: "resources.parcels", by: "holder_id", want: "ref", keyOnly: "resources.parcels.parcel_id"},
		{name: "key not on the form, granted, no reference key", noRefs: true, edits: []grantEdit{noApplicantName},
			form: "tour_guide_certificate", applicant: per.ResidentID,
			field: "name", dataset: "resources.parcels", by: "holder_id", want: "", keyOnly: "resources.parcels.parcel_id"},
		{name: "key granted, and the record chosen by it", form: "food_business_licence", applicant: ent.CreditCode,
			field: "residence", dataset: "market.business_licences", by: "credit_code", want: "id"},
		{name: "key not on the form, withheld", edits: []grantEdit{noApplicantName, {"demo-approval-parcels", withoutField("parcel_id")}},
			form: "tour_guide_certificate", applicant: per.ResidentID,
			field: "name", dataset: "resources.parcels", by: "holder_id", want: "ref", keyOnly: "resources.parcels.parcel_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs := testRefs(t)
			if tt.noRefs {
				refs = nil
			}
			grants := editedGrants(t, tt.edits...)
			te := newEngine(t, grants)
			te.Refs = refs
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: tt.applicant}, tt.form)
			if err != nil {
				t.Fatal(err)
			}
			f := fieldOf(t, resp, tt.field)
			if !f.GetFilled() || f.GetProvenance().GetDataset() != tt.dataset {
				t.Fatalf("%s: filled %v (%s) from %s, want filled from %s", tt.field, f.GetFilled(), f.GetUnfilledReason(), f.GetProvenance().GetDataset(), tt.dataset)
			}
			got := f.GetProvenance().GetRecordId()
			form, _ := te.Forms.Form(tt.form)
			shown := queryIDs(t, grants, refs, approvalBureau, tt.dataset, tt.by, tt.applicant, fieldsOf(form, tt.dataset))
			var real string
			for r, s := range shown {
				if r == got || s == got && got != "" {
					real = r
				}
			}
			switch tt.want {
			case "id":
				if real == "" || got != real || shown[real] != real {
					t.Errorf("record id %q, want the department's id (a query shows %v)", got, shown)
				}
			case "ref":
				if !strings.HasPrefix(got, query.RefPrefix) || real == "" || got != refs.Ref(tt.dataset, real) || shown[real] != got || strings.Contains(got, real) {
					t.Errorf("record id %q, want the reference a query shows (%v)", got, shown)
				}
			default:
				if got != "" {
					t.Errorf("record id %q, want none", got)
				}
				for _, s := range shown {
					if s != "" {
						t.Errorf("a query shows %q", s)
					}
				}
			}
			if tt.keyOnly != "" {
				ex := te.rec.exchanges()
				last := ex[len(ex)-1]
				if slices.Contains(last.FieldsWithheld, tt.keyOnly) || slices.Contains(last.FieldsReturned, tt.keyOnly) {
					t.Errorf("audit names %s, which the form does not show: returned %v withheld %v", tt.keyOnly, last.FieldsReturned, last.FieldsWithheld)
				}
			}
		})
	}
}

// TestKeyAloneReadsNothing: the key fields are decided with every
// auto-fill, but a grant that gives only them gives the form nothing, so
// the dataset is refused as before (NO_GRANT), not fetched, and its grant
// is not cited.
func TestKeyAloneReadsNothing(t *testing.T) {
	per := sim().SamplePerson()
	grants := editedGrants(t,
		grantEdit{"demo-approval-permits", withoutField("applicant_name")},
		grantEdit{"demo-approval-parcels", func(g *v1.Grant) { g.Fields = []string{"parcel_id"} }})
	te := newEngine(t, grants)
	te.Refs = testRefs(t)
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: per.ResidentID}, "tour_guide_certificate")
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, resp, "name"); f.GetFilled() {
		t.Errorf("name filled from %v", f.GetProvenance())
	}
	if n := te.fetch.callsOf("resources.parcels|holder_id=" + per.ResidentID); n != 0 {
		t.Errorf("parcels fetched %d times for a grant of the key alone", n)
	}
	ex := te.rec.exchanges()
	last := ex[len(ex)-1]
	if slices.Contains(last.GrantIDs, "demo-approval-parcels") || slices.ContainsFunc(last.FieldsWithheld, func(f string) bool { return f == "resources.parcels.parcel_id" }) {
		t.Errorf("audit cites the key-only grant or its key: grants %v withheld %v", last.GrantIDs, last.FieldsWithheld)
	}
}

// TestCorrectionKeepsTheRealRecordID: a correction raised by a caller who
// sees only the record's reference is queued with the department's id; the
// raiser, and anyone outside that department, is shown the reference, the
// department the id; the audit digests of its creation and resolution
// cover the reference, whoever was shown the id;
// and the field, and the same record's field on another form, show as
// disputed.
func TestCorrectionKeepsTheRealRecordID(t *testing.T) {
	const dataset = "resources.land_use_certificates"
	ctx := context.Background()
	sign := signEnterprise(t)
	desk := policy.Principal{SystemID: "resources-desk", Department: "resources"}
	admin := policy.Principal{SystemID: "ops", Roles: []string{"admin", "auditor"}}
	tests := []struct {
		name  string
		edits []grantEdit
		// refShown: the raiser sees the reference, not the id.
		refShown bool
	}{
		{name: "key withheld", edits: []grantEdit{{"demo-approval-certificates", withoutField("certificate_no")}}, refShown: true},
		{name: "key masked", edits: []grantEdit{{"demo-approval-certificates", masking("certificate_no", v1.MaskKind_MASK_KIND_REDACT)}}, refShown: true},
		{name: "key granted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refs := testRefs(t)
			te := newEngine(t, editedGrants(t, tt.edits...))
			te.Refs = refs
			r := Request{Principal: approvalBureau, RequestID: "f", ApplicantID: sign.CreditCode}
			before, err := te.FillForm(ctx, r, "outdoor_signboard_permit")
			if err != nil {
				t.Fatal(err)
			}
			rights := fieldOf(t, before, "site_rights_type")
			shownID := rights.GetProvenance().GetRecordId()
			if !rights.GetFilled() || shownID == "" || strings.HasPrefix(shownID, query.RefPrefix) != tt.refShown {
				t.Fatalf("site_rights_type: filled %v, record id %q", rights.GetFilled(), shownID)
			}

			c, err := te.CreateCorrection(ctx, approvalBureau, "c", &v1.CreateCorrectionRequest{
				Form: "outdoor_signboard_permit", ApplicantId: sign.CreditCode, Field: "site_rights_type", ProposedValue: "划拨",
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.GetRecordId() != shownID || c.GetDataset() != dataset {
				t.Errorf("raiser is shown record %q of %s, want %q as the auto-fill showed", c.GetRecordId(), c.GetDataset(), shownID)
			}
			stored, err := te.store.List(ctx, Filter{})
			if err != nil || len(stored) != 1 {
				t.Fatalf("stored = %v, %v", stored, err)
			}
			realID := stored[0].RecordID
			isCert := slices.ContainsFunc(sim().CertificatesOf(sign.CreditCode), func(x simulate.Certificate) bool { return x.CertificateNo == realID })
			if !isCert {
				t.Fatalf("stored record id %q is not a certificate number of the applicant", realID)
			}
			wantShown := realID
			if tt.refShown {
				wantShown = refs.Ref(dataset, realID)
			}
			if shownID != wantShown {
				t.Errorf("auto-fill showed %q, want %q", shownID, wantShown)
			}
			// The creation record's digest covers the correction returned
			// with the record id as its reference, whatever the raiser was
			// shown: never the real id, which an auditor could confirm
			// guesses of against the digest.
			ex := te.rec.exchanges()
			audited := proto.Clone(c).(*v1.Correction)
			audited.RecordId = refs.Ref(dataset, realID)
			withReal := proto.Clone(c).(*v1.Correction)
			withReal.RecordId = realID
			dRef, _ := correctionDigest(audited)
			dReal, _ := correctionDigest(withReal)
			if got := ex[len(ex)-1]; got.Kind != KindCorrection || got.ResponseDigest != dRef || got.ResponseDigest == dReal {
				t.Errorf("correction recorded with digest %s, want that of the correction with the reference (%s), not the real id (%s)", got.ResponseDigest, dRef, dReal)
			}

			// Who sees what in the queue.
			for _, who := range []struct {
				p    policy.Principal
				want string
			}{{desk, realID}, {admin, refs.Ref(dataset, realID)}, {approvalBureau, refs.Ref(dataset, realID)}} {
				l, err := te.ListCorrectionsAs(ctx, who.p, Filter{Department: "resources"})
				if err != nil || len(l) != 1 || l[0].GetRecordId() != who.want {
					t.Errorf("%s lists %v, %v; want record id %q", who.p, l, err, who.want)
				}
			}
			if l, err := te.ListCorrections(ctx, Filter{Department: "resources"}); err != nil || len(l) != 1 || l[0].GetRecordId() != realID {
				t.Errorf("department view = %v, %v; want record id %q", l, err, realID)
			}

			// Disputed on this form, and on another form drawing the same
			// field of the same record.
			after, err := te.FillForm(ctx, r, "outdoor_signboard_permit")
			if err != nil {
				t.Fatal(err)
			}
			if !fieldOf(t, after, "site_rights_type").GetDisputed() {
				t.Error("site_rights_type not disputed after the correction")
			}
			plan, err := te.FillForm(ctx, r, "construction_planning_permit")
			if err != nil {
				t.Fatal(err)
			}
			pf := fieldOf(t, plan, "rights_type")
			if pf.GetProvenance().GetRecordId() != shownID {
				t.Fatalf("construction_planning_permit.rights_type from record %q, want %q", pf.GetProvenance().GetRecordId(), shownID)
			}
			if !pf.GetDisputed() {
				t.Error("the same record's rights_type on another form is not disputed")
			}
			if fieldOf(t, plan, "builder_name").GetDisputed() {
				t.Error("an undisputed field shows as disputed")
			}

			// The department resolves it and is shown the id; the digest
			// recorded covers the reference.
			res, err := te.ResolveCorrection(ctx, desk, "x", c.GetId())
			if err != nil || res.GetRecordId() != realID {
				t.Fatalf("resolve = %v, %v; want record id %q", res, err, realID)
			}
			resolvedRef := proto.Clone(res).(*v1.Correction)
			resolvedRef.RecordId = refs.Ref(dataset, realID)
			dRef, _ = correctionDigest(resolvedRef)
			dReal, _ = correctionDigest(res)
			if got := te.rec.exchanges(); got[len(got)-1].ResponseDigest != dRef || got[len(got)-1].ResponseDigest == dReal {
				t.Errorf("resolution recorded with digest %s, want that of the resolved correction with the reference (%s), not the real id (%s)",
					got[len(got)-1].ResponseDigest, dRef, dReal)
			}
		})
	}
}
