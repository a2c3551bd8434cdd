// Package forms loads the application-form templates and one-thing bundles
// (一件事) that the gateway fills from department records. Templates are YAML
// files embedded in the binary and validated against the dataset dictionary
// when loaded; every error names the file, the line and the template field.
//
// A form declares its sources (a dataset looked up by the applicant's
// identifier, with an optional selector), its fields (each drawn from a
// source field, or a concatenation of several, through transforms, with an
// optional second source for cross-checking) and its materials (documents
// the applicant need not hand in when a department record satisfies them).
// See docs/forms.md.
package forms

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/schemas/datasets"
)

//go:embed *.yaml
var embedded embed.FS

// EmbeddedDir is the directory the embedded templates come from, used to
// name files in error messages.
const EmbeddedDir = "schemas/forms"

// Applicant kinds.
const (
	ApplicantEnterprise = "enterprise"
	ApplicantPerson     = "person"
)

// Kinds of template files.
const (
	KindForm   = "form"
	KindBundle = "bundle"
)

// Catalog holds every form and bundle.
type Catalog struct {
	// Forms in the order of their ids.
	Forms []*Form
	// Bundles in the order of their ids.
	Bundles []*Bundle

	forms   map[string]*Form
	bundles map[string]*Bundle
}

// Form is one application form template.
type Form struct {
	Kind          string      `yaml:"kind"`
	ID            string      `yaml:"id"`
	Title         string      `yaml:"title"`
	Purpose       string      `yaml:"purpose"`
	LegalBasis    string      `yaml:"legal_basis"`
	ApplicantKind string      `yaml:"applicant_kind"`
	Sources       []*Source   `yaml:"sources"`
	Fields        []*Field    `yaml:"fields"`
	Materials     []*Material `yaml:"materials"`

	// File is the template's file name.
	File string `yaml:"-"`

	pos     pos
	sources map[string]*Source
}

// Source is a dataset looked up by the applicant's identifier: the records
// whose By field equals the applicant ID, narrowed by Where and Match, the
// one with the greatest Latest field (or the first by record id) chosen.
type Source struct {
	// Name is how fields refer to the source, e.g. "licence".
	Name string `yaml:"name"`
	// Dataset is a dataset of the dictionary.
	Dataset string `yaml:"dataset"`
	// By is the key or lookup field of the dataset that holds the
	// applicant's identifier.
	By string `yaml:"by"`
	// Where keeps records whose field equals one of the listed values.
	Where map[string]StringList `yaml:"where"`
	// Match keeps records whose field equals a field of another source's
	// chosen record, written "source.field".
	Match map[string]string `yaml:"match"`
	// Latest chooses, among several records, the one whose field sorts last
	// (ISO dates sort as text).
	Latest string `yaml:"latest"`

	// Matches is Match parsed.
	Matches map[string]Ref `yaml:"-"`

	pos pos
}

// Field is one field of a form.
type Field struct {
	Name     string `yaml:"name"`
	Label    string `yaml:"label"`
	Required bool   `yaml:"required"`
	// Source is "source.field".
	Source string `yaml:"source"`
	// Concat lists several "source.field" joined with Separator.
	Concat    []string `yaml:"concat"`
	Separator string   `yaml:"separator"`
	// Check is an optional second "source.field" that must agree with the
	// first; when both have values and they differ, the field stays
	// unfilled with both values listed. When the first has none, the
	// second fills the field.
	Check      string       `yaml:"check"`
	Transforms []*Transform `yaml:"transforms"`

	// From, Parts and CheckRef are Source, Concat and Check parsed.
	From     Ref   `yaml:"-"`
	Parts    []Ref `yaml:"-"`
	CheckRef *Ref  `yaml:"-"`

	pos pos
}

// Refs returns every source field the field reads.
func (f *Field) Refs() []Ref {
	var out []Ref
	if f.From.Source != "" {
		out = append(out, f.From)
	}
	out = append(out, f.Parts...)
	if f.CheckRef != nil {
		out = append(out, *f.CheckRef)
	}
	return out
}

// Primary returns the first source field the field reads.
func (f *Field) Primary() Ref {
	if f.From.Source != "" {
		return f.From
	}
	return f.Parts[0]
}

// Material is a document the applicant would otherwise hand in.
type Material struct {
	Name string `yaml:"name"`
	// SatisfiedBy names the source whose chosen record satisfies the
	// material, and conditions on it; nil means no department holds it and
	// the applicant must hand it in.
	SatisfiedBy *Condition `yaml:"satisfied_by"`

	pos pos
}

// Condition is satisfied by a source record meeting Where.
type Condition struct {
	Source string                `yaml:"source"`
	Where  map[string]StringList `yaml:"where"`
}

// Ref names a field of a source.
type Ref struct {
	Source string
	Field  string
}

// String returns "source.field".
func (r Ref) String() string { return r.Source + "." + r.Field }

// Bundle is a one-thing bundle: several forms of one composite matter filled
// in one request.
type Bundle struct {
	Kind  string   `yaml:"kind"`
	ID    string   `yaml:"id"`
	Title string   `yaml:"title"`
	Forms []string `yaml:"forms"`

	// File is the template's file name.
	File string `yaml:"-"`

	pos pos
}

// StringList is a YAML scalar or sequence of scalars.
type StringList []string

// UnmarshalYAML implements yaml.Unmarshaler.
func (l *StringList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*l = StringList{n.Value}
		return nil
	case yaml.SequenceNode:
		var s []string
		if err := n.Decode(&s); err != nil {
			return err
		}
		*l = s
		return nil
	}
	return fmt.Errorf("line %d: want a value or a list of values", n.Line)
}

// pos is where an item and its keys are in the file.
type pos struct {
	line int
	keys map[string]int
}

func (p pos) at(key string) int {
	if l, ok := p.keys[key]; ok {
		return l
	}
	return p.line
}

func posOf(n *yaml.Node) pos {
	p := pos{line: n.Line, keys: map[string]int{}}
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			p.keys[n.Content[i].Value] = n.Content[i].Line
		}
	}
	return p
}

// Error is one problem of a template file.
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

// Error implements error: "file:line: field: message".
func (e *Error) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s: %s", e.File, e.Line, e.Field, e.Msg)
}

// Default returns the embedded catalog, validated against the embedded
// dataset dictionary. It panics if a template is invalid, which a test
// rules out.
func Default() *Catalog {
	c, err := Load(datasets.Default())
	if err != nil {
		panic(fmt.Sprintf("embedded form templates: %v", err))
	}
	return c
}

// Load parses and validates the embedded templates against dict.
func Load(dict *datasets.Dictionary) (*Catalog, error) {
	return Parse(dict, embedded, EmbeddedDir)
}

// Parse reads every *.yaml file at the root of fsys and validates the forms
// and bundles against dict. dir is prefixed to file names in errors. All
// problems found are returned, joined; each is an *Error.
func Parse(dict *datasets.Dictionary, fsys fs.FS, dir string) (*Catalog, error) {
	names, err := fs.Glob(fsys, "*.yaml")
	if err != nil {
		return nil, fmt.Errorf("listing form templates: %w", err)
	}
	slices.Sort(names)
	c := &Catalog{forms: map[string]*Form{}, bundles: map[string]*Bundle{}}
	var errs []error
	for _, name := range names {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading form template %s: %w", name, err)
		}
		file := name
		if dir != "" {
			file = path.Join(dir, name)
		}
		errs = append(errs, c.parseFile(dict, file, b)...)
	}
	for _, b := range c.Bundles {
		errs = append(errs, c.checkBundle(b)...)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.SortFunc(c.Forms, func(a, b *Form) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(c.Bundles, func(a, b *Bundle) int { return strings.Compare(a.ID, b.ID) })
	return c, nil
}

// Form returns the form with the given id.
func (c *Catalog) Form(id string) (*Form, bool) {
	f, ok := c.forms[id]
	return f, ok
}

// Bundle returns the bundle with the given id.
func (c *Catalog) Bundle(id string) (*Bundle, bool) {
	b, ok := c.bundles[id]
	return b, ok
}

// Source returns the form's source of that name.
func (f *Form) Source(name string) (*Source, bool) {
	s, ok := f.sources[name]
	return s, ok
}

// Field returns the form's field of that name.
func (f *Form) Field(name string) (*Field, bool) {
	i := slices.IndexFunc(f.Fields, func(x *Field) bool { return x.Name == name })
	if i < 0 {
		return nil, false
	}
	return f.Fields[i], true
}

func (c *Catalog) parseFile(dict *datasets.Dictionary, file string, b []byte) []error {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return []error{&Error{File: file, Line: yamlLine(err), Msg: err.Error()}}
	}
	if len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return []error{&Error{File: file, Line: 1, Msg: "a template must be a YAML mapping"}}
	}
	doc := root.Content[0]
	top := posOf(doc)
	kind := ""
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value == "kind" {
			kind = doc.Content[i+1].Value
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	switch kind {
	case KindForm:
		f := &Form{File: file, pos: top}
		if err := dec.Decode(f); err != nil {
			return []error{&Error{File: file, Line: yamlLine(err), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
		attachPositions(doc, f)
		errs := c.checkForm(dict, f)
		if len(errs) == 0 {
			c.Forms = append(c.Forms, f)
			c.forms[f.ID] = f
		}
		return errs
	case KindBundle:
		bu := &Bundle{File: file, pos: top}
		if err := dec.Decode(bu); err != nil {
			return []error{&Error{File: file, Line: yamlLine(err), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}}
		}
		if prev, dup := c.bundles[bu.ID]; dup {
			return []error{&Error{File: file, Line: top.at("id"), Field: "id", Msg: fmt.Sprintf("bundle %q is also defined in %s", bu.ID, prev.File)}}
		}
		c.Bundles = append(c.Bundles, bu)
		c.bundles[bu.ID] = bu
		return nil
	}
	return []error{&Error{File: file, Line: top.at("kind"), Field: "kind", Msg: fmt.Sprintf("must be %q or %q, not %q", KindForm, KindBundle, kind)}}
}

// attachPositions records the lines of the sources, fields and materials.
func attachPositions(doc *yaml.Node, f *Form) {
	for i := 0; i+1 < len(doc.Content); i += 2 {
		seq := doc.Content[i+1]
		if seq.Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range seq.Content {
			switch doc.Content[i].Value {
			case "sources":
				if j < len(f.Sources) && f.Sources[j] != nil {
					f.Sources[j].pos = posOf(item)
				}
			case "fields":
				if j < len(f.Fields) && f.Fields[j] != nil {
					f.Fields[j].pos = posOf(item)
				}
			case "materials":
				if j < len(f.Materials) && f.Materials[j] != nil {
					f.Materials[j].pos = posOf(item)
				}
			}
		}
	}
}

// yamlLine extracts the first line number of a yaml.v3 error.
func yamlLine(err error) int {
	s := err.Error()
	i := strings.Index(s, "line ")
	if i < 0 {
		return 1
	}
	n := 0
	for _, r := range s[i+5:] {
		if r < '0' || r > '9' {
			break
		}
		n = n*10 + int(r-'0')
	}
	if n == 0 {
		return 1
	}
	return n
}

var idPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

func (c *Catalog) checkForm(dict *datasets.Dictionary, f *Form) []error {
	var errs []error
	bad := func(line int, field, format string, args ...any) {
		errs = append(errs, &Error{File: f.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !idPattern.MatchString(f.ID) {
		bad(f.pos.at("id"), "id", "must be lowercase letters, digits and underscores, got %q", f.ID)
	} else if prev, dup := c.forms[f.ID]; dup {
		bad(f.pos.at("id"), "id", "form %q is also defined in %s", f.ID, prev.File)
	}
	for _, req := range []struct{ key, val string }{{"title", f.Title}, {"purpose", f.Purpose}, {"legal_basis", f.LegalBasis}} {
		if strings.TrimSpace(req.val) == "" {
			bad(f.pos.at(req.key), req.key, "is required")
		}
	}
	if f.ApplicantKind != ApplicantEnterprise && f.ApplicantKind != ApplicantPerson {
		bad(f.pos.at("applicant_kind"), "applicant_kind", "must be %q or %q, not %q", ApplicantEnterprise, ApplicantPerson, f.ApplicantKind)
	}
	if len(f.Fields) == 0 {
		bad(f.pos.at("fields"), "fields", "a form needs at least one field")
	}

	// Sources.
	f.sources = map[string]*Source{}
	for i, s := range f.Sources {
		where := fmt.Sprintf("sources[%d]", i)
		if s == nil {
			bad(f.pos.at("sources"), where, "is empty")
			continue
		}
		if s.Name != "" {
			where += " (" + s.Name + ")"
		}
		if !idPattern.MatchString(s.Name) {
			bad(s.pos.at("name"), where+".name", "must be lowercase letters, digits and underscores, got %q", s.Name)
		} else if _, dup := f.sources[s.Name]; dup {
			bad(s.pos.at("name"), where+".name", "source %q is declared twice", s.Name)
		}
		f.sources[s.Name] = s
		ds, ok := dict.Dataset(s.Dataset)
		if !ok {
			bad(s.pos.at("dataset"), where+".dataset", "dataset %q is not in the dictionary", s.Dataset)
			continue
		}
		if !ds.IsLookup(s.By) {
			bad(s.pos.at("by"), where+".by", "%s cannot be looked up by %q; use one of %s",
				ds.Name, s.By, strings.Join(append(slices.Clone(ds.Keys), ds.Lookups...), ", "))
		} else if fd, _ := ds.Field(s.By); !identFits(fd.Ident, f.ApplicantKind) {
			bad(s.pos.at("by"), where+".by", "%s.%s holds %s identifiers, which cannot name a %s applicant",
				ds.Name, s.By, identName(fd.Ident), f.ApplicantKind)
		}
		for _, k := range slices.Sorted(maps.Keys(s.Where)) {
			if !ds.HasField(k) {
				bad(s.pos.at("where"), where+".where."+k, "%q is not a field of %s", k, ds.Name)
			}
			if len(s.Where[k]) == 0 {
				bad(s.pos.at("where"), where+".where."+k, "lists no values")
			}
		}
		if s.Latest != "" && !ds.HasField(s.Latest) {
			bad(s.pos.at("latest"), where+".latest", "%q is not a field of %s", s.Latest, ds.Name)
		}
	}
	// Matches refer to other sources; resolve once all are known.
	for i, s := range f.Sources {
		if s == nil {
			continue
		}
		ds, ok := dict.Dataset(s.Dataset)
		if !ok {
			continue
		}
		s.Matches = map[string]Ref{}
		for _, k := range slices.Sorted(maps.Keys(s.Match)) {
			where := fmt.Sprintf("sources[%d] (%s).match.%s", i, s.Name, k)
			if !ds.HasField(k) {
				bad(s.pos.at("match"), where, "%q is not a field of %s", k, ds.Name)
				continue
			}
			r, msg := f.resolve(dict, s.Match[k])
			if msg != "" {
				bad(s.pos.at("match"), where, "%s", msg)
				continue
			}
			if r.Source == s.Name {
				bad(s.pos.at("match"), where, "a source cannot match itself")
				continue
			}
			s.Matches[k] = r
		}
	}
	if cyc := f.matchCycle(); cyc != "" {
		bad(f.pos.at("sources"), "sources", "match references form a cycle: %s", cyc)
	}

	// Fields.
	seen := map[string]bool{}
	for i, fd := range f.Fields {
		where := fmt.Sprintf("fields[%d]", i)
		if fd == nil {
			bad(f.pos.at("fields"), where, "is empty")
			continue
		}
		if fd.Name != "" {
			where += " (" + fd.Name + ")"
		}
		if !idPattern.MatchString(fd.Name) {
			bad(fd.pos.at("name"), where+".name", "must be lowercase letters, digits and underscores, got %q", fd.Name)
		} else if seen[fd.Name] {
			bad(fd.pos.at("name"), where+".name", "field %q is declared twice", fd.Name)
		}
		seen[fd.Name] = true
		if strings.TrimSpace(fd.Label) == "" {
			bad(fd.pos.at("label"), where+".label", "is required")
		}
		switch {
		case fd.Source != "" && len(fd.Concat) > 0:
			bad(fd.pos.at("concat"), where, "give source or concat, not both")
		case fd.Source == "" && len(fd.Concat) == 0:
			bad(fd.pos.line, where+".source", "is required (or concat)")
		case fd.Source != "":
			r, msg := f.resolve(dict, fd.Source)
			if msg != "" {
				bad(fd.pos.at("source"), where+".source", "%s", msg)
			}
			fd.From = r
		default:
			if len(fd.Concat) < 2 {
				bad(fd.pos.at("concat"), where+".concat", "needs at least two sources")
			}
			for j, s := range fd.Concat {
				r, msg := f.resolve(dict, s)
				if msg != "" {
					bad(fd.pos.at("concat"), fmt.Sprintf("%s.concat[%d]", where, j), "%s", msg)
				}
				fd.Parts = append(fd.Parts, r)
			}
		}
		if fd.Separator != "" && len(fd.Concat) == 0 {
			bad(fd.pos.at("separator"), where+".separator", "only applies to concat")
		}
		if fd.Check != "" {
			r, msg := f.resolve(dict, fd.Check)
			if msg != "" {
				bad(fd.pos.at("check"), where+".check", "%s", msg)
			} else if len(fd.Concat) > 0 {
				bad(fd.pos.at("check"), where+".check", "cross-checking applies to source, not concat")
			} else if r == fd.From {
				bad(fd.pos.at("check"), where+".check", "must name a different source field than source")
			}
			fd.CheckRef = &r
		}
		for j, t := range fd.Transforms {
			tw := fmt.Sprintf("%s.transforms[%d]", where, j)
			if t == nil {
				bad(fd.pos.at("transforms"), tw, "is empty")
				continue
			}
			if msg := t.validate(); msg != "" {
				bad(fd.pos.at("transforms"), tw, "%s", msg)
			}
		}
	}

	// Materials.
	for i, m := range f.Materials {
		where := fmt.Sprintf("materials[%d]", i)
		if m == nil {
			bad(f.pos.at("materials"), where, "is empty")
			continue
		}
		if strings.TrimSpace(m.Name) == "" {
			bad(m.pos.at("name"), where+".name", "is required")
		}
		if m.SatisfiedBy == nil {
			continue
		}
		s, ok := f.sources[m.SatisfiedBy.Source]
		if !ok {
			bad(m.pos.at("satisfied_by"), where+".satisfied_by.source", "no source is named %q", m.SatisfiedBy.Source)
			continue
		}
		ds, ok := dict.Dataset(s.Dataset)
		if !ok {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(m.SatisfiedBy.Where)) {
			if !ds.HasField(k) {
				bad(m.pos.at("satisfied_by"), where+".satisfied_by.where."+k, "%q is not a field of %s", k, ds.Name)
			}
		}
	}
	return errs
}

// resolve parses "source.field" and checks both exist.
func (f *Form) resolve(dict *datasets.Dictionary, s string) (Ref, string) {
	src, field, ok := strings.Cut(s, ".")
	if !ok || src == "" || field == "" {
		return Ref{}, fmt.Sprintf("%q must be written source.field", s)
	}
	sc, ok := f.sources[src]
	if !ok {
		return Ref{}, fmt.Sprintf("no source is named %q", src)
	}
	ds, ok := dict.Dataset(sc.Dataset)
	if !ok {
		return Ref{}, fmt.Sprintf("source %q has an unknown dataset", src)
	}
	if !ds.HasField(field) {
		return Ref{}, fmt.Sprintf("dataset %s (source %s) has no field %q", ds.Name, src, field)
	}
	return Ref{Source: src, Field: field}, ""
}

// matchCycle returns a description of a cycle of match references, or "".
func (f *Form) matchCycle() string {
	state := map[string]int{} // 1 visiting, 2 done
	var path []string
	var visit func(name string) string
	visit = func(name string) string {
		switch state[name] {
		case 1:
			return strings.Join(append(path, name), " → ")
		case 2:
			return ""
		}
		state[name] = 1
		path = append(path, name)
		if s, ok := f.sources[name]; ok {
			for _, k := range slices.Sorted(maps.Keys(s.Matches)) {
				if c := visit(s.Matches[k].Source); c != "" {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[name] = 2
		return ""
	}
	for _, s := range f.Sources {
		if s == nil {
			continue
		}
		if c := visit(s.Name); c != "" {
			return c
		}
	}
	return ""
}

func (c *Catalog) checkBundle(b *Bundle) []error {
	var errs []error
	bad := func(line int, field, format string, args ...any) {
		errs = append(errs, &Error{File: b.File, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
	}
	if !idPattern.MatchString(b.ID) {
		bad(b.pos.at("id"), "id", "must be lowercase letters, digits and underscores, got %q", b.ID)
	}
	if _, clash := c.forms[b.ID]; clash {
		bad(b.pos.at("id"), "id", "%q is also the id of a form", b.ID)
	}
	if strings.TrimSpace(b.Title) == "" {
		bad(b.pos.at("title"), "title", "is required")
	}
	if len(b.Forms) < 2 {
		bad(b.pos.at("forms"), "forms", "a bundle needs at least two forms")
	}
	kind := ""
	for i, id := range b.Forms {
		f, ok := c.forms[id]
		if !ok {
			bad(b.pos.at("forms"), fmt.Sprintf("forms[%d]", i), "no form has id %q", id)
			continue
		}
		if slices.Index(b.Forms, id) != i {
			bad(b.pos.at("forms"), fmt.Sprintf("forms[%d]", i), "form %q is listed twice", id)
		}
		if kind == "" {
			kind = f.ApplicantKind
		} else if f.ApplicantKind != kind {
			bad(b.pos.at("forms"), fmt.Sprintf("forms[%d]", i), "form %q is for a %s applicant, the others for a %s", id, f.ApplicantKind, kind)
		}
	}
	return errs
}

// identFits reports whether a lookup field holding identifiers of kind can
// name an applicant of the form's kind.
func identFits(kind, applicant string) bool {
	switch kind {
	case "party":
		return true
	case "credit_code":
		return applicant == ApplicantEnterprise
	case "resident_id":
		return applicant == ApplicantPerson
	}
	return false
}

func identName(kind string) string {
	if kind == "" {
		return "no applicant"
	}
	return kind
}
