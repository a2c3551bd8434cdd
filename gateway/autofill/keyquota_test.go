package autofill

import (
	"context"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/policytest"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var _ query.FreeDecider = policytest.QuotaDecider{}

// keyOnlyGrant returns a copy of g that releases only field, with a quota
// of 3 a day, under id and a legal basis of its own.
func keyOnlyGrant(g *v1.Grant, id, field string) *v1.Grant {
	k := proto.Clone(g).(*v1.Grant)
	k.Id, k.Fields, k.Masks = id, []string{field}, nil
	k.LegalBasis = "key-only basis"
	k.Quota = &v1.Quota{PerDay: 3}
	return k
}

// departmentIDs returns the department's ids of the records of dataset
// looked up by by=applicant.
func departmentIDs(t *testing.T, te *testEngine, dataset, by, applicant string) []string {
	t.Helper()
	ds, _ := te.Dict.Dataset(dataset)
	res, err := te.fetch.Fetch(context.Background(), ds, &v1.FetchRequest{Dataset: dataset, Keys: map[string]string{by: applicant}, PageSize: 100})
	if err != nil {
		t.Fatalf("fetching %s: %v", dataset, err)
	}
	var out []string
	for _, r := range res.Records {
		out = append(out, r.GetId())
	}
	return out
}

// TestKeyNotOnFormIsReferenced: tour_guide_certificate shows the parcel's
// holder name but not its key, parcel_id, and does not choose parcels by
// it. The form's decision on parcels covers only what it shows and chooses
// by, so a grant that releases the key alone (with a small quota) is never
// charged, never exhausts, is not cited in the audit record, and does not
// release the record id: the provenance carries the id's reference. When
// nothing else of the dataset is granted, the dataset is refused without
// charging it either.
func TestKeyNotOnFormIsReferenced(t *testing.T) {
	per := sim().SamplePerson()
	tests := []struct {
		name   string
		parcel func(g *v1.Grant) // the demo parcels grant, changed
		filled bool              // the form's name is filled from the parcel
	}{
		{"other fields granted", withoutField("parcel_id"), true},
		{"nothing else granted", func(g *v1.Grant) { g.Fields = []string{"region_code"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			grants := editedGrants(t,
				grantEdit{"demo-approval-permits", withoutField("applicant_name")},
				grantEdit{"demo-approval-parcels", tt.parcel})
			i := slices.IndexFunc(grants, func(g *v1.Grant) bool { return g.GetId() == "demo-approval-parcels" })
			grants = append(grants, keyOnlyGrant(grants[i], "test-parcel-ids", "parcel_id"))
			te := newEngine(t, grants)
			refs := testRefs(t)
			te.Refs = refs
			lim := policytest.NewCountingLimiter()
			te.Policy = policytest.QuotaDecider{Snap: policy.Prepare(te.Dict, grants, 1), Limiter: lim}
			ids := departmentIDs(t, te, "resources.parcels", "holder_id", per.ResidentID)
			const fills = 10 // past the key grant's quota of 3 a day
			for n := range fills {
				resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: per.ResidentID}, "tour_guide_certificate")
				if err != nil {
					t.Fatalf("fill %d: %v", n+1, err)
				}
				f := fieldOf(t, resp, "name")
				if f.GetFilled() != tt.filled {
					t.Fatalf("fill %d: name filled %v (%s), want %v", n+1, f.GetFilled(), f.GetUnfilledReason(), tt.filled)
				}
				if tt.filled {
					id := f.GetProvenance().GetRecordId()
					if !slices.ContainsFunc(ids, func(real string) bool { return id == refs.Ref("resources.parcels", real) }) {
						t.Fatalf("fill %d: record id %q, want the reference of one of %v (the key is not on the form)", n+1, id, ids)
					}
				}
				ex := te.rec.exchanges()
				last := ex[len(ex)-1]
				if slices.Contains(last.GrantIDs, "test-parcel-ids") || slices.Contains(last.LegalBasis, "key-only basis") {
					t.Fatalf("fill %d: audit cites the key-only grant: grants %v, bases %v", n+1, last.GrantIDs, last.LegalBasis)
				}
			}
			if n := lim.Count("test-parcel-ids"); n != 0 {
				t.Errorf("the key-only grant was charged %d times", n)
			}
			if n := lim.Count("demo-approval-parcels"); tt.filled && n != fills {
				t.Errorf("the parcels grant was charged %d times in %d fills", n, fills)
			}
		})
	}
}

// TestKeyOnFormIsReleasedAndCharged: food_business_licence shows the
// land-use certificate's number, the key of resources.land_use_certificates.
// When a grant of its own releases that key, the form's decision reads the
// key under it: the provenance carries the real record id, and the grant is
// charged once per fill and cited in the audit record.
func TestKeyOnFormIsReleasedAndCharged(t *testing.T) {
	ent := sim().SampleEnterprise()
	const certs = "resources.land_use_certificates"
	grants := editedGrants(t, grantEdit{"demo-approval-certificates", withoutField("certificate_no")})
	i := slices.IndexFunc(grants, func(g *v1.Grant) bool { return g.GetId() == "demo-approval-certificates" })
	key := keyOnlyGrant(grants[i], "test-certificate-nos", "certificate_no")
	key.Quota = &v1.Quota{PerDay: 100} // charged, not exhausted here
	grants = append(grants, key)
	te := newEngine(t, grants)
	te.Refs = testRefs(t)
	lim := policytest.NewCountingLimiter()
	te.Policy = policytest.QuotaDecider{Snap: policy.Prepare(te.Dict, grants, 1), Limiter: lim}
	ids := departmentIDs(t, te, certs, "holder_id", ent.CreditCode)
	const fills = 3
	for n := range fills {
		resp, err := te.FillForm(context.Background(), Request{Principal: approvalBureau, RequestID: "r", ApplicantID: ent.CreditCode}, "food_business_licence")
		if err != nil {
			t.Fatalf("fill %d: %v", n+1, err)
		}
		f := fieldOf(t, resp, "premises_area")
		if !f.GetFilled() || f.GetProvenance().GetDataset() != certs {
			t.Fatalf("fill %d: premises_area filled %v (%s) from %s, want filled from %s", n+1, f.GetFilled(), f.GetUnfilledReason(), f.GetProvenance().GetDataset(), certs)
		}
		if id := f.GetProvenance().GetRecordId(); !slices.Contains(ids, id) {
			t.Fatalf("fill %d: record id %q, want one of the department's ids %v", n+1, id, ids)
		}
		ex := te.rec.exchanges()
		last := ex[len(ex)-1]
		if !slices.Contains(last.GrantIDs, "test-certificate-nos") || !slices.Contains(last.LegalBasis, "key-only basis") {
			t.Fatalf("fill %d: audit cites grants %v, bases %v; want the key grant among them", n+1, last.GrantIDs, last.LegalBasis)
		}
	}
	if n := lim.Count("test-certificate-nos"); n != fills {
		t.Errorf("the key grant was charged %d times in %d fills", n, fills)
	}
}
