package policy

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// benchGrants returns n active grants spread over 5 datasets, n/8 systems
// and 50 departments.
func benchGrants(dict *datasets.Dictionary, n int, now time.Time) []*v1.Grant {
	out := make([]*v1.Grant, 0, n)
	for i := range n {
		ds := dict.Datasets[i%len(dict.Datasets)]
		fields := ds.FieldNames()
		c := &v1.Consumer{SystemId: fmt.Sprintf("system-%d", i/8)}
		if i%10 == 9 {
			c = &v1.Consumer{Department: fmt.Sprintf("dept-%d", i%50), Role: "officer"}
		}
		out = append(out, &v1.Grant{
			Id:           fmt.Sprintf("g-%d", i),
			Consumer:     c,
			Dataset:      ds.Name,
			Fields:       fields[:len(fields)-i%3],
			Masks:        []*v1.FieldMask{{Field: fields[1], Mask: v1.MaskKind_MASK_KIND_NAME}},
			Purposes:     []string{"approval", fmt.Sprintf("purpose-%d", i%7)},
			LegalBasis:   "《中华人民共和国行政许可法》第三十三条",
			Jurisdiction: fmt.Sprintf("13%02d", i%11),
			ValidFrom:    timestamppb.New(now.Add(-time.Hour)),
			ValidUntil:   timestamppb.New(now.Add(time.Hour)),
			Quota:        &v1.Quota{PerMinute: 60},
			State:        v1.GrantState_GRANT_STATE_ACTIVE,
		})
	}
	return out
}

func BenchmarkDecide(b *testing.B) {
	dict := datasets.Default()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	snap := Prepare(dict, benchGrants(dict, 10000, now), 1)
	if snap.Grants() != 10000 {
		b.Fatalf("compiled %d grants", snap.Grants())
	}
	req := Request{
		Principal: Principal{SystemID: "system-600", Department: "dept-9", Roles: []string{"officer"}},
		Dataset:   dict.Datasets[0].Name,
		Fields:    dict.Datasets[0].FieldNames()[:6],
		Purpose:   "approval",
		Time:      now,
	}
	if d, err := snap.Decide(req); err != nil || len(d.Fields) != 6 || len(d.GrantIDs) < 2 {
		b.Fatalf("Decide = %+v, %v", d, err)
	}
	benchDecide(b, snap, req)
}

// benchDecide measures a decision evaluated from the grants and one
// answered from the snapshot's kept decisions.
func benchDecide(b *testing.B, snap *Snapshot, req Request) {
	b.Run("evaluated", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, _, err := snap.decide(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := snap.Decide(req); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkDecideAllFields(b *testing.B) {
	dict := datasets.Default()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	snap := Prepare(dict, benchGrants(dict, 10000, now), 1)
	req := Request{
		Principal: Principal{SystemID: "system-600", Department: "dept-9", Roles: []string{"officer"}},
		Dataset:   dict.Datasets[0].Name,
		Purpose:   "approval",
		Time:      now,
	}
	benchDecide(b, snap, req)
}

func BenchmarkPrepare(b *testing.B) {
	dict := datasets.Default()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	grants := benchGrants(dict, 10000, now)
	b.ReportAllocs()
	for b.Loop() {
		Prepare(dict, grants, 1)
	}
}
