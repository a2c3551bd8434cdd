package autofill

import (
	"context"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tongban/tongban/gateway/query"
	"github.com/tongban/tongban/policy"
	"github.com/tongban/tongban/policy/policytest"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

var _ query.FreeDecider = policytest.QuotaDecider{}

// TestKeyOnlyGrantIsNotChargedOrCited: tour_guide_certificate shows the
// parcel's name but not its key, parcel_id. The grant that releases the
// key alone, with a small quota, lets the provenance show the record id,
// but it is never charged, never exhausts, and is not cited in the audit
// record; when nothing else of the dataset is granted, the dataset is
// refused without charging it either.
func TestKeyOnlyGrantIsNotChargedOrCited(t *testing.T) {
	per := sim().SamplePerson()
	keyGrant := func(g *v1.Grant) *v1.Grant {
		k := proto.Clone(g).(*v1.Grant)
		k.Id, k.Fields, k.Masks = "test-parcel-ids", []string{"parcel_id"}, nil
		k.LegalBasis = "key-only basis"
		k.Quota = &v1.Quota{PerDay: 3}
		return k
	}
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
			grants = append(grants, keyGrant(grants[i]))
			te := newEngine(t, grants)
			te.Refs = testRefs(t)
			lim := policytest.NewCountingLimiter()
			te.Policy = policytest.QuotaDecider{Snap: policy.Prepare(te.Dict, grants, 1), Limiter: lim}
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
					if id == "" || strings.HasPrefix(id, query.RefPrefix) {
						t.Fatalf("fill %d: record id %q, want the department's id (the key grant releases it)", n+1, id)
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
