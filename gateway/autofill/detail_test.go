package autofill

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/policy"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestUnfilledDetail: every field left unfilled and every material left
// unsatisfied says why in words (unfilled_detail, detail) beside its
// stable reason, naming the dataset, field or department concerned; and no
// detail quotes a value of a department record.
func TestUnfilledDetail(t *testing.T) {
	ent := sim().SampleEnterprise()
	const food, other = "000124004000", "000150012000"
	type want struct {
		// field or material (one of them) and its reason and detail.
		field, material, reason, detail string
	}
	tests := []struct {
		name      string
		grants    func(t *testing.T) []*v1.Grant
		setup     func(t *testing.T, te *testEngine)
		form      string
		applicant string
		want      []want
	}{
		{
			name: "selector withheld", grants: grantsWithout("demo-approval-permits", "decided_on"), form: "food_business_licence",
			want: []want{
				{field: "contact_phone", reason: ReasonSelectorNotGranted, detail: "approval.permits is chosen by decided_on, which the grant does not release"},
				{material: "原食品经营许可证正副本", reason: ReasonSelectorNotGranted, detail: "approval.permits is chosen by decided_on, which the grant does not release"},
			},
		},
		{
			name: "selector masked",
			grants: func(t *testing.T) []*v1.Grant {
				return editGrant(t, "demo-approval-permits", masking("decided_on", v1.MaskKind_MASK_KIND_REDACT))
			},
			form: "food_business_licence",
			want: []want{{field: "previous_permit_no", reason: ReasonSelectorNotGranted, detail: "approval.permits is chosen by decided_on, which the grant releases only masked"}},
		},
		{
			name: "by withheld", grants: grantsWithout("demo-approval-permits", "applicant_id"), form: "food_business_licence",
			want: []want{{field: "contact_phone", reason: ReasonSelectorNotGranted, detail: "approval.permits is chosen by applicant_id, which the grant does not release"}},
		},
		{
			name: "matched field of another source masked",
			grants: func(t *testing.T) []*v1.Grant {
				return editGrant(t, "demo-approval-certificates", masking("parcel_id", v1.MaskKind_MASK_KIND_REDACT))
			},
			form: "construction_planning_permit",
			want: []want{
				{field: "land_area_mu", reason: ReasonSelectorNotGranted, detail: "resources.parcels is chosen by matching resources.land_use_certificates.parcel_id, which the grant releases only masked"},
				{material: "宗地图及界址点坐标", reason: ReasonSelectorNotGranted, detail: "resources.parcels is chosen by matching resources.land_use_certificates.parcel_id, which the grant releases only masked"},
			},
		},
		{
			name: "selector released in another region only",
			grants: func(t *testing.T) []*v1.Grant {
				grants := editGrant(t, "demo-approval-permits", withoutField("decided_on"))
				for _, g := range policy.DemoGrants(time.Now()) {
					if g.GetId() == "demo-approval-permits" {
						g.Id, g.Jurisdiction = "demo-approval-permits-changan", "130102"
						grants = append(grants, g)
					}
				}
				return grants
			},
			setup: func(t *testing.T, te *testEngine) {
				te.Fetch = permitsFetcher{simFetcher: te.fetch, permits: []*v1.SourceRecord{foodPermit(t, "P-NEW", food, "130105", "2024-05-01")}}
			},
			form: "food_business_licence",
			want: []want{{field: "previous_permit_no", reason: ReasonSelectorNotGranted,
				detail: "approval.permits is chosen by decided_on, which the grant does not release unmasked for the regions of the applicant's records"}},
		},
		{
			name: "no grant", form: "business_registration_change",
			want: []want{
				{field: "industry", reason: ReasonNoGrant, detail: `no active grant lets system approval-bureau read market.enterprises for purpose "approval"`},
				{material: "企业登记档案（住所、行业、从业人员信息）", reason: ReasonNoGrant, detail: `no active grant lets system approval-bureau read market.enterprises for purpose "approval"`},
			},
		},
		{
			name: "grant expired",
			grants: func(t *testing.T) []*v1.Grant {
				return editGrant(t, "demo-approval-permits", func(g *v1.Grant) {
					g.ValidUntil = timestamppb.New(time.Now().Add(-time.Hour))
				})
			},
			form: "food_business_licence",
			want: []want{{field: "contact_phone", reason: ReasonNoGrant,
				detail: `no active grant lets system approval-bureau read approval.permits for purpose "approval" (the grant covering it has expired)`}},
		},
		{
			name: "granted for another purpose only",
			grants: func(t *testing.T) []*v1.Grant {
				return editGrant(t, "demo-approval-permits", func(g *v1.Grant) { g.Purposes = []string{"enforcement"} })
			},
			form: "food_business_licence",
			want: []want{{field: "contact_phone", reason: ReasonNoGrant,
				detail: `no active grant lets system approval-bureau read approval.permits for purpose "approval" (it is granted only for other purposes)`}},
		},
		{
			name: "field not granted", grants: grantsWithout("demo-approval-licences", "business_scope"), form: "food_business_licence",
			want: []want{{field: "business_scope", reason: ReasonFieldNotGranted, detail: "the grant does not release market.business_licences.business_scope"}},
		},
		{
			name: "material condition not granted", grants: grantsWithout("demo-approval-licences", "status"), form: "food_business_licence",
			want: []want{{material: "营业执照复印件", reason: ReasonFieldNotGranted,
				detail: "whether the market.business_licences record serves depends on status, which the grant does not release"}},
		},
		{
			name: "department down", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) { te.fetch.down["resources"] = true },
			want: []want{
				{field: "premises_area", reason: ReasonDepartmentUnavailable,
					detail: "department resources did not answer the lookup of resources.land_use_certificates; the rest of the form is still filled"},
				{material: "经营场所合法使用证明（不动产权证书复印件）", reason: ReasonDepartmentUnavailable,
					detail: "department resources did not answer the lookup of resources.land_use_certificates; the rest of the form is still filled"},
			},
		},
		{
			name: "unknown applicant", form: "food_business_licence", applicant: "91350100M000100Y43",
			want: []want{{field: "operator_name", reason: ReasonNotFound, detail: "department market holds no market.business_licences record of the applicant"}},
		},
		{
			name: "no record meets the conditions", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.Fetch = permitsFetcher{simFetcher: te.fetch, permits: []*v1.SourceRecord{foodPermit(t, "P-SIGN", other, "130102", "2024-05-01")}}
			},
			want: []want{{field: "previous_permit_no", reason: ReasonNotFound,
				detail: "no approval.permits record of the applicant within the grant's jurisdiction meets the form's conditions on decision, matter_code"}},
		},
		{
			name: "records outside the jurisdiction only", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.Fetch = permitsFetcher{simFetcher: te.fetch, permits: []*v1.SourceRecord{foodPermit(t, "P-FAR", other, "130503", "2024-05-01")}}
			},
			want: []want{{field: "previous_permit_no", reason: ReasonOutsideJurisdiction,
				detail: "department approval holds approval.permits records of the applicant outside the grant's jurisdiction (1301), and none within it qualifies"}},
		},
		{
			name: "empty value", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
					if dataset == "approval.permits" {
						for _, r := range recs {
							r.Fields.Fields["contact_phone"] = structpb.NewStringValue("")
						}
					}
				}
			},
			want: []want{{field: "contact_phone", reason: ReasonNotFound, detail: "the chosen approval.permits record has no value for contact_phone"}},
		},
		{
			name: "transform failed", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
					if dataset == "market.business_licences" {
						for _, r := range recs {
							r.Fields.Fields["established_on"] = structpb.NewStringValue("二〇一九年")
						}
					}
				}
			},
			want: []want{{field: "established_on", reason: ReasonTransformFailed,
				detail: "the department's value of market.business_licences.established_on could not be transformed as the form template says"}},
		},
		{
			name: "sources disagree", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
					if dataset == "approval.permits" {
						for _, r := range recs {
							r.Fields.Fields["applicant_name"] = structpb.NewStringValue("石家庄旧名称有限公司")
						}
					}
				}
			},
			want: []want{{field: "operator_name", reason: ReasonSourcesDisagree,
				detail: "market.business_licences.name and approval.permits.applicant_name differ; both values are listed"}},
		},
		{
			name: "condition not met", form: "food_business_licence",
			setup: func(t *testing.T, te *testEngine) {
				te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
					if dataset == "market.business_licences" {
						for _, r := range recs {
							r.Fields.Fields["status"] = structpb.NewStringValue("注销")
						}
					}
				}
			},
			want: []want{
				{material: "营业执照复印件", reason: ReasonConditionNotMet, detail: "the market.business_licences record's status is not 存续"},
				{material: "食品安全管理制度文本", reason: ReasonNoSource, detail: "no department holds this material; the applicant hands it in"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var grants []*v1.Grant
			if tc.grants != nil {
				grants = tc.grants(t)
			}
			te := newEngine(t, grants)
			if tc.setup != nil {
				tc.setup(t, te)
			}
			// Every string a department returned, to check no detail
			// quotes one.
			seen := &recordValues{}
			edit := te.fetch.edit
			te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
				if edit != nil {
					edit(dataset, recs)
				}
				seen.add(recs)
			}
			if pf, ok := te.Fetch.(permitsFetcher); ok {
				for _, r := range pf.permits {
					seen.add([]*v1.SourceRecord{r})
				}
			}
			applicant := tc.applicant
			if applicant == "" {
				applicant = ent.CreditCode
			}
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: applicant}, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				var reason, detail string
				if w.field != "" {
					f := fieldOf(t, resp, w.field)
					reason, detail = f.GetUnfilledReason(), f.GetUnfilledDetail()
				} else {
					m := materialOf(t, resp, w.material)
					reason, detail = m.GetReason(), m.GetDetail()
				}
				if reason != w.reason {
					t.Errorf("%s%s: reason %q, want %q", w.field, w.material, reason, w.reason)
				}
				if detail != w.detail {
					t.Errorf("%s%s: detail\n got %q\nwant %q", w.field, w.material, detail, w.detail)
				}
			}
			for _, f := range resp.GetFields() {
				if f.GetFilled() != (f.GetUnfilledDetail() == "") {
					t.Errorf("%s: filled %v with detail %q", f.GetName(), f.GetFilled(), f.GetUnfilledDetail())
				}
				seen.check(t, f.GetName(), f.GetUnfilledDetail())
			}
			for _, m := range resp.GetMaterials() {
				if m.GetSatisfied() != (m.GetDetail() == "") {
					t.Errorf("%s: satisfied %v with detail %q", m.GetName(), m.GetSatisfied(), m.GetDetail())
				}
				seen.check(t, m.GetName(), m.GetDetail())
			}
		})
	}
}

func grantsWithout(id, field string) func(t *testing.T) []*v1.Grant {
	return func(t *testing.T) []*v1.Grant { return editGrant(t, id, withoutField(field)) }
}

// recordValues collects the string values of department records.
type recordValues struct {
	mu   sync.Mutex
	vals []string
}

func (r *recordValues) add(recs []*v1.SourceRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range recs {
		for _, v := range rec.GetFields().GetFields() {
			// Short values (状态 words such as 存续, which the templates'
			// conditions quote) are not distinctive.
			if s := v.GetStringValue(); utf8.RuneCountInString(s) > 2 && !slices.Contains(r.vals, s) {
				r.vals = append(r.vals, s)
			}
		}
	}
}

func (r *recordValues) check(t *testing.T, name, detail string) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range r.vals {
		if strings.Contains(detail, v) {
			t.Errorf("%s: detail %q quotes the department value %q", name, detail, v)
		}
	}
}
