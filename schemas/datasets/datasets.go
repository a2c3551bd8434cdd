// Package datasets loads the dataset dictionary: every dataset the exchange
// knows, its sharing class, sensitivity, keys and the classification of each
// field. The dictionary is embedded in the binary and validated when loaded.
package datasets

import (
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"gopkg.in/yaml.v3"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

//go:embed datasets.yaml
var embedded []byte

// Department is a department that holds datasets.
type Department struct {
	ID    string `yaml:"id"`
	Name  string `yaml:"name"`
	Title string `yaml:"title"`
}

// Field is one field of a dataset.
type Field struct {
	Name  string `yaml:"name"`
	Title string `yaml:"title"`
	Type  string `yaml:"type"`
	Class string `yaml:"class"`
	// Ident says the field holds an identifier: "credit_code", "resident_id"
	// or "party" (either); queries naming it are validated.
	Ident string `yaml:"ident"`
}

// Dataset is one dataset of the dictionary.
type Dataset struct {
	Name        string        `yaml:"name"`
	Title       string        `yaml:"title"`
	Department  string        `yaml:"department"`
	Kind        string        `yaml:"kind"`
	Record      string        `yaml:"record"`
	Sharing     string        `yaml:"sharing"`
	Sensitivity string        `yaml:"sensitivity"`
	Keys        []string      `yaml:"keys"`
	Lookups     []string      `yaml:"lookups"`
	RegionField string        `yaml:"region_field"`
	SubjectFld  string        `yaml:"subject_field"`
	Freshness   time.Duration `yaml:"freshness"`
	Fields      []Field       `yaml:"fields"`

	byName map[string]int
}

// Dictionary is the whole dataset dictionary.
type Dictionary struct {
	Departments []Department `yaml:"departments"`
	Datasets    []*Dataset   `yaml:"datasets"`

	byName map[string]*Dataset
}

// Default returns the embedded dictionary. It panics if the embedded file is
// invalid, which a test rules out.
func Default() *Dictionary {
	d, err := Parse(embedded)
	if err != nil {
		panic(fmt.Sprintf("embedded dataset dictionary: %v", err))
	}
	return d
}

// Parse decodes and validates a dictionary.
func Parse(b []byte) (*Dictionary, error) {
	var d Dictionary
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("decoding dataset dictionary: %w", err)
	}
	if err := d.init(); err != nil {
		return nil, err
	}
	return &d, nil
}

var (
	sharingClasses = []string{"unconditional", "conditional", "not_shared"}
	sensitivities  = []string{"normal", "major"}
	fieldClasses   = []string{"public", "internal", "sensitive", "personal"}
	fieldTypes     = []string{"string", "number", "integer", "bool", "date", "geometry"}
	kinds          = []string{"approval", "licence", "spatial", "register"}
	identKinds     = []string{"credit_code", "resident_id", "party"}
)

func (d *Dictionary) init() error {
	deps := map[string]bool{}
	for _, dep := range d.Departments {
		if dep.ID == "" {
			return fmt.Errorf("departments: id is empty")
		}
		deps[dep.ID] = true
	}
	d.byName = make(map[string]*Dataset, len(d.Datasets))
	for i, ds := range d.Datasets {
		where := fmt.Sprintf("datasets[%d] (%s)", i, ds.Name)
		if ds.Name == "" || !strings.HasPrefix(ds.Name, ds.Department+".") {
			return fmt.Errorf("%s: name must be <department>.<dataset>", where)
		}
		if _, dup := d.byName[ds.Name]; dup {
			return fmt.Errorf("%s: duplicate dataset", where)
		}
		if !deps[ds.Department] {
			return fmt.Errorf("%s: department %q is not declared", where, ds.Department)
		}
		for _, c := range []struct {
			key, val string
			allowed  []string
		}{
			{"sharing", ds.Sharing, sharingClasses},
			{"sensitivity", ds.Sensitivity, sensitivities},
			{"kind", ds.Kind, kinds},
		} {
			if !slices.Contains(c.allowed, c.val) {
				return fmt.Errorf("%s: %s %q is not one of %v", where, c.key, c.val, c.allowed)
			}
		}
		if ds.Freshness <= 0 {
			return fmt.Errorf("%s: freshness must be positive", where)
		}
		ds.byName = make(map[string]int, len(ds.Fields))
		for j, f := range ds.Fields {
			if _, dup := ds.byName[f.Name]; dup {
				return fmt.Errorf("%s: field %q is declared twice", where, f.Name)
			}
			if !slices.Contains(fieldClasses, f.Class) {
				return fmt.Errorf("%s: field %q: class %q is not one of %v", where, f.Name, f.Class, fieldClasses)
			}
			if !slices.Contains(fieldTypes, f.Type) {
				return fmt.Errorf("%s: field %q: type %q is not one of %v", where, f.Name, f.Type, fieldTypes)
			}
			if f.Ident != "" && !slices.Contains(identKinds, f.Ident) {
				return fmt.Errorf("%s: field %q: ident %q is not one of %v", where, f.Name, f.Ident, identKinds)
			}
			ds.byName[f.Name] = j
		}
		if len(ds.Keys) == 0 {
			return fmt.Errorf("%s: keys is empty", where)
		}
		for _, k := range append(append(slices.Clone(ds.Keys), ds.Lookups...), ds.RegionField, ds.SubjectFld) {
			if k == "" {
				continue
			}
			if !ds.HasField(k) {
				return fmt.Errorf("%s: %q is named as a key, lookup, region or subject field but is not a field", where, k)
			}
		}
		d.byName[ds.Name] = ds
	}
	return nil
}

// Dataset returns the dataset with the given name.
func (d *Dictionary) Dataset(name string) (*Dataset, bool) {
	ds, ok := d.byName[name]
	return ds, ok
}

// Department returns the department with the given id.
func (d *Dictionary) Department(id string) (Department, bool) {
	for _, dep := range d.Departments {
		if dep.ID == id {
			return dep, true
		}
	}
	return Department{}, false
}

// HasField reports whether the dataset has a field of that name.
func (ds *Dataset) HasField(name string) bool {
	_, ok := ds.byName[name]
	return ok
}

// Field returns the field of that name.
func (ds *Dataset) Field(name string) (Field, bool) {
	i, ok := ds.byName[name]
	if !ok {
		return Field{}, false
	}
	return ds.Fields[i], true
}

// FieldNames returns the names of all fields, in dictionary order.
func (ds *Dataset) FieldNames() []string {
	names := make([]string, len(ds.Fields))
	for i, f := range ds.Fields {
		names[i] = f.Name
	}
	return names
}

// IsLookup reports whether name is a key or lookup field: one a query may
// select records by.
func (ds *Dataset) IsLookup(name string) bool {
	return slices.Contains(ds.Keys, name) || slices.Contains(ds.Lookups, name)
}

// Descriptor returns the dataset as the connector contract describes it.
func (ds *Dataset) Descriptor() *v1.DatasetDescriptor {
	out := &v1.DatasetDescriptor{
		Name:         ds.Name,
		Title:        ds.Title,
		Kind:         KindOf(ds.Kind),
		KeyFields:    slices.Clone(ds.Keys),
		Freshness:    durationpb.New(ds.Freshness),
		RegionField:  ds.RegionField,
		SubjectField: ds.SubjectFld,
	}
	for _, f := range ds.Fields {
		out.Fields = append(out.Fields, &v1.FieldDescriptor{
			Name:           f.Name,
			Title:          f.Title,
			Type:           TypeOf(f.Type),
			Classification: ClassOf(f.Class),
		})
	}
	return out
}

// KindOf maps a dictionary kind to the proto enum.
func KindOf(s string) v1.DatasetKind {
	return v1.DatasetKind(v1.DatasetKind_value["DATASET_KIND_"+strings.ToUpper(s)])
}

// TypeOf maps a dictionary field type to the proto enum.
func TypeOf(s string) v1.FieldType {
	return v1.FieldType(v1.FieldType_value["FIELD_TYPE_"+strings.ToUpper(s)])
}

// ClassOf maps a dictionary field class to the proto enum.
func ClassOf(s string) v1.Classification {
	return v1.Classification(v1.Classification_value["CLASSIFICATION_"+strings.ToUpper(s)])
}

// SharingOf maps a dictionary sharing class to the proto enum.
func SharingOf(s string) v1.SharingClass {
	return v1.SharingClass(v1.SharingClass_value["SHARING_CLASS_"+strings.ToUpper(s)])
}

// SensitivityOf maps a dictionary sensitivity to the proto enum.
func SensitivityOf(s string) v1.Sensitivity {
	return v1.Sensitivity(v1.Sensitivity_value["SENSITIVITY_"+strings.ToUpper(s)])
}
