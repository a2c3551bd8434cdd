package autofill

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/schemas/datasets"
	"github.com/tongban/tongban/schemas/forms"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// twinFetcher answers a lookup of dataset with two records alike but for
// their ids and holder names (in this order, or reversed), and the other
// lookups as next does.
type twinFetcher struct {
	next     query.Fetcher
	dataset  string
	ids      [2]string
	names    [2]string
	reversed bool
}

func (f *twinFetcher) Fetch(ctx context.Context, ds *datasets.Dataset, req *v1.FetchRequest) (query.Result, error) {
	res, err := f.next.Fetch(ctx, ds, req)
	if err != nil || ds.Name != f.dataset {
		return res, err
	}
	base := res.Records[0]
	res.Records = nil
	for k := range f.ids {
		i := k
		if f.reversed {
			i = len(f.ids) - 1 - k
		}
		r := proto.Clone(base).(*v1.SourceRecord)
		r.Id = f.ids[i]
		r.Fields.Fields["parcel_id"] = structpb.NewStringValue(f.ids[i])
		r.Fields.Fields["holder_name"] = structpb.NewStringValue(f.names[i])
		res.Records = append(res.Records, r)
	}
	return res, nil
}

// tieForm is a person's form drawing the holder name of a parcel held by
// the applicant, and also the parcel's key, parcel_id, when showKey.
func tieForm(t *testing.T, dict *datasets.Dictionary, showKey bool) *forms.Catalog {
	t.Helper()
	form := `kind: form
id: parcel_tie
title: 宗地
purpose: approval
legal_basis: 测试
applicant_kind: person
sources:
  - {name: property, dataset: resources.parcels, by: holder_id}
fields:
  - {name: name, label: 姓名, source: property.holder_name}
`
	if showKey {
		form += "  - {name: parcel_id, label: 宗地代码, source: property.parcel_id}\n"
	}
	cat, err := forms.Parse(dict, fstest.MapFS{"tie.yaml": {Data: []byte(form)}}, "")
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestTiesAreBrokenOnWhatTheCallerSees: of records that tie on the
// template's conditions, the one chosen is the first by record id as the
// caller is shown it: the id where the form's decision shows the key
// unmasked (the form shows it and the grant gives it), else its reference
// (a keyed hash), so that the choice tells nothing of the order of ids
// the caller is not shown. Without a reference key the department's order
// stands.
func TestTiesAreBrokenOnWhatTheCallerSees(t *testing.T) {
	per := sim().SamplePerson()
	refs := testRefs(t)
	const dataset = "resources.parcels"
	// Two ids whose order differs from the order of their references.
	var ids [2]string
	for i := range 64 {
		a, b := fmt.Sprintf("P-%03d", i), fmt.Sprintf("P-%03d", i+1)
		if refs.Ref(dataset, a) > refs.Ref(dataset, b) {
			ids = [2]string{a, b}
			break
		}
	}
	if ids[0] == "" {
		t.Fatal("no pair of ids whose references are in the other order")
	}
	names := [2]string{"甲", "乙"} // names[i] is the holder of ids[i]
	tests := []struct {
		name     string
		showKey  bool // the form shows parcel_id
		grantKey bool // the grant gives parcel_id
		refs     *query.RecordRefs
		reversed bool   // the department lists the larger id first
		want     string // the holder name filled
	}{
		{"key shown: the smaller id", true, true, refs, false, names[0]},
		{"key shown, listed last: the smaller id", true, true, refs, true, names[0]},
		{"key granted, not on the form: the smaller reference", false, true, refs, false, names[1]},
		{"key granted, not on the form, listed last: the smaller reference", false, true, refs, true, names[1]},
		{"key on the form, withheld: the smaller reference", true, false, refs, false, names[1]},
		{"key on the form, withheld, listed last: the smaller reference", true, false, refs, true, names[1]},
		{"key hidden, no reference key: the department's order", false, true, nil, true, names[1]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var edits []grantEdit
			if !tt.grantKey {
				edits = append(edits, grantEdit{"demo-approval-parcels", withoutField("parcel_id")})
			}
			te := newEngine(t, editedGrants(t, edits...))
			te.Forms = tieForm(t, te.Dict, tt.showKey)
			te.Refs = tt.refs
			te.Fetch = &twinFetcher{next: te.fetch, dataset: dataset, ids: ids, names: names, reversed: tt.reversed}
			resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: per.ResidentID}, "parcel_tie")
			if err != nil {
				t.Fatal(err)
			}
			f := fieldOf(t, resp, "name")
			if !f.GetFilled() || f.GetProvenance().GetDataset() != dataset {
				t.Fatalf("name: filled %v (%s) from %s", f.GetFilled(), f.GetUnfilledReason(), f.GetProvenance().GetDataset())
			}
			if got := formsText(f.GetValue()); got != tt.want {
				t.Errorf("name = %s (record %s), want %s", got, f.GetProvenance().GetRecordId(), tt.want)
			}
			wantID := tt.refs.Ref(dataset, ids[0])
			if tt.want == names[1] {
				wantID = tt.refs.Ref(dataset, ids[1])
			}
			if tt.showKey && tt.grantKey {
				wantID = ids[0]
			}
			if got := f.GetProvenance().GetRecordId(); got != wantID {
				t.Errorf("record id %q, want %q", got, wantID)
			}
		})
	}
}
