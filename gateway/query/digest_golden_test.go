package query

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// goldenDigest pins the canonical form of digest: audit entries recorded
// before a change of the code must still match answers digested after it.
const goldenDigest = "d9ebe659ea879215f1c25b81c0aa222e2d90043c1a2b30d4553d5cab968d63a2"

func TestDigestGolden(t *testing.T) {
	f, err := structpb.NewStruct(map[string]any{"name": "甲", "capital": 100.5, "ok": true, "none": nil,
		"geo": map[string]any{"type": "Point", "coordinates": []any{114.5, 38.0}}, "empty": []any{}})
	if err != nil {
		t.Fatal(err)
	}
	recs := []*v1.Record{
		{Fields: f, Provenance: &v1.Provenance{Department: "market", Dataset: "market.enterprises", RecordId: goodCode, Delivery: v1.Delivery_DELIVERY_CACHE}, MaskedFields: []string{"name"}},
		{Provenance: &v1.Provenance{Department: "d"}},
	}
	got, err := digest(recs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != goldenDigest {
		t.Fatalf("digest = %s, want %s: the canonical form changed", got, goldenDigest)
	}
	// A record's kept rendering gives the same canonical form.
	r := &rendering{fields: f, masked: []string{"name"}}
	r.render()
	if got, err := digest(recs, []*rendering{r, nil}); err != nil || got != goldenDigest {
		t.Fatalf("digest with a rendering = %s, %v; want %s", got, err, goldenDigest)
	}
}
