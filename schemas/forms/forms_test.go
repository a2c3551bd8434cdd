package forms

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/tongban/tongban/schemas/datasets"
)

func TestEmbeddedCatalog(t *testing.T) {
	c, err := Load(datasets.Default())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"food_business_licence", "construction_planning_permit", "tour_guide_certificate", "outdoor_signboard_permit", "business_registration_change"} {
		f, ok := c.Form(id)
		if !ok {
			t.Fatalf("form %s missing", id)
		}
		if n := len(f.Fields); n < 10 || n > 25 {
			t.Errorf("form %s has %d fields, want 10 to 25", id, n)
		}
		if len(f.Materials) == 0 {
			t.Errorf("form %s has no materials", id)
		}
	}
	b, ok := c.Bundle("open_restaurant")
	if !ok || len(b.Forms) != 3 {
		t.Fatalf("bundle open_restaurant = %+v", b)
	}
	if f, _ := c.Form("tour_guide_certificate"); f.ApplicantKind != ApplicantPerson {
		t.Errorf("tour guide applicant kind = %s", f.ApplicantKind)
	}
}

const goodForm = `kind: form
id: sample
title: 样例
purpose: approval
legal_basis: 某法第一条
applicant_kind: enterprise
sources:
  - name: licence
    dataset: market.business_licences
    by: credit_code
fields:
  - name: name
    label: 名称
    source: licence.name
materials:
  - name: 营业执照
    satisfied_by: {source: licence, where: {status: 存续}}
`

func TestTemplateErrors(t *testing.T) {
	dict := datasets.Default()
	tests := []struct {
		name string
		file string
		want []string // substrings of the error, the first with file:line
	}{
		{"unknown dataset field", strings.Replace(goodForm, "source: licence.name", "source: licence.nam", 1),
			[]string{"x.yaml:14: fields[0] (name).source", `has no field "nam"`}},
		{"unknown dataset", strings.Replace(goodForm, "dataset: market.business_licences", "dataset: market.licences", 1),
			[]string{"x.yaml:9: sources[0] (licence).dataset", `"market.licences" is not in the dictionary`}},
		{"not a lookup", strings.Replace(goodForm, "by: credit_code", "by: name", 1),
			[]string{"x.yaml:10: sources[0] (licence).by", "cannot be looked up by"}},
		{"person by credit code", strings.Replace(goodForm, "applicant_kind: enterprise", "applicant_kind: person", 1),
			[]string{"x.yaml:10: sources[0] (licence).by", "cannot name a person applicant"}},
		{"unknown key", strings.Replace(goodForm, "label: 名称", "labl: 名称", 1),
			[]string{"x.yaml:13:", "field labl not found"}},
		{"missing label", strings.Replace(goodForm, "    label: 名称\n", "", 1),
			[]string{"x.yaml:12: fields[0] (name).label", "is required"}},
		{"unknown source", strings.Replace(goodForm, "source: licence.name", "source: permit.name", 1),
			[]string{"x.yaml:14: fields[0] (name).source", `no source is named "permit"`}},
		{"bad transform", strings.Replace(goodForm, "source: licence.name\n", "source: licence.name\n    transforms:\n      - unit: 斤→两\n", 1),
			[]string{"x.yaml:15: fields[0] (name).transforms[0]", `unit "斤→两"`}},
		{"two transform keys", strings.Replace(goodForm, "source: licence.name\n", "source: licence.name\n    transforms:\n      - {round: 2, unit: 万元→元}\n", 1),
			[]string{"x.yaml:15: fields[0] (name).transforms[0]", "exactly one"}},
		{"material condition field", strings.Replace(goodForm, "where: {status: 存续}", "where: {state: 存续}", 1),
			[]string{"x.yaml:17: materials[0].satisfied_by.where.state", `"state" is not a field`}},
		{"bad kind", strings.Replace(goodForm, "kind: form", "kind: formular", 1),
			[]string{"x.yaml:1: kind", "must be"}},
		{"check same as source", strings.Replace(goodForm, "source: licence.name\n", "source: licence.name\n    check: licence.name\n", 1),
			[]string{"x.yaml:15: fields[0] (name).check", "different source field"}},
		{"bad yaml", "kind: form\nid: [\n", []string{"x.yaml:"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(dict, fstest.MapFS{"x.yaml": {Data: []byte(tc.file)}}, "")
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestGoodFormParses(t *testing.T) {
	c, err := Parse(datasets.Default(), fstest.MapFS{"x.yaml": {Data: []byte(goodForm)}}, "dir")
	if err != nil {
		t.Fatal(err)
	}
	f, ok := c.Form("sample")
	if !ok || f.File != "dir/x.yaml" || f.Fields[0].From != (Ref{"licence", "name"}) {
		t.Fatalf("form = %+v", f)
	}
}

func TestBundleErrors(t *testing.T) {
	person := strings.NewReplacer("id: sample", "id: person_form", "applicant_kind: enterprise", "applicant_kind: person",
		"dataset: market.business_licences\n    by: credit_code", "dataset: approval.permits\n    by: applicant_id",
		"licence.name", "licence.applicant_name").Replace(goodForm)
	bundle := "kind: bundle\nid: b\ntitle: 一件事\nforms:\n  - sample\n  - person_form\n  - nothing\n"
	_, err := Parse(datasets.Default(), fstest.MapFS{"a.yaml": {Data: []byte(goodForm)}, "p.yaml": {Data: []byte(person)}, "b.yaml": {Data: []byte(bundle)}}, "")
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"b.yaml:4: forms[1]", "person applicant", "b.yaml:4: forms[2]", `no form has id "nothing"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestMatchCycle(t *testing.T) {
	f := strings.Replace(goodForm, "    by: credit_code\n", `    by: credit_code
    match: {name: other.name}
  - name: other
    dataset: market.enterprises
    by: credit_code
    match: {name: licence.name}
`, 1)
	_, err := Parse(datasets.Default(), fstest.MapFS{"x.yaml": {Data: []byte(f)}}, "")
	if err == nil || !strings.Contains(err.Error(), "cycle") {
		t.Fatalf("err = %v, want a cycle", err)
	}
}

func ptr[T any](v T) *T { return &v }

func TestTransforms(t *testing.T) {
	tests := []struct {
		name string
		t    Transform
		in   any
		want any
		err  bool
	}{
		{"date", Transform{Date: "YYYY年MM月DD日"}, "2019-03-07", "2019年03月07日", false},
		{"date unpadded", Transform{Date: "YYYY年M月D日"}, "2019-03-07", "2019年3月7日", false},
		{"date bad", Transform{Date: "YYYY-MM-DD"}, "07/03/2019", nil, true},
		{"enum hit", Transform{Enum: map[string]string{"存续": "在营"}}, "存续", "在营", false},
		{"enum miss", Transform{Enum: map[string]string{"存续": "在营"}}, "注销", "注销", false},
		{"region full", Transform{RegionName: "full"}, "130102", "河北省石家庄市长安区", false},
		{"region short", Transform{RegionName: "short"}, "130102", "长安区", false},
		{"region city", Transform{RegionName: "full"}, "130100", "河北省石家庄市", false},
		{"region municipality", Transform{RegionName: "full"}, "110105", "北京市朝阳区", false},
		{"region unknown", Transform{RegionName: "full"}, "139999", nil, true},
		{"wan yuan", Transform{Unit: "万元→元"}, 100.0, 1000000.0, false},
		{"mu", Transform{Unit: "平方米→亩"}, 6666.666666666667, 10.0, false},
		{"unit not number", Transform{Unit: "万元→元"}, "many", nil, true},
		{"round", Transform{Round: ptr(2)}, 123.456, 123.46, false},
		{"default empty", Transform{Default: ptr("长期")}, "", "长期", false},
		{"default set", Transform{Default: ptr("长期")}, "2040-01-01", "2040-01-01", false},
		{"gender", Transform{Derive: "gender"}, "11010519491231002X", "女", false},
		{"birth", Transform{Derive: "birth_date"}, "11010519491231002X", "1949-12-31", false},
		{"id region", Transform{Derive: "region"}, "11010519491231002X", "110105", false},
		{"derive masked", Transform{Derive: "gender"}, "110105********002X", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.t.Apply(tc.in)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if tc.err {
				return
			}
			if g, ok := got.(float64); ok {
				if w := tc.want.(float64); g-w > 1e-9 || w-g > 1e-9 {
					t.Fatalf("got %v, want %v", got, tc.want)
				}
				return
			}
			if got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFormatDate(t *testing.T) {
	d := time.Date(2024, 11, 5, 0, 0, 0, 0, time.UTC)
	if got := FormatDate("YYYY/MM/DD", d); got != "2024/11/05" {
		t.Fatalf("got %s", got)
	}
}
