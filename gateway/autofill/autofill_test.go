package autofill

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/connectors/simulate"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/schemas/apierr"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// signEnterprise finds an enterprise of the demo data with an outdoor sign
// permit in force and a land-use certificate.
func signEnterprise(t *testing.T) simulate.Enterprise {
	t.Helper()
	d := sim()
	for _, e := range d.Enterprises {
		if e.Status != "存续" || e.RegionCode[:4] != "1301" || len(d.CertificatesOf(e.CreditCode)) == 0 {
			continue
		}
		for _, p := range d.PermitsOf(e.CreditCode) {
			if p.MatterCode == "000150012000" && p.Status == "有效" {
				return e
			}
		}
	}
	t.Fatal("no enterprise with a sign permit in the demo data")
	return simulate.Enterprise{}
}

func TestFormsFillFromDemoData(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	per := sim().SamplePerson()
	sign := signEnterprise(t)
	tests := []struct {
		form, applicant string
		// wantFilled are fields that must be filled with their value.
		want map[string]any
		// minFilled is the least number of filled fields.
		minFilled, minMaterials uint32
	}{
		{"food_business_licence", ent.CreditCode, map[string]any{
			"operator_name": ent.Name, "credit_code": ent.CreditCode, "residence": ent.Address,
		}, 18, 3},
		{"construction_planning_permit", ent.CreditCode, map[string]any{
			"builder_name": ent.Name, "parcel_id": sim().CertificatesOf(ent.CreditCode)[0].ParcelID,
		}, 16, 3},
		{"tour_guide_certificate", per.ResidentID, map[string]any{
			"name": per.Name, "resident_id": per.ResidentID, "gender": per.Gender, "contact_phone": per.Phone,
		}, 13, 1},
		{"outdoor_signboard_permit", sign.CreditCode, map[string]any{
			"applicant_name": sign.Name, "legal_representative": sign.LegalRepresentative,
		}, 12, 3},
		{"business_registration_change", ent.CreditCode, map[string]any{
			"enterprise_name": ent.Name, "registered_capital_yuan": func() any { l, _ := sim().Licence(ent.CreditCode); return l.RegisteredCapital * 10000 }(),
		}, 15, 1},
	}
	for _, tc := range tests {
		t.Run(tc.form, func(t *testing.T) {
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: tc.applicant}, tc.form)
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				f := fieldOf(t, resp, name)
				if !f.GetFilled() || f.GetValue().AsInterface() != want {
					t.Errorf("%s = %v (filled %v, %s), want %v", name, f.GetValue().AsInterface(), f.GetFilled(), f.GetUnfilledReason(), want)
				}
				if f.GetProvenance().GetDataset() == "" || f.GetProvenance().GetRecordId() == "" || f.GetProvenance().GetDelivery() != v1.Delivery_DELIVERY_LIVE {
					t.Errorf("%s provenance = %v", name, f.GetProvenance())
				}
			}
			if s := resp.GetSummary(); s.GetFieldsFilled() < tc.minFilled || s.GetMaterialsSatisfied() < tc.minMaterials {
				t.Errorf("summary = %v, want at least %d fields and %d materials", s, tc.minFilled, tc.minMaterials)
			}
			if resp.GetReceipt() == nil {
				t.Error("no receipt")
			}
		})
	}
}

func TestTransformsAndMasks(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	lic, _ := sim().Licence(ent.CreditCode)
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "business_registration_change")
	if err != nil {
		t.Fatal(err)
	}
	id := fieldOf(t, resp, "legal_representative_id")
	if !id.GetFilled() || !id.GetMasked() || id.GetValue().GetStringValue() != policy.ApplyMask(v1.MaskKind_MASK_KIND_RESIDENT_ID, lic.LegalRepresentativeID) {
		t.Errorf("legal_representative_id = %v masked %v", id.GetValue(), id.GetMasked())
	}
	if f := fieldOf(t, resp, "enterprise_name"); f.GetMasked() || f.GetProvenance().GetDepartment() != "market" || f.GetProvenance().GetRecordId() != ent.CreditCode {
		t.Errorf("enterprise_name = %v", f)
	}
	est, _ := time.Parse(time.DateOnly, lic.EstablishedOn)
	if got, want := fieldOf(t, resp, "established_on").GetValue().GetStringValue(), est.Format("2006年01月02日"); got != want {
		t.Errorf("established_on = %s, want %s", got, want)
	}
	if got := fieldOf(t, resp, "residence_region").GetValue().GetStringValue(); !strings.HasPrefix(got, "河北省石家庄市") {
		t.Errorf("residence_region = %s", got)
	}
	wantTerm := "长期"
	if lic.OperatingUntil != "" {
		u, _ := time.Parse(time.DateOnly, lic.OperatingUntil)
		wantTerm = u.Format("2006年01月02日")
	}
	if got := fieldOf(t, resp, "operating_until").GetValue().GetStringValue(); got != wantTerm {
		t.Errorf("operating_until = %s, want %s", got, wantTerm)
	}
}

func TestNoGrantAndNotFound(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	ctx := context.Background()

	// The approval bureau has no grant on the enterprise register.
	resp, err := te.FillForm(ctx, Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "business_registration_change")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"industry", "contact_phone", "employees"} {
		if f := fieldOf(t, resp, name); f.GetFilled() || f.GetUnfilledReason() != ReasonNoGrant {
			t.Errorf("%s: filled %v reason %s, want NO_GRANT", name, f.GetFilled(), f.GetUnfilledReason())
		}
	}
	if m := materialOf(t, resp, "企业登记档案（住所、行业、从业人员信息）"); m.GetSatisfied() || m.GetReason() != ReasonNoGrant {
		t.Errorf("register material = %v", m)
	}
	if te.fetch.callsOf("market.enterprises|credit_code="+ent.CreditCode) != 0 {
		t.Error("a dataset without a grant was fetched")
	}

	// A valid credit code no department knows.
	const unknown = "91350100M000100Y43"
	resp, err = te.FillForm(ctx, Request{Principal: approvalBureau, ApplicantID: unknown}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range resp.GetFields() {
		if f.GetFilled() || f.GetUnfilledReason() != ReasonNotFound {
			t.Errorf("%s: filled %v reason %s, want NOT_FOUND", f.GetName(), f.GetFilled(), f.GetUnfilledReason())
		}
	}
	if resp.GetSummary().GetFieldsFilled() != 0 || resp.GetSummary().GetMaterialsSatisfied() != 0 {
		t.Errorf("summary = %v", resp.GetSummary())
	}

	// A caller without any grant.
	stranger := policy.Principal{SystemID: "stranger", Department: "tourism"}
	resp, err = te.FillForm(ctx, Request{Principal: stranger, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range resp.GetFields() {
		if f.GetUnfilledReason() != ReasonNoGrant {
			t.Errorf("%s: reason %s, want NO_GRANT", f.GetName(), f.GetUnfilledReason())
		}
	}
	ex := te.rec.exchanges()
	if last := ex[len(ex)-1]; last.Decision != "deny" || last.DenyReason != ReasonNoGrant || len(last.FieldsWithheld) == 0 {
		t.Errorf("recorded %+v", last)
	}
}

func TestFieldNotGranted(t *testing.T) {
	grants := policy.DemoGrants(time.Now())
	for _, g := range grants {
		if g.GetId() == "demo-approval-licences" {
			g.Fields = slices.DeleteFunc(g.Fields, func(f string) bool { return f == "business_scope" })
		}
	}
	te := newEngine(t, grants)
	ent := sim().SampleEnterprise()
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, resp, "business_scope"); f.GetFilled() || f.GetUnfilledReason() != ReasonFieldNotGranted {
		t.Errorf("business_scope: filled %v reason %s", f.GetFilled(), f.GetUnfilledReason())
	}
	if f := fieldOf(t, resp, "operator_name"); !f.GetFilled() {
		t.Errorf("operator_name unfilled: %s", f.GetUnfilledReason())
	}
	ex := te.rec.exchanges()
	if last := ex[len(ex)-1]; last.Decision != "partial" || !slices.Contains(last.FieldsWithheld, "market.business_licences.business_scope") {
		t.Errorf("recorded %+v", last)
	}
}

func TestOutsideJurisdiction(t *testing.T) {
	te := newEngine(t, nil)
	var far simulate.Enterprise
	for _, e := range sim().Enterprises {
		if !strings.HasPrefix(e.RegionCode, "1301") {
			far = e
			break
		}
	}
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: far.CreditCode}, "business_registration_change")
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, resp, "enterprise_name"); f.GetFilled() || f.GetUnfilledReason() != ReasonOutsideJurisdiction {
		t.Errorf("enterprise_name: filled %v reason %s, want OUTSIDE_JURISDICTION", f.GetFilled(), f.GetUnfilledReason())
	}
}

func TestSourcesDisagree(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	te.fetch.edit = func(dataset string, recs []*v1.SourceRecord) {
		if dataset == "approval.permits" {
			for _, r := range recs {
				r.Fields.Fields["applicant_name"] = structpb.NewStringValue("石家庄旧名称有限公司")
			}
		}
	}
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	f := fieldOf(t, resp, "operator_name")
	if f.GetFilled() || f.GetUnfilledReason() != ReasonSourcesDisagree {
		t.Fatalf("operator_name: filled %v reason %s", f.GetFilled(), f.GetUnfilledReason())
	}
	if len(f.GetConflictingValues()) != 2 || f.GetConflictingValues()[0].GetStringValue() != ent.Name ||
		f.GetConflictingValues()[1].GetStringValue() != "石家庄旧名称有限公司" {
		t.Errorf("conflicting values = %v", f.GetConflictingValues())
	}
	if len(f.GetConflictingSources()) != 2 || f.GetConflictingSources()[0].GetDataset() != "market.business_licences" ||
		f.GetConflictingSources()[1].GetDataset() != "approval.permits" {
		t.Errorf("conflicting sources = %v", f.GetConflictingSources())
	}
}

func TestBundleAsksEachDepartmentOnce(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	resp, err := te.FillBundle(context.Background(), Request{Principal: approvalBureau, RequestID: "b1", ApplicantID: ent.CreditCode}, "open_restaurant")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.GetForms()) != 3 || resp.GetReceipt() == nil {
		t.Fatalf("bundle = %d forms, receipt %v", len(resp.GetForms()), resp.GetReceipt())
	}
	// Three forms read the licence, two the permits and the certificates.
	for _, key := range []string{
		"market.business_licences|credit_code=" + ent.CreditCode,
		"approval.permits|applicant_id=" + ent.CreditCode,
		"resources.land_use_certificates|holder_id=" + ent.CreditCode,
	} {
		if n := te.fetch.callsOf(key); n != 1 {
			t.Errorf("%s fetched %d times, want once", key, n)
		}
	}
	var total uint32
	for _, f := range resp.GetForms() {
		total += f.GetSummary().GetFieldsTotal()
		if f.GetReceipt() != nil {
			t.Error("a form of a bundle carries its own receipt")
		}
	}
	if resp.GetSummary().GetFieldsTotal() != total {
		t.Errorf("summary total %d, want %d", resp.GetSummary().GetFieldsTotal(), total)
	}
	ex := te.rec.exchanges()
	if len(ex) != 1 {
		t.Fatalf("recorded %d exchanges, want one for the bundle", len(ex))
	}
	if ex[0].Kind != KindAutofill || ex[0].Dataset != "approval.permits,market.business_licences,resources.land_use_certificates" ||
		!slices.Contains(ex[0].FieldsReturned, "market.business_licences.name") || ex[0].Subjects[0] != ent.CreditCode ||
		ex[0].Delivery != "live" || ex[0].ResponseDigest == "" || len(ex[0].GrantIDs) == 0 {
		t.Errorf("recorded %+v", ex[0])
	}
}

func TestDepartmentDownMidBundle(t *testing.T) {
	te := newEngine(t, nil)
	te.fetch.down["resources"] = true
	ent := sim().SampleEnterprise()
	resp, err := te.FillBundle(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "open_restaurant")
	if err != nil {
		t.Fatal(err)
	}
	food := resp.GetForms()[1]
	if food.GetForm() != "food_business_licence" {
		t.Fatalf("second form is %s", food.GetForm())
	}
	for _, name := range []string{"premises_certificate_no", "premises_area"} {
		if f := fieldOf(t, food, name); f.GetFilled() || f.GetUnfilledReason() != ReasonDepartmentUnavailable {
			t.Errorf("%s: filled %v reason %s, want DEPARTMENT_UNAVAILABLE", name, f.GetFilled(), f.GetUnfilledReason())
		}
	}
	if m := materialOf(t, food, "经营场所合法使用证明（不动产权证书复印件）"); m.GetSatisfied() || m.GetReason() != ReasonDepartmentUnavailable {
		t.Errorf("premises material = %v", m)
	}
	for _, name := range []string{"operator_name", "previous_permit_no"} {
		if f := fieldOf(t, food, name); !f.GetFilled() {
			t.Errorf("%s unfilled (%s) although its department is up", name, f.GetUnfilledReason())
		}
	}
	if ex := te.rec.exchanges(); len(ex) != 1 || strings.Contains(ex[0].Dataset, "resources") || ex[0].Decision != "partial" {
		t.Errorf("recorded %+v", ex)
	}
}

func TestInvalidApplicant(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	tests := []struct{ form, id string }{
		{"food_business_licence", "91350100M000100Y44"},  // bad check character
		{"food_business_licence", "11010519491231002X"},  // a person for an enterprise form
		{"tour_guide_certificate", ent.CreditCode},       // an enterprise for a person form
		{"tour_guide_certificate", "110105194912310021"}, // bad check digit
	}
	for _, tc := range tests {
		_, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: tc.id}, tc.form)
		if apierr.ReasonOf(err) != apierr.ReasonInvalidIdentifier || apierr.CodeOf(err) != codes.InvalidArgument {
			t.Errorf("%s %s: err = %v, want INVALID_IDENTIFIER", tc.form, tc.id, err)
		}
	}
	if _, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "no_such_form"); apierr.CodeOf(err) != codes.NotFound {
		t.Errorf("unknown form: err = %v", err)
	}
	if _, err := te.FillBundle(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "no_such_bundle"); apierr.CodeOf(err) != codes.NotFound {
		t.Errorf("unknown bundle: err = %v", err)
	}
	if n := len(te.rec.exchanges()); n != 0 {
		t.Errorf("%d exchanges recorded for refused requests", n)
	}
}

func TestAuditFailureRefuses(t *testing.T) {
	te := newEngine(t, nil)
	te.rec.err = errors.New("disk full")
	_, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: sim().SampleEnterprise().CreditCode}, "food_business_licence")
	if apierr.ReasonOf(err) != apierr.ReasonAuditUnavailable {
		t.Fatalf("err = %v, want AUDIT_UNAVAILABLE", err)
	}
}

func TestDisputedAfterCorrection(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	ctx := context.Background()
	r := Request{Principal: approvalBureau, RequestID: "f1", ApplicantID: ent.CreditCode}
	before, err := te.FillForm(ctx, r, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	area := fieldOf(t, before, "premises_area")
	if area.GetDisputed() {
		t.Fatal("disputed before any correction")
	}
	c, err := te.CreateCorrection(ctx, approvalBureau, "c1", &v1.CreateCorrectionRequest{
		Form: "food_business_licence", ApplicantId: ent.CreditCode, Field: "premises_area", ProposedValue: "24000", Comment: "测绘面积有误",
	})
	if err != nil {
		t.Fatal(err)
	}
	cert := sim().CertificatesOf(ent.CreditCode)
	if c.GetDepartment() != "resources" || c.GetDataset() != "resources.land_use_certificates" || c.GetState() != StateOpen ||
		c.GetRecordId() != area.GetProvenance().GetRecordId() || c.GetCurrentValue() != formsText(area.GetValue()) || c.GetRaisedBy() != "approval-bureau" || len(cert) == 0 {
		t.Errorf("correction = %v", c)
	}
	after, err := te.FillForm(ctx, r, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	got := fieldOf(t, after, "premises_area")
	if !got.GetDisputed() || !got.GetFilled() || got.GetValue().GetNumberValue() != area.GetValue().GetNumberValue() {
		t.Errorf("after correction: disputed %v filled %v value %v (was %v)", got.GetDisputed(), got.GetFilled(), got.GetValue(), area.GetValue())
	}
	if fieldOf(t, after, "operator_name").GetDisputed() {
		t.Error("an undisputed field shows as disputed")
	}
	// Another form's field drawn from a different record is not disputed.
	plan, err := te.FillForm(ctx, r, "construction_planning_permit")
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, plan, "land_area_sqm"); f.GetDisputed() {
		t.Errorf("land_area_sqm is drawn from the parcel, not the certificate, yet disputed")
	}

	ex := te.rec.exchanges()
	if !slices.ContainsFunc(ex, func(e queryExchange) bool {
		return e.Kind == KindCorrection && e.Department == "resources" && e.Subjects[0] == ent.CreditCode
	}) {
		t.Errorf("no correction recorded: %+v", ex)
	}

	list, err := te.ListCorrections(ctx, Filter{Department: "resources", State: StateOpen})
	if err != nil || len(list) != 1 || list[0].GetId() != c.GetId() {
		t.Fatalf("list = %v, %v", list, err)
	}
	if list, _ := te.ListCorrections(ctx, Filter{Department: "market"}); len(list) != 0 {
		t.Errorf("market queue = %v", list)
	}
	if _, err := te.ListCorrections(ctx, Filter{State: "pending"}); apierr.CodeOf(err) != codes.InvalidArgument {
		t.Errorf("bad state: err = %v", err)
	}

	// Only the department (or an admin) resolves it; then the field is no
	// longer disputed.
	if _, err := te.ResolveCorrection(ctx, approvalBureau, "x", c.GetId()); apierr.CodeOf(err) != codes.PermissionDenied {
		t.Errorf("resolve by another department: err = %v", err)
	}
	res, err := te.ResolveCorrection(ctx, policy.Principal{SystemID: "resources-desk", Department: "resources"}, "x", c.GetId())
	if err != nil || res.GetState() != StateResolved {
		t.Fatalf("resolve = %v, %v", res, err)
	}
	counts, err := te.CorrectionCounts(ctx)
	if err != nil || len(counts) != 1 || counts[0] != (Count{Department: "resources", Open: 0, Resolved: 1}) {
		t.Errorf("counts = %v, %v", counts, err)
	}
	again, err := te.FillForm(ctx, r, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	if fieldOf(t, again, "premises_area").GetDisputed() {
		t.Error("still disputed after resolution")
	}
}

func TestCorrectionValidation(t *testing.T) {
	te := newEngine(t, nil)
	ent := sim().SampleEnterprise()
	tests := []struct {
		name string
		req  *v1.CreateCorrectionRequest
		code codes.Code
	}{
		{"unknown form", &v1.CreateCorrectionRequest{Form: "x", ApplicantId: ent.CreditCode, Field: "a", ProposedValue: "b"}, codes.NotFound},
		{"unknown field", &v1.CreateCorrectionRequest{Form: "food_business_licence", ApplicantId: ent.CreditCode, Field: "nope", ProposedValue: "b"}, codes.InvalidArgument},
		{"no value", &v1.CreateCorrectionRequest{Form: "food_business_licence", ApplicantId: ent.CreditCode, Field: "residence"}, codes.InvalidArgument},
		{"bad applicant", &v1.CreateCorrectionRequest{Form: "food_business_licence", ApplicantId: "123", Field: "residence", ProposedValue: "b"}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := te.CreateCorrection(context.Background(), approvalBureau, "c", tc.req); apierr.CodeOf(err) != tc.code {
				t.Fatalf("err = %v, want %v", err, tc.code)
			}
		})
	}
	// A correction of an unfilled field goes to the template's source.
	c, err := te.CreateCorrection(context.Background(), approvalBureau, "c", &v1.CreateCorrectionRequest{
		Form: "business_registration_change", ApplicantId: ent.CreditCode, Field: "employees", ProposedValue: "35",
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.GetDepartment() != "market" || c.GetDataset() != "market.enterprises" || c.GetCurrentValue() != "" || c.GetRecordId() != "" {
		t.Errorf("correction = %v", c)
	}
}

func TestListForms(t *testing.T) {
	te := newEngine(t, nil)
	l := te.ListForms()
	if len(l.GetForms()) != 5 || len(l.GetBundles()) != 1 || l.GetBundles()[0].GetApplicantKind() != "enterprise" {
		t.Fatalf("forms = %v", l)
	}
}

// TestMaterialConditionNeedsTheField: a material whose condition reads a
// field the grant does not give must not reveal it (satisfied or
// CONDITION_NOT_MET would tell the licence's status).
func TestMaterialConditionNeedsTheField(t *testing.T) {
	grants := policy.DemoGrants(time.Now())
	for _, g := range grants {
		if g.GetId() == "demo-approval-licences" {
			g.Fields = slices.DeleteFunc(g.Fields, func(f string) bool { return f == "status" })
		}
	}
	te := newEngine(t, grants)
	ent := sim().SampleEnterprise()
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	if m := materialOf(t, resp, "营业执照复印件"); m.GetSatisfied() || m.GetReason() != ReasonFieldNotGranted {
		t.Errorf("licence material: satisfied %v reason %s, want FIELD_NOT_GRANTED", m.GetSatisfied(), m.GetReason())
	}
	// With the field granted, the same material is decided on it.
	full := newEngine(t, nil)
	resp, err = full.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: ent.CreditCode}, "food_business_licence")
	if err != nil {
		t.Fatal(err)
	}
	if m := materialOf(t, resp, "营业执照复印件"); m.GetReason() == ReasonFieldNotGranted {
		t.Errorf("licence material with status granted: reason %s", m.GetReason())
	}
	if m := materialOf(t, resp, "原食品经营许可证正副本"); m.GetReason() == ReasonFieldNotGranted {
		t.Errorf("permit material (status granted, not a form field): reason %s", m.GetReason())
	}
}

// TestConcatFailureReleasesNothing: a concat field that stays unfilled
// because one part is not granted must not record its other parts as
// released.
func TestConcatFailureReleasesNothing(t *testing.T) {
	grants := policy.DemoGrants(time.Now())
	for _, g := range grants {
		if g.GetId() == "demo-approval-permits" {
			g.Fields = slices.DeleteFunc(g.Fields, func(f string) bool { return f == "valid_until" })
		}
	}
	te := newEngine(t, grants)
	sign := signEnterprise(t)
	resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, ApplicantID: sign.CreditCode}, "outdoor_signboard_permit")
	if err != nil {
		t.Fatal(err)
	}
	if f := fieldOf(t, resp, "previous_valid_period"); f.GetFilled() || f.GetUnfilledReason() != ReasonFieldNotGranted {
		t.Fatalf("previous_valid_period: filled %v reason %s, want FIELD_NOT_GRANTED", f.GetFilled(), f.GetUnfilledReason())
	}
	ex := te.rec.exchanges()
	last := ex[len(ex)-1]
	if slices.Contains(last.FieldsReturned, "approval.permits.valid_from") {
		t.Errorf("recorded valid_from as returned, but no field showed it: %v", last.FieldsReturned)
	}
	if !slices.Contains(last.FieldsWithheld, "approval.permits.valid_until") {
		t.Errorf("withheld = %v, want approval.permits.valid_until", last.FieldsWithheld)
	}
}
