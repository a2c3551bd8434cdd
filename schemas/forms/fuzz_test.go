package forms

import (
	"errors"
	"os"
	"testing"
	"testing/fstest"

	"github.com/tongban/tongban/schemas/datasets"
)

// FuzzParse parses an arbitrary document as a form template: Parse must
// never panic; a template it accepts is complete, and a refusal is a list of
// *Error naming the file.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"open_restaurant.yaml", "tour_guide_certificate.yaml", "food_business_licence.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"",
		"kind: form\nid: x\n",
		"kind: bundle\nid: b\nforms: [x, x]\n",
		"kind: form\nid: f\ntitle: t\npurpose: approval\nlegal_basis: l\napplicant_kind: enterprise\nsources:\n  - {name: s, dataset: market.enterprises, by: credit_code}\nfields:\n  - {name: a, source: s.name, check: s.name}\n",
		"kind: form\nid: f\nfields:\n  - {name: a, concat: [s.x, s.y], transforms: [{derive: gender}]}\n",
		"- [a\n",
		"&a [*a, *a]\n",
	} {
		f.Add([]byte(s))
	}
	dict := datasets.Default()
	f.Fuzz(func(t *testing.T, b []byte) {
		fsys := fstest.MapFS{"fuzz.yaml": &fstest.MapFile{Data: b}}
		c, err := Parse(dict, fsys, "templates")
		if err != nil {
			var joined interface{ Unwrap() []error }
			if errors.As(err, &joined) {
				for _, e := range joined.Unwrap() {
					var fe *Error
					if !errors.As(e, &fe) {
						t.Fatalf("refusal is %T, not *Error: %v", e, e)
					}
				}
			}
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		for _, fm := range c.Forms {
			if fm.ID == "" || fm.Title == "" {
				t.Fatalf("accepted a form without id or title: %+v", fm)
			}
			if got, ok := c.Form(fm.ID); !ok || got != fm {
				t.Fatalf("form %q is not found by id", fm.ID)
			}
			for _, fld := range fm.Fields {
				if fld.Name == "" {
					t.Fatalf("form %q has a field without a name", fm.ID)
				}
			}
		}
	})
}
