package datasets

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// TestDictionaryMatchesRecords checks that every dataset's fields are exactly
// the fields of its canonical record message.
func TestDictionaryMatchesRecords(t *testing.T) {
	_ = v1.File_tongban_v1_records_proto // register the messages
	d := Default()
	for _, ds := range d.Datasets {
		t.Run(ds.Name, func(t *testing.T) {
			mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(ds.Record))
			if err != nil {
				t.Fatalf("record %s: %v", ds.Record, err)
			}
			var want []string
			fields := mt.Descriptor().Fields()
			for i := 0; i < fields.Len(); i++ {
				want = append(want, string(fields.Get(i).Name()))
			}
			got := ds.FieldNames()
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Errorf("fields = %v, record %s has %v", got, ds.Record, want)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	cases := map[string]string{
		"unknown key":       "departments: []\nbogus: 1\n",
		"undeclared dept":   "datasets:\n- {name: x.y, department: x, kind: approval, sharing: conditional, sensitivity: normal, freshness: 1m, keys: [a], fields: [{name: a, type: string, class: public}]}\n",
		"bad class":         "departments: [{id: x}]\ndatasets:\n- {name: x.y, department: x, kind: approval, sharing: conditional, sensitivity: normal, freshness: 1m, keys: [a], fields: [{name: a, type: string, class: secret}]}\n",
		"key not a field":   "departments: [{id: x}]\ndatasets:\n- {name: x.y, department: x, kind: approval, sharing: conditional, sensitivity: normal, freshness: 1m, keys: [b], fields: [{name: a, type: string, class: public}]}\n",
		"bad sharing":       "departments: [{id: x}]\ndatasets:\n- {name: x.y, department: x, kind: approval, sharing: open, sensitivity: normal, freshness: 1m, keys: [a], fields: [{name: a, type: string, class: public}]}\n",
		"name without dept": "departments: [{id: x}]\ndatasets:\n- {name: y, department: x, kind: approval, sharing: conditional, sensitivity: normal, freshness: 1m, keys: [a], fields: [{name: a, type: string, class: public}]}\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse([]byte(in)); err == nil {
				t.Fatal("Parse succeeded, want error")
			}
		})
	}
}
