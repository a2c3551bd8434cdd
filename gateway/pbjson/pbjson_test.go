package pbjson

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/tongban/tongban/schemas/testenv"
)

func TestAppendStructMatchesProtojson(t *testing.T) {
	cases := map[string]map[string]any{
		"empty": {},
		"licence": {
			"name":     "石家庄恒信餐饮管理有限公司",
			"quote":    "a \"quoted\" back\\slash\nnew\tline\x01\u2028",
			"capital":  2000.0,
			"area":     24490.8,
			"tiny":     1e-9,
			"huge":     1.5e21,
			"negative": -3.25,
			"ok":       true,
			"none":     nil,
			"geometry": map[string]any{"type": "Polygon", "coordinates": []any{[]any{[]any{114.5, 38.0}, []any{114.6, 38.0}}}},
			"empty":    map[string]any{},
			"list":     []any{},
		},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := structpb.NewStruct(m)
			if err != nil {
				t.Fatal(err)
			}
			fast, ok := AppendStruct(nil, s)
			if !ok {
				t.Fatal("AppendStruct refused a valid struct")
			}
			slow, err := protojson.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var a, b any
			if err := json.Unmarshal(fast, &a); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, fast)
			}
			if err := json.Unmarshal(slow, &b); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("documents differ\nfast:      %s\nprotojson: %s", fast, slow)
			}
			if keys := testenv.ObjectKeys(t, fast); !slices.IsSorted(keys) {
				t.Fatalf("keys in order %q, not sorted", keys)
			}
			again, _ := AppendStruct(nil, s)
			if !bytes.Equal(fast, again) {
				t.Fatalf("two encodings differ:\n%s\n%s", fast, again)
			}
		})
	}
}

func TestAppendStructRefusesWhatProtojsonRefuses(t *testing.T) {
	for name, v := range map[string]*structpb.Value{
		"NaN":      structpb.NewNumberValue(math.NaN()),
		"infinity": structpb.NewNumberValue(math.Inf(-1)),
		"unset":    {},
		"nested":   structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{{}}}),
	} {
		t.Run(name, func(t *testing.T) {
			s := &structpb.Struct{Fields: map[string]*structpb.Value{"v": v}}
			if _, err := protojson.Marshal(s); err == nil {
				t.Fatal("protojson accepts it: the case is wrong")
			}
			if b, ok := AppendStruct(nil, s); ok {
				t.Fatalf("AppendStruct wrote %s", b)
			}
		})
	}
}

// FuzzAppendString checks that the string encoder writes JSON that reads
// back as the string itself (each invalid byte as U+FFFD), on both of its
// paths.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "石家庄市藁城区", "a\"b\\c\nd\re\tf\x01\x1f", "\u2028\u2029", "bad \xff utf-8", "\xe4\xb8"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%q encodes to %s, not a JSON string: %v", s, b, err)
		}
		var want strings.Builder
		for _, r := range s { // an invalid byte ranges as U+FFFD
			want.WriteRune(r)
		}
		if back != want.String() {
			t.Fatalf("%q encodes to %s, which reads back as %q", s, b, back)
		}
	})
}
