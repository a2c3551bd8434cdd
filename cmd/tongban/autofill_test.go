package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

func TestAutofillCommand(t *testing.T) {
	resp := &v1.AutofillResponse{
		Form: "food_business_licence", Title: "食品经营许可申请书", Purpose: "approval", LegalBasis: "《食品安全法》第三十五条",
		Fields: []*v1.FilledField{
			{Name: "operator_name", Label: "经营者名称", Required: true, Filled: true, Value: structpb.NewStringValue("石家庄润众连锁超市股份有限公司"),
				Provenance: &v1.Provenance{Department: "market", Dataset: "market.business_licences", RecordId: "x", Delivery: v1.Delivery_DELIVERY_LIVE}},
			{Name: "legal_representative_id", Label: "法定代表人身份证件号码", Filled: true, Masked: true, Disputed: true, Value: structpb.NewStringValue("130203********9925"),
				Provenance: &v1.Provenance{Department: "market", Dataset: "market.business_licences", Delivery: v1.Delivery_DELIVERY_CACHE}},
			{Name: "premises_area", Label: "面积", Filled: true, Value: structpb.NewNumberValue(24490.8),
				Provenance: &v1.Provenance{Department: "resources", Dataset: "resources.land_use_certificates", Delivery: v1.Delivery_DELIVERY_STALE}},
			{Name: "premises_address", Label: "经营场所", UnfilledReason: "SOURCES_DISAGREE",
				ConflictingValues:  []*structpb.Value{structpb.NewStringValue("甲路1号"), structpb.NewStringValue("乙路2号")},
				ConflictingSources: []*v1.Provenance{{Department: "approval", Dataset: "approval.permits"}, {Department: "market", Dataset: "market.business_licences"}}},
			{Name: "industry", Label: "行业", UnfilledReason: "NO_GRANT"},
			{Name: "previous_permit_no", Label: "原许可证编号", UnfilledReason: "SELECTOR_NOT_GRANTED",
				UnfilledDetail: "approval.permits is chosen by decided_on, which the grant does not release"},
		},
		Materials: []*v1.MaterialStatus{
			{Name: "营业执照复印件", Satisfied: true, Provenance: &v1.Provenance{Department: "market", Dataset: "market.business_licences", RecordId: "x"}},
			{Name: "食品安全管理制度文本", Reason: "NO_SOURCE", Detail: "no department holds this material; the applicant hands it in"},
		},
		Summary: &v1.AutofillSummary{FieldsFilled: 3, FieldsTotal: 5, MaterialsSatisfied: 1, MaterialsTotal: 2},
		Receipt: &v1.Receipt{Node: "node-1", LeafIndex: 7},
	}
	var gotPath, gotAuth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		b, _ := protojson.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	defer srv.Close()
	var out, errb bytes.Buffer
	err := cmdAutofill(context.Background(), []string{"food_business_licence", "--applicant", "91130109MAAY40HT30", "--url", srv.URL, "--token", "t"}, &out, &errb)
	if err != nil {
		t.Fatalf("%v: %s", err, errb.String())
	}
	if gotPath != "/v1/forms/food_business_licence:autofill" || gotAuth != "Bearer t" {
		t.Errorf("request %s with %q", gotPath, gotAuth)
	}
	for _, want := range []string{
		"石家庄润众连锁超市股份有限公司  [market/market.business_licences, live]",
		"130203********9925  [market/market.business_licences, cache, masked, disputed]",
		"24490.8  [resources/resources.land_use_certificates, stale]",
		"(unfilled: SOURCES_DISAGREE)",
		"candidate: 乙路2号  [market/market.business_licences",
		"(unfilled: NO_GRANT)",
		"[x] 营业执照复印件",
		"[ ] 食品安全管理制度文本 — hand in (NO_SOURCE)\n        no department holds this material; the applicant hands it in\n",
		"(unfilled: SELECTOR_NOT_GRANTED)\n",
		"   approval.permits is chosen by decided_on, which the grant does not release\n",
		"Summary: 3/5 fields filled, 1/2 materials",
		"audit receipt: node node-1, entry 7",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	if err := cmdAutofill(context.Background(), []string{"food_business_licence", "--url", srv.URL}, &out, &errb); err == nil {
		t.Error("missing --applicant accepted")
	}
	out.Reset()
	bundle := &v1.AutofillBundleResponse{Bundle: "open_restaurant", Title: "开办餐馆“一件事”", Forms: []*v1.AutofillResponse{resp},
		Summary: &v1.AutofillSummary{FieldsFilled: 3, FieldsTotal: 5}}
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath = r.URL.Path
		b, _ := protojson.Marshal(bundle)
		w.Write(b)
	})
	if err := cmdAutofill(context.Background(), []string{"open_restaurant", "--bundle", "--applicant", "91130109MAAY40HT30", "--url", srv.URL}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if gotPath != "/v1/bundles/open_restaurant:autofill" || !strings.Contains(out.String(), "Bundle: 3/5 fields filled") {
		t.Errorf("bundle: path %s output:\n%s", gotPath, out.String())
	}
}
