package cache

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestKeyCoversEveryField changes each field of a fetch request in turn and
// checks that the key changes, so two requests that differ in anything get
// different cache entries. A field added to FetchRequest fails the test
// until Key covers it.
func TestKeyCoversEveryField(t *testing.T) {
	base := &v1.FetchRequest{
		Dataset:   "market.business_licences",
		Keys:      map[string]string{"credit_code": "91130109MAAY40HT30"},
		Filter:    map[string]string{"status": "存续"},
		PageSize:  10,
		PageToken: "t1",
	}
	geo, err := structpb.NewStruct(map[string]any{"type": "Point", "coordinates": []any{114.5, 38.0}})
	if err != nil {
		t.Fatal(err)
	}
	variants := map[string]func(r *v1.FetchRequest){
		"dataset":    func(r *v1.FetchRequest) { r.Dataset = "market.enterprises" },
		"keys":       func(r *v1.FetchRequest) { r.Keys["credit_code"] = "91130109MAAY40HT31" },
		"filter":     func(r *v1.FetchRequest) { r.Filter = map[string]string{"status": "注销"} },
		"bbox":       func(r *v1.FetchRequest) { r.Bbox = &v1.BBox{MinLon: 114, MinLat: 38, MaxLon: 115, MaxLat: 39} },
		"geometry":   func(r *v1.FetchRequest) { r.Geometry = geo },
		"page_size":  func(r *v1.FetchRequest) { r.PageSize = -10 },
		"page_token": func(r *v1.FetchRequest) { r.PageToken = "t2" },
	}
	var names []string
	fields := base.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		names = append(names, string(fields.Get(i).Name()))
	}
	slices.Sort(names)
	if want := slices.Sorted(func(yield func(string) bool) {
		for k := range variants {
			if !yield(k) {
				return
			}
		}
	}); !slices.Equal(names, want) {
		t.Fatalf("FetchRequest has fields %q, the test (and Key) know %q", names, want)
	}
	baseKey := mustKey(t, base)
	seen := map[string]string{baseKey: "base"}
	for name, change := range variants {
		r := proto.Clone(base).(*v1.FetchRequest)
		change(r)
		k := mustKey(t, r)
		if prev, dup := seen[k]; dup {
			t.Errorf("changing %s gives the key of %s", name, prev)
		}
		seen[k] = name
		if again := mustKey(t, proto.Clone(r).(*v1.FetchRequest)); again != k {
			t.Errorf("%s: key not stable: %s then %s", name, k, again)
		}
	}
	// Entries that only shift between the maps, or between key and value,
	// must not collide.
	for _, pair := range [][2]*v1.FetchRequest{
		{{Dataset: "d", Keys: map[string]string{"a": "b"}}, {Dataset: "d", Filter: map[string]string{"a": "b"}}},
		{{Dataset: "d", Keys: map[string]string{"ab": "c"}}, {Dataset: "d", Keys: map[string]string{"a": "bc"}}},
		{{Dataset: "d", Keys: map[string]string{"a": "1", "b": "2"}}, {Dataset: "d", Keys: map[string]string{"a": "1"}, Filter: map[string]string{"b": "2"}}},
		{{Dataset: "d", PageToken: "x"}, {Dataset: "d", Keys: map[string]string{"x": ""}}},
	} {
		if mustKey(t, pair[0]) == mustKey(t, pair[1]) {
			t.Errorf("%v and %v share a key", pair[0], pair[1])
		}
	}
	// Map order does not matter.
	a := &v1.FetchRequest{Dataset: "d", Keys: map[string]string{"a": "1", "b": "2", "c": "3", "d": "4"}}
	for range 20 {
		if mustKey(t, proto.Clone(a).(*v1.FetchRequest)) != mustKey(t, a) {
			t.Fatal("the key depends on map order")
		}
	}
}

func mustKey(t *testing.T, r *v1.FetchRequest) string {
	t.Helper()
	k, err := Key(r)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func BenchmarkKey(b *testing.B) {
	r := &v1.FetchRequest{Dataset: "market.business_licences", Keys: map[string]string{"credit_code": "91130109MAAY40HT30"}}
	for b.Loop() {
		if _, err := Key(r); err != nil {
			b.Fatal(err)
		}
	}
}
