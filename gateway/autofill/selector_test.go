package autofill

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// editGrant returns the demo grants with the grant id changed by edit.
func editGrant(t *testing.T, id string, edit func(g *v1.Grant)) []*v1.Grant {
	t.Helper()
	grants := policy.DemoGrants(time.Now())
	for _, g := range grants {
		if g.GetId() == id {
			edit(g)
			return grants
		}
	}
	t.Fatalf("no demo grant %s", id)
	return nil
}

func withoutField(field string) func(g *v1.Grant) {
	return func(g *v1.Grant) {
		g.Fields = slices.DeleteFunc(g.Fields, func(f string) bool { return f == field })
	}
}

func masking(field string, m v1.MaskKind) func(g *v1.Grant) {
	return func(g *v1.Grant) {
		g.Masks = append(g.Masks, &v1.FieldMask{Field: field, Mask: m})
	}
}

// TestSourceSelectorNeedsTheField: a source that chooses its record by a
// field (where, latest, match, by) the grant withholds or only masks must
// not choose by it: the fields it would fill stay unfilled with
// SELECTOR_NOT_GRANTED, its materials too, the department is not asked,
// and the audit record lists the selector field as withheld.
func TestSourceSelectorNeedsTheField(t *testing.T) {
	ent := sim().SampleEnterprise()
	tests := []struct {
		name  string
		grant string
		edit  func(g *v1.Grant)
		form  string
		// unfilled fields and unsatisfied materials of the source.
		fields    []string
		materials []string
		// withheld is the selector field named in the audit record.
		withheld string
		// unasked is the lookup the department must not be asked.
		unasked string
		// filled are fields of other sources that still fill.
		filled []string
	}{
		{
			name: "latest withheld", grant: "demo-approval-permits", edit: withoutField("decided_on"),
			form: "food_business_licence", fields: []string{"contact_phone", "previous_permit_no"},
			materials: []string{"原食品经营许可证正副本"}, withheld: "approval.permits.decided_on",
			unasked: "approval.permits|applicant_id=" + ent.CreditCode, filled: []string{"operator_name", "residence"},
		},
		{
			name: "latest masked", grant: "demo-approval-permits", edit: masking("decided_on", v1.MaskKind_MASK_KIND_REDACT),
			form: "food_business_licence", fields: []string{"contact_phone", "previous_permit_no"},
			materials: []string{"原食品经营许可证正副本"}, withheld: "approval.permits.decided_on",
			unasked: "approval.permits|applicant_id=" + ent.CreditCode, filled: []string{"operator_name"},
		},
		{
			name: "where withheld", grant: "demo-approval-permits", edit: withoutField("matter_code"),
			form: "food_business_licence", fields: []string{"contact_phone", "previous_permit_no"},
			materials: []string{"原食品经营许可证正副本"}, withheld: "approval.permits.matter_code",
			unasked: "approval.permits|applicant_id=" + ent.CreditCode, filled: []string{"operator_name"},
		},
		{
			name: "where masked", grant: "demo-approval-permits", edit: masking("decision", v1.MaskKind_MASK_KIND_REDACT),
			form: "food_business_licence", fields: []string{"contact_phone", "previous_permit_no"},
			materials: []string{"原食品经营许可证正副本"}, withheld: "approval.permits.decision",
			unasked: "approval.permits|applicant_id=" + ent.CreditCode, filled: []string{"operator_name"},
		},
		{
			name: "by withheld", grant: "demo-approval-permits", edit: withoutField("applicant_id"),
			form: "food_business_licence", fields: []string{"contact_phone", "previous_permit_no"},
			materials: []string{"原食品经营许可证正副本"}, withheld: "approval.permits.applicant_id",
			unasked: "approval.permits|applicant_id=" + ent.CreditCode, filled: []string{"operator_name"},
		},
		{
			name: "latest withheld on certificates", grant: "demo-approval-certificates", edit: withoutField("issued_on"),
			form: "food_business_licence", fields: []string{"premises_certificate_no", "premises_area"},
			materials: []string{"经营场所合法使用证明（不动产权证书复印件）"}, withheld: "resources.land_use_certificates.issued_on",
			unasked: "resources.land_use_certificates|holder_id=" + ent.CreditCode, filled: []string{"previous_permit_no"},
		},
		{
			name: "match field withheld", grant: "demo-approval-parcels", edit: withoutField("parcel_id"),
			form: "construction_planning_permit", fields: []string{"site_region", "land_area_mu"},
			materials: []string{"宗地图及界址点坐标"}, withheld: "resources.parcels.parcel_id",
			unasked: "resources.parcels|holder_id=" + ent.CreditCode, filled: []string{"certificate_no"},
		},
		{
			name: "matched field masked", grant: "demo-approval-certificates", edit: masking("parcel_id", v1.MaskKind_MASK_KIND_REDACT),
			form: "construction_planning_permit", fields: []string{"site_region", "land_area_mu"},
			materials: []string{"宗地图及界址点坐标"}, withheld: "resources.land_use_certificates.parcel_id",
			unasked: "resources.parcels|holder_id=" + ent.CreditCode, filled: []string{"certificate_no"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			te := newEngine(t, editGrant(t, tc.grant, tc.edit))
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: ent.CreditCode}, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			// The detail names the selector field (the audit record's
			// name of it, less its dataset when it is the source's own).
			selField := tc.withheld[strings.LastIndex(tc.withheld, ".")+1:]
			for _, name := range tc.fields {
				if f := fieldOf(t, resp, name); f.GetFilled() || f.GetUnfilledReason() != ReasonSelectorNotGranted {
					t.Errorf("%s: filled %v (%v) reason %q, want SELECTOR_NOT_GRANTED", name, f.GetFilled(), f.GetValue().AsInterface(), f.GetUnfilledReason())
				} else if d := f.GetUnfilledDetail(); !strings.Contains(d, " chosen by ") || !strings.Contains(d, selField) {
					t.Errorf("%s: detail %q does not name the selector %s", name, d, tc.withheld)
				}
			}
			for _, name := range tc.materials {
				if m := materialOf(t, resp, name); m.GetSatisfied() || m.GetReason() != ReasonSelectorNotGranted || m.GetProvenance() != nil {
					t.Errorf("%s: satisfied %v reason %q provenance %v, want SELECTOR_NOT_GRANTED", name, m.GetSatisfied(), m.GetReason(), m.GetProvenance())
				}
			}
			for _, name := range tc.filled {
				if f := fieldOf(t, resp, name); !f.GetFilled() {
					t.Errorf("%s unfilled (%s), but its source selects by granted fields", name, f.GetUnfilledReason())
				}
			}
			if tc.unasked != "" {
				if n := te.fetch.callsOf(tc.unasked); n != 0 {
					t.Errorf("%s fetched %d times for a source that cannot choose a record", tc.unasked, n)
				}
			}
			ex := te.rec.exchanges()
			if len(ex) != 1 {
				t.Fatalf("recorded %d exchanges", len(ex))
			}
			if !slices.Contains(ex[0].FieldsWithheld, tc.withheld) {
				t.Errorf("withheld = %v, want %s", ex[0].FieldsWithheld, tc.withheld)
			}
			for _, name := range tc.fields {
				src := fieldOf(t, resp, name).GetProvenance().GetDataset()
				if src != "" {
					t.Errorf("%s has provenance %s", name, src)
				}
			}
		})
	}
}

// TestSelectorMaskedByStillFills: the applicant's identifier a source is
// looked up by may be masked, as a query's keys may: the caller already
// holds it.
func TestSelectorMaskedByStillFills(t *testing.T) {
	ent := sim().SampleEnterprise()
	te := newEngine(t, editGrant(t, "demo-approval-permits", masking("applicant_id", v1.MaskKind_MASK_KIND_RESIDENT_ID)))
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"contact_phone", "previous_permit_no"} {
		if f := fieldOf(t, resp, name); !f.GetFilled() {
			t.Errorf("%s unfilled (%s) with applicant_id granted masked", name, f.GetUnfilledReason())
		}
	}
}

// TestDemoGrantsSelectEverySource: the demo grants release every selector
// field of every form, so no field of the demo stays unfilled for it.
func TestDemoGrantsSelectEverySource(t *testing.T) {
	te := newEngine(t, nil)
	ent, per := sim().SampleEnterprise(), sim().SamplePerson()
	for _, form := range te.ListForms().GetForms() {
		id := ent.CreditCode
		if form.GetApplicantKind() == "person" {
			id = per.ResidentID
		}
		resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: id}, form.GetId())
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range resp.GetFields() {
			if f.GetUnfilledReason() == ReasonSelectorNotGranted {
				t.Errorf("%s.%s: SELECTOR_NOT_GRANTED under the demo grants", form.GetId(), f.GetName())
			}
		}
		for _, m := range resp.GetMaterials() {
			if m.GetReason() == ReasonSelectorNotGranted {
				t.Errorf("%s material %s: SELECTOR_NOT_GRANTED under the demo grants", form.GetId(), m.GetName())
			}
		}
	}
}

// permitsFetcher serves the demo data but answers approval.permits lookups
// with the records given.
type permitsFetcher struct {
	*simFetcher
	permits []*v1.SourceRecord
}

func (f permitsFetcher) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	if ds.Name != "approval.permits" {
		return f.simFetcher.Fetch(ctx, ds, req)
	}
	recs := make([]*v1.SourceRecord, len(f.permits))
	for i, r := range f.permits {
		recs[i] = proto.CloneOf(r)
	}
	return query.Result{Records: recs, Delivery: v1.Delivery_DELIVERY_LIVE, FetchedAt: time.Now()}, nil
}

// foodPermit is a food business permit of the sample enterprise.
func foodPermit(t *testing.T, id, matter, region, decidedOn string) *v1.SourceRecord {
	t.Helper()
	ent := sim().SampleEnterprise()
	s, err := structpb.NewStruct(map[string]any{
		"permit_id": id, "matter_code": matter, "matter_name": "食品经营许可", "applicant_name": ent.Name,
		"applicant_id": ent.CreditCode, "applicant_kind": "enterprise", "decision": "准予许可", "decided_on": decidedOn,
		"valid_from": decidedOn, "valid_until": "2029-01-01", "authority": "石家庄市行政审批局", "region_code": region,
		"site_address": ent.Address, "contact_phone": "13800000000", "status": "有效",
	})
	if err != nil {
		t.Fatal(err)
	}
	return &v1.SourceRecord{Id: id, Fields: s}
}

// TestSelectorPerRegion: the grants may release a selector field for the
// records of one region and not another. A record is chosen only among
// those whose selector fields the grants for its own region release, as a
// query's filter returns only such records; when none remains because of
// that, the reason is SELECTOR_NOT_GRANTED. Records outside the
// jurisdiction are set aside before any selector value is read, so the
// reason never tells whether one of them would have matched.
func TestSelectorPerRegion(t *testing.T) {
	const food, other = "000124004000", "000150012000"
	// The approval bureau sees permit dates only in 长安区 (130102); in
	// the rest of Shijiazhuang it sees the permits without their dates.
	regional := func(t *testing.T) []*v1.Grant {
		grants := editGrant(t, "demo-approval-permits", withoutField("decided_on"))
		var full *v1.Grant
		for _, g := range policy.DemoGrants(time.Now()) {
			if g.GetId() == "demo-approval-permits" {
				full = g
			}
		}
		full.Id, full.Jurisdiction = "demo-approval-permits-changan", "130102"
		return append(grants, full)
	}
	tests := []struct {
		name    string
		grants  func(t *testing.T) []*v1.Grant
		permits []*v1.SourceRecord
		// want is the permit chosen, or "" with reason.
		want, reason string
	}{
		{
			name: "newer permit whose date is withheld is passed over", grants: regional,
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-NEW", food, "130105", "2024-05-01"),
				foodPermit(t, "P-OLD", food, "130102", "2021-03-01"),
			},
			want: "P-OLD",
		},
		{
			name: "only permits whose date is withheld", grants: regional,
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-NEW", food, "130105", "2024-05-01"),
			},
			reason: ReasonSelectorNotGranted,
		},
		{
			name: "dates released in both regions", grants: func(*testing.T) []*v1.Grant { return policy.DemoGrants(time.Now()) },
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-NEW", food, "130105", "2024-05-01"),
				foodPermit(t, "P-OLD", food, "130102", "2021-03-01"),
			},
			want: "P-NEW",
		},
		{
			name: "matching permit outside the jurisdiction", grants: func(*testing.T) []*v1.Grant { return policy.DemoGrants(time.Now()) },
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-FAR", food, "130503", "2024-05-01"),
			},
			reason: ReasonOutsideJurisdiction,
		},
		{
			// Were this NOT_FOUND, the reason would tell the matter of a
			// permit the caller may not read.
			name: "other permit outside the jurisdiction", grants: func(*testing.T) []*v1.Grant { return policy.DemoGrants(time.Now()) },
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-FAR", other, "130503", "2024-05-01"),
			},
			reason: ReasonOutsideJurisdiction,
		},
		{
			name: "no matching permit in the jurisdiction", grants: func(*testing.T) []*v1.Grant { return policy.DemoGrants(time.Now()) },
			permits: []*v1.SourceRecord{
				foodPermit(t, "P-SIGN", other, "130102", "2024-05-01"),
			},
			reason: ReasonNotFound,
		},
	}
	ent := sim().SampleEnterprise()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			te := newEngine(t, tc.grants(t))
			te.Fetch = permitsFetcher{simFetcher: te.fetch, permits: tc.permits}
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
			if err != nil {
				t.Fatal(err)
			}
			f := fieldOf(t, resp, "previous_permit_no")
			if tc.want != "" {
				if !f.GetFilled() || f.GetValue().GetStringValue() != tc.want {
					t.Errorf("previous_permit_no = %v (filled %v, %s), want %s", f.GetValue().AsInterface(), f.GetFilled(), f.GetUnfilledReason(), tc.want)
				}
				return
			}
			if f.GetFilled() || f.GetUnfilledReason() != tc.reason {
				t.Errorf("previous_permit_no = %v (filled %v), reason %q, want %s", f.GetValue().AsInterface(), f.GetFilled(), f.GetUnfilledReason(), tc.reason)
			}
			if m := materialOf(t, resp, "原食品经营许可证正副本"); m.GetSatisfied() || m.GetReason() != tc.reason {
				t.Errorf("permit material: satisfied %v reason %q, want %s", m.GetSatisfied(), m.GetReason(), tc.reason)
			}
			if tc.reason == ReasonSelectorNotGranted {
				ex := te.rec.exchanges()
				if last := ex[len(ex)-1]; !slices.Contains(last.FieldsWithheld, "approval.permits.decided_on") {
					t.Errorf("withheld = %v", last.FieldsWithheld)
				}
			}
		})
	}
	if !strings.HasPrefix(ent.RegionCode, "1301") {
		t.Fatalf("the sample enterprise lies in %s, outside the approval bureau's jurisdiction", ent.RegionCode)
	}
}

// TestMatchedFieldMaskedInTheRecordsRegion: the grants release the field a
// match compares with unmasked only in another region than the chosen
// record's, so the match may not compare with it.
func TestMatchedFieldMaskedInTheRecordsRegion(t *testing.T) {
	ent := sim().SampleEnterprise()
	grants := editGrant(t, "demo-approval-certificates", masking("parcel_id", v1.MaskKind_MASK_KIND_REDACT))
	for _, g := range policy.DemoGrants(time.Now()) {
		if g.GetId() == "demo-approval-certificates" {
			// No demo record lies in 130199.
			g.Id, g.Jurisdiction = "demo-approval-certificates-elsewhere", "130199"
			grants = append(grants, g)
		}
	}
	te := newEngine(t, grants)
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "construction_planning_permit")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"site_region", "land_area_mu"} {
		if f := fieldOf(t, resp, name); f.GetFilled() || f.GetUnfilledReason() != ReasonSelectorNotGranted {
			t.Errorf("%s: filled %v (%v) reason %q, want SELECTOR_NOT_GRANTED", name, f.GetFilled(), f.GetValue().AsInterface(), f.GetUnfilledReason())
		}
	}
	if f := fieldOf(t, resp, "certificate_no"); !f.GetFilled() {
		t.Errorf("certificate_no unfilled (%s)", f.GetUnfilledReason())
	}
	ex := te.rec.exchanges()
	if last := ex[len(ex)-1]; !slices.Contains(last.FieldsWithheld, "resources.land_use_certificates.parcel_id") {
		t.Errorf("withheld = %v", last.FieldsWithheld)
	}
}
