package server

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/pbjson"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
	"github.com/tongban/tongban/schemas/testenv"
)

func TestQueryJSONMatchesProtojson(t *testing.T) {
	fields, err := structpb.NewStruct(map[string]any{
		"name":     "石家庄恒信餐饮管理有限公司",
		"quote":    "a \"quoted\" back\\slash\nnew\tline\x01\u2028",
		"capital":  2000.0,
		"area":     24490.8,
		"tiny":     1e-9,
		"huge":     1.5e21,
		"negative": -3.25,
		"ok":       true,
		"none":     nil,
		"geometry": map[string]any{"type": "Polygon", "coordinates": []any{[]any{[]any{114.5, 38.0}, []any{114.6, 38.0}, []any{114.5, 38.0}}}},
		"empty":    map[string]any{},
		"list":     []any{},
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]*v1.QueryResponse{
		"empty": {},
		// A delivery this build has no name for (from a newer node):
		// protojson writes its number.
		"unnamed delivery": {Records: []*v1.Record{{Provenance: &v1.Provenance{Delivery: 99}}}},
		"full": {
			Records: []*v1.Record{
				{
					Fields: fields,
					Provenance: &v1.Provenance{Department: "market", Dataset: "market.business_licences", RecordId: "91350100M000100Y43",
						FetchedAt: timestamppb.New(time.Date(2026, 11, 22, 0, 14, 29, 64403020, time.UTC)),
						Delivery:  v1.Delivery_DELIVERY_STALE, Age: durationpb.New(90*time.Minute + 1500*time.Millisecond)},
					MaskedFields: []string{"legal_representative_id"},
				},
				{Provenance: &v1.Provenance{FetchedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), Age: durationpb.New(-2 * time.Microsecond)}},
				{Provenance: &v1.Provenance{FetchedAt: timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 120000000, time.UTC))}},
				{Provenance: &v1.Provenance{Delivery: v1.Delivery_DELIVERY_CACHE}},
			},
			Withheld:      []*v1.Withheld{{Field: "contact_phone", Reason: "FIELD_NOT_GRANTED"}, {Field: "x"}},
			GrantIds:      []string{"g-1", "g-2"},
			LegalBasis:    []string{"《中华人民共和国行政许可法》第三十三条"},
			NextPageToken: "abc",
			RequestId:     "1deada3950138e65",
			Receipt:       &v1.Receipt{Node: "node-1", LeafIndex: 1 << 40, LeafHash: []byte{0xdf, 0xc5, 0xfb, 0xf8, 0x5d}},
		},
	}
	m := queryMarshaler{&runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}}
	for name, resp := range cases {
		t.Run(name, func(t *testing.T) {
			fast, err := m.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			slow, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(resp)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(fast, &a); err != nil {
				t.Fatalf("fast encoding is not JSON: %v\n%s", err, fast)
			}
			if err := json.Unmarshal(slow, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("documents differ\nfast:      %s\nprotojson: %s", fast, slow)
			}
			var doc struct {
				Records []struct {
					Fields json.RawMessage `json:"fields"`
				} `json:"records"`
			}
			if err := json.Unmarshal(fast, &doc); err != nil {
				t.Fatal(err)
			}
			for i, rec := range doc.Records {
				if keys := testenv.ObjectKeys(t, rec.Fields); !slices.IsSorted(keys) {
					t.Fatalf("record %d: fields in order %q, not sorted", i, keys)
				}
			}
			var back v1.QueryResponse
			if err := protojson.Unmarshal(fast, &back); err != nil {
				t.Fatalf("protojson cannot read the fast encoding back: %v", err)
			}
		})
	}
}

// TestQueryJSONWithKeptFields: an answer written with the records' kept
// field renderings is byte for byte the answer encoded in full.
func TestQueryJSONWithKeptFields(t *testing.T) {
	f1, _ := structpb.NewStruct(map[string]any{"name": "石家庄恒信餐饮管理有限公司", "capital": 2000.0, "region_code": "130104"})
	f2, _ := structpb.NewStruct(map[string]any{"name": "甲", "ok": true})
	resp := &v1.QueryResponse{
		Records: []*v1.Record{
			{Fields: f1, Provenance: &v1.Provenance{Department: "market", RecordId: "x"}, MaskedFields: []string{"name"}},
			{Fields: f2},
			{Provenance: &v1.Provenance{Department: "market"}},
		},
		RequestId: "r",
	}
	full, ok := appendQueryResponse(nil, resp, nil)
	if !ok {
		t.Fatal("not encoded")
	}
	js1, _ := pbjson.AppendStruct(nil, f1)
	for name, kept := range map[string][][]byte{
		"all kept":   {js1, []byte(`{"name":"甲","ok":true}`), nil},
		"some kept":  {nil, []byte(`{"name":"甲","ok":true}`)},
		"first kept": {js1},
	} {
		got, ok := appendQueryResponse(nil, resp, kept)
		if !ok || !bytes.Equal(got, full) {
			t.Errorf("%s: %s\nwant %s", name, got, full)
		}
	}
	// The kept bytes are what is written: a wrong rendering shows.
	if got, _ := appendQueryResponse(nil, resp, [][]byte{[]byte(`{"x":1}`)}); bytes.Equal(got, full) {
		t.Error("the kept rendering was not used")
	}
}

func BenchmarkQueryJSON(b *testing.B) {
	fields, _ := structpb.NewStruct(map[string]any{
		"credit_code": "91130109MAAY40HT30", "name": "石家庄润众连锁超市股份有限公司", "address": "石家庄市藁城区廉州路362号",
		"business_scope": "食品销售；日用百货销售；保健食品（预包装）销售。", "registered_capital": 2000.0, "status": "存续",
		"established_on": "2002-04-27", "region_code": "130109", "legal_representative": "史文静", "legal_representative_id": "130203********9925",
	})
	resp := &v1.QueryResponse{
		Records: []*v1.Record{{Fields: fields, Provenance: &v1.Provenance{Department: "market", Dataset: "market.business_licences",
			RecordId: "91130109MAAY40HT30", FetchedAt: timestamppb.Now(), Delivery: v1.Delivery_DELIVERY_CACHE, Age: durationpb.New(3 * time.Second)}}},
		GrantIds: []string{"demo-approval-licences"}, RequestId: "1deada3950138e65",
		Receipt: &v1.Receipt{Node: "demo-node", LeafIndex: 14, LeafHash: make([]byte, 32)},
	}
	m := queryMarshaler{&runtime.JSONPb{MarshalOptions: protojson.MarshalOptions{UseProtoNames: true}}}
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			_, _ = m.Marshal(resp)
		}
	})
	b.Run("protojson", func(b *testing.B) {
		for b.Loop() {
			_, _ = m.JSONPb.Marshal(resp)
		}
	})
}
