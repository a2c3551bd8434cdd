package policy

import (
	"context"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"

	"github.com/tongban/tongban/schemas/apierr"
	"github.com/tongban/tongban/schemas/datasets"
	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

type caseGrant struct {
	ID           string            `yaml:"id"`
	State        string            `yaml:"state"`
	SystemID     string            `yaml:"system_id"`
	Department   string            `yaml:"department"`
	Role         string            `yaml:"role"`
	Dataset      string            `yaml:"dataset"`
	Fields       []string          `yaml:"fields"`
	Masks        map[string]string `yaml:"masks"`
	Purposes     []string          `yaml:"purposes"`
	LegalBasis   string            `yaml:"legal_basis"`
	Jurisdiction string            `yaml:"jurisdiction"`
	ValidFrom    *time.Time        `yaml:"valid_from"`
	ValidUntil   *time.Time        `yaml:"valid_until"`
	Quota        *struct {
		PerMinute int32 `yaml:"per_minute"`
		PerDay    int32 `yaml:"per_day"`
	} `yaml:"quota"`
}

func (c caseGrant) proto(t *testing.T) *v1.Grant {
	g := &v1.Grant{
		Id:           c.ID,
		Consumer:     &v1.Consumer{SystemId: c.SystemID, Department: c.Department, Role: c.Role},
		Dataset:      c.Dataset,
		Fields:       c.Fields,
		Purposes:     c.Purposes,
		LegalBasis:   c.LegalBasis,
		Jurisdiction: c.Jurisdiction,
		State:        v1.GrantState_GRANT_STATE_ACTIVE,
	}
	if c.State != "" {
		g.State = v1.GrantState(enumValue(t, v1.GrantState_value, "GRANT_STATE_", c.State))
	}
	for _, f := range slices.Sorted(maps.Keys(c.Masks)) {
		g.Masks = append(g.Masks, &v1.FieldMask{Field: f, Mask: maskKind(t, c.Masks[f])})
	}
	if c.ValidFrom != nil {
		g.ValidFrom = timestamppb.New(*c.ValidFrom)
	}
	if c.ValidUntil != nil {
		g.ValidUntil = timestamppb.New(*c.ValidUntil)
	}
	if c.Quota != nil {
		g.Quota = &v1.Quota{PerMinute: c.Quota.PerMinute, PerDay: c.Quota.PerDay}
	}
	return g
}

type decideCase struct {
	Name       string   `yaml:"name"`
	Use        []string `yaml:"use"`
	Dictionary string   `yaml:"dictionary"`
	Demo       bool     `yaml:"demo"`
	// Calls, when set, runs the request that many times through
	// DecideWithQuota with one MemoryLimiter and checks the last answer.
	Calls   int `yaml:"calls"`
	Request struct {
		SystemID   string     `yaml:"system_id"`
		Department string     `yaml:"department"`
		Region     string     `yaml:"region"`
		Roles      []string   `yaml:"roles"`
		Dataset    string     `yaml:"dataset"`
		Fields     []string   `yaml:"fields"`
		Purpose    string     `yaml:"purpose"`
		Time       *time.Time `yaml:"time"`
	} `yaml:"request"`
	Want struct {
		Fields        []string          `yaml:"fields"`
		Masks         map[string]string `yaml:"masks"`
		Jurisdiction  []string          `yaml:"jurisdiction"`
		GrantIDs      *[]string         `yaml:"grant_ids"`
		LegalBasis    []string          `yaml:"legal_basis"`
		Withheld      map[string]string `yaml:"withheld"`
		Unconditional *bool             `yaml:"unconditional"`
		Quotas        []struct {
			GrantID   string `yaml:"grant_id"`
			PerMinute int    `yaml:"per_minute"`
			PerDay    int    `yaml:"per_day"`
		} `yaml:"quotas"`
		Admits    map[string]bool     `yaml:"admits"`
		FieldsFor map[string][]string `yaml:"fields_for"`
		MaskFor   map[string]string   `yaml:"mask_for"`
		Error     *struct {
			Code            string `yaml:"code"`
			Reason          string `yaml:"reason"`
			Message         string `yaml:"message"`
			MessageContains string `yaml:"message_contains"`
		} `yaml:"error"`
	} `yaml:"want"`
}

type caseFile struct {
	Grants   []caseGrant `yaml:"grants"`
	Defaults struct {
		Time time.Time `yaml:"time"`
	} `yaml:"defaults"`
	Cases []decideCase `yaml:"cases"`
}

func enumValue(t *testing.T, values map[string]int32, prefix, name string) int32 {
	t.Helper()
	v, ok := values[prefix+name]
	if !ok {
		t.Fatalf("unknown enum value %s%s", prefix, name)
	}
	return v
}

func maskKind(t *testing.T, name string) v1.MaskKind {
	return v1.MaskKind(enumValue(t, v1.MaskKind_value, "MASK_KIND_", name))
}

func testDictionary(t testing.TB) *datasets.Dictionary {
	t.Helper()
	b, err := os.ReadFile("testdata/dictionary.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := datasets.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func codeByName(t *testing.T, name string) codes.Code {
	t.Helper()
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		if c.String() == name {
			return c
		}
	}
	t.Fatalf("unknown code %q", name)
	return 0
}

func TestDecideCases(t *testing.T) {
	b, err := os.ReadFile("testdata/decide.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file caseFile
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&file); err != nil {
		t.Fatalf("decoding cases: %v", err)
	}
	if len(file.Cases) == 0 {
		t.Fatal("no cases")
	}
	testDict := testDictionary(t)
	pool := map[string]*v1.Grant{}
	var all []*v1.Grant
	for _, g := range file.Grants {
		p := g.proto(t)
		pool[g.ID] = p
		all = append(all, p)
	}
	seen := map[string]bool{}
	for _, tc := range file.Cases {
		t.Run(tc.Name, func(t *testing.T) {
			if seen[tc.Name] {
				t.Fatalf("duplicate case name")
			}
			seen[tc.Name] = true
			now := file.Defaults.Time
			if tc.Request.Time != nil {
				now = *tc.Request.Time
			}
			dict, grants := testDict, all
			if tc.Use != nil {
				grants = nil
				for _, id := range tc.Use {
					g, ok := pool[id]
					if !ok {
						t.Fatalf("case uses unknown grant %q", id)
					}
					grants = append(grants, g)
				}
			}
			if tc.Dictionary == "default" {
				dict = datasets.Default()
			}
			if tc.Demo {
				grants = DemoGrants(file.Defaults.Time)
			}
			snap := Prepare(dict, grants, 1)
			if len(snap.Skipped()) > 0 {
				t.Fatalf("skipped grants: %v", snap.Skipped())
			}
			req := Request{
				Principal: Principal{SystemID: tc.Request.SystemID, Department: tc.Request.Department, Region: tc.Request.Region, Roles: tc.Request.Roles},
				Dataset:   tc.Request.Dataset,
				Fields:    tc.Request.Fields,
				Purpose:   tc.Request.Purpose,
				Time:      now,
			}
			if now.Equal(time.Time{}) || now.Year() == 1 {
				req.Time = time.Time{}
			}
			d, err := snap.Decide(req)
			if tc.Calls > 0 {
				lim := NewMemoryLimiter(func() time.Time { return now })
				for range tc.Calls {
					d, err = DecideWithQuota(context.Background(), snap, lim, req)
				}
			}
			w := tc.Want
			if w.Error != nil {
				if err == nil {
					t.Fatalf("Decide allowed %v, want error %s/%s", d.Fields, w.Error.Code, w.Error.Reason)
				}
				var ae *apierr.Error
				if !asAPIErr(err, &ae) {
					t.Fatalf("error %v is not an *apierr.Error", err)
				}
				if want := codeByName(t, w.Error.Code); ae.Code != want {
					t.Errorf("code = %v, want %v (%v)", ae.Code, want, err)
				}
				if ae.Reason != w.Error.Reason {
					t.Errorf("reason = %s, want %s (%v)", ae.Reason, w.Error.Reason, err)
				}
				if w.Error.Message != "" && ae.Msg != w.Error.Message {
					t.Errorf("message = %q\nwant      %q", ae.Msg, w.Error.Message)
				}
				if w.Error.MessageContains != "" && !strings.Contains(ae.Msg, w.Error.MessageContains) {
					t.Errorf("message %q does not contain %q", ae.Msg, w.Error.MessageContains)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if !slices.Equal(d.Fields, w.Fields) {
				t.Errorf("fields = %v, want %v", d.Fields, w.Fields)
			}
			gotMasks := map[string]string{}
			for f, k := range d.Masks {
				gotMasks[f] = strings.TrimPrefix(k.String(), "MASK_KIND_")
			}
			if !mapsEqual(gotMasks, w.Masks) {
				t.Errorf("masks = %v, want %v", gotMasks, w.Masks)
			}
			gotWithheld := map[string]string{}
			for _, wh := range d.Withheld {
				gotWithheld[wh.Field] = wh.Reason
			}
			if !mapsEqual(gotWithheld, w.Withheld) {
				t.Errorf("withheld = %v, want %v", gotWithheld, w.Withheld)
			}
			if w.Jurisdiction != nil && !slices.Equal(d.Jurisdiction, w.Jurisdiction) {
				t.Errorf("jurisdiction = %q, want %q", d.Jurisdiction, w.Jurisdiction)
			}
			if w.GrantIDs != nil && !slices.Equal(d.GrantIDs, *w.GrantIDs) && !(len(d.GrantIDs) == 0 && len(*w.GrantIDs) == 0) {
				t.Errorf("grant ids = %v, want %v", d.GrantIDs, *w.GrantIDs)
			}
			if w.LegalBasis != nil && !slices.Equal(d.LegalBasis, w.LegalBasis) {
				t.Errorf("legal basis = %v, want %v", d.LegalBasis, w.LegalBasis)
			}
			if w.Unconditional != nil && d.Unconditional != *w.Unconditional {
				t.Errorf("unconditional = %v, want %v", d.Unconditional, *w.Unconditional)
			}
			if w.Quotas != nil {
				var want []GrantQuota
				for _, q := range w.Quotas {
					want = append(want, GrantQuota{GrantID: q.GrantID, PerMinute: q.PerMinute, PerDay: q.PerDay})
				}
				if !slices.Equal(d.Quotas, want) {
					t.Errorf("quotas = %v, want %v", d.Quotas, want)
				}
			}
			for region, want := range w.Admits {
				if got := d.Admits(region); got != want {
					t.Errorf("Admits(%q) = %v, want %v", region, got, want)
				}
			}
			for region, want := range w.FieldsFor {
				if got := d.FieldsFor(region); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
					t.Errorf("FieldsFor(%q) = %v, want %v", region, got, want)
				}
			}
			for key, want := range w.MaskFor {
				region, field, _ := strings.Cut(key, "/")
				if got := d.MaskFor(region, field); got != maskKind(t, want) {
					t.Errorf("MaskFor(%q, %q) = %v, want %v", region, field, got, want)
				}
				checkAppendMasks(t, &d, region)
			}
			for region := range w.FieldsFor {
				checkAppendMasks(t, &d, region)
			}
		})
	}
}

// checkAppendMasks checks that AppendMasks gives MaskFor's masks for the
// decision's fields in their order, in reverse order, and with a field the
// decision does not allow.
func checkAppendMasks(t *testing.T, d *Decision, region string) {
	t.Helper()
	fields := append(slices.Clone(d.Fields), "not_a_field")
	reversed := slices.Clone(fields)
	slices.Reverse(reversed)
	for _, fs := range [][]string{d.FieldsFor(region), d.Fields, fields, reversed} {
		got := d.AppendMasks(nil, region, fs)
		for i, f := range fs {
			if want := d.MaskFor(region, f); got[i] != want {
				t.Errorf("AppendMasks(%q, %v)[%d] = %v, MaskFor(%q) = %v", region, fs, i, got[i], f, want)
			}
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func asAPIErr(err error, target **apierr.Error) bool {
	e, ok := err.(*apierr.Error)
	if ok {
		*target = e
	}
	return ok
}
