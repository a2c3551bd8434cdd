package identity

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/tongban/tongban/gateway/auth"
)

const (
	personID = "11010519491231002X"
	firmCode = "91350100M000100Y43"
)

func TestURIRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		id   auth.Identity
		uri  string
	}{
		{
			"member system",
			auth.Identity{SystemID: "approval-bureau", Department: "approval", Region: "130100"},
			"spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau",
		},
		{
			"roles sorted",
			auth.Identity{SystemID: "field-terminals", Department: "enforcement", Region: "130102", Roles: []string{"inspector", "auditor"}},
			"spiffe://tongban.gov/region/130102/department/enforcement/system/field-terminals/role/auditor/role/inspector",
		},
		{
			"subject",
			auth.Identity{SystemID: "citizen.portal", Department: "service_hall", Region: "130000", Roles: []string{auth.RoleSubject}, Subject: personID},
			"spiffe://tongban.gov/region/130000/department/service_hall/system/citizen.portal/role/subject/subject/" + personID,
		},
		{
			"enterprise subject and upper-case system",
			auth.Identity{SystemID: "Firm-Portal_1", Department: "market", Region: "130100", Roles: []string{auth.RoleSubject}, Subject: firmCode},
			"spiffe://tongban.gov/region/130100/department/market/system/Firm-Portal_1/role/subject/subject/" + firmCode,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := URI(tc.id)
			if err != nil {
				t.Fatalf("URI: %v", err)
			}
			if u.String() != tc.uri {
				t.Fatalf("URI = %s, want %s", u, tc.uri)
			}
			got, err := ParseURI(u.String())
			if err != nil {
				t.Fatalf("ParseURI: %v", err)
			}
			want := tc.id
			want.Roles = sortedCopy(want.Roles)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("ParseURI = %+v, want %+v", got, want)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

func TestParseURIRejects(t *testing.T) {
	base := "spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau"
	cases := []struct {
		name, uri, want string
	}{
		{"empty", "", "does not start with"},
		{"other trust domain", "spiffe://example.org/region/130100/department/approval/system/a", "does not start with"},
		{"upper-case scheme", "SPIFFE://tongban.gov/region/130100/department/approval/system/a", "does not start with"},
		{"https", "https://tongban.gov/region/130100/department/approval/system/a", "does not start with"},
		{"port", "spiffe://tongban.gov:443/region/130100/department/approval/system/a", "does not start with"},
		{"userinfo", "spiffe://x@tongban.gov/region/130100/department/approval/system/a", "does not start with"},
		{"query", base + "?role=admin", "query"},
		{"fragment", base + "#admin", "fragment"},
		{"escape", "spiffe://tongban.gov/region/130100/department/approval/system/approval%2Dbureau", "escapes"},
		{"trailing slash", base + "/", "key/value"},
		{"double slash", "spiffe://tongban.gov/region/130100//department/approval/system/a", "key/value"},
		{"missing system", "spiffe://tongban.gov/region/130100/department/approval", "region, department and system"},
		{"order", "spiffe://tongban.gov/department/approval/region/130100/system/a", `expected "region"`},
		{"region letters", "spiffe://tongban.gov/region/13010A/department/approval/system/a", "six-digit"},
		{"region short", "spiffe://tongban.gov/region/1301/department/approval/system/a", "six-digit"},
		{"region full-width digits", "spiffe://tongban.gov/region/１30100/department/approval/system/a", "six-digit"},
		{"empty department", "spiffe://tongban.gov/region/130100/department//system/a", "department: must not be empty"},
		{"upper-case department", "spiffe://tongban.gov/region/130100/department/Approval/system/a", "department"},
		{"dot system", "spiffe://tongban.gov/region/130100/department/approval/system/..", "system"},
		{"system leading dash", "spiffe://tongban.gov/region/130100/department/approval/system/-a", "system"},
		{"system too long", "spiffe://tongban.gov/region/130100/department/approval/system/" + strings.Repeat("a", 65), "longer than 64"},
		{"unknown key", base + "/team/x", `unexpected "team"`},
		{"repeated system", base + "/system/b", `unexpected "system"`},
		{"roles out of order", base + "/role/b/role/a", "ascending"},
		{"repeated role", base + "/role/a/role/a", "ascending"},
		{"bad role", base + "/role/Admin", "role"},
		{"subject without role", base + "/subject/" + personID, "only an identity with role subject"},
		{"role subject without subject", base + "/role/subject", "must name its subject"},
		{"bad subject", base + "/role/subject/subject/110105194912310021", "neither"},
		{"role after subject", base + "/role/subject/subject/" + personID + "/role/z", `unexpected "role"`},
		{"two subjects", base + "/role/subject/subject/" + personID + "/subject/" + firmCode, `unexpected "subject"`},
		{"too long", base + strings.Repeat("/role/r", 400), "longer than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseURI(tc.uri)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %+v, want an error", tc.uri, id)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseURI(%q) = %v, want an error containing %q", tc.uri, err, tc.want)
			}
		})
	}
}

func TestURIRejectsInvalidIdentity(t *testing.T) {
	cases := []auth.Identity{
		{},
		{SystemID: "a", Department: "approval"},
		{SystemID: "a/b", Department: "approval", Region: "130100"},
		{SystemID: "a", Department: "approval?x", Region: "130100"},
		{SystemID: "a", Department: "approval", Region: "130100", Roles: []string{"x", "x"}},
		{SystemID: "a", Department: "approval", Region: "130100", Roles: []string{""}},
		{SystemID: "a", Department: "approval", Region: "130100", Subject: personID},
	}
	for _, id := range cases {
		if u, err := URI(id); err == nil {
			t.Errorf("URI(%+v) = %s, want an error", id, u)
		}
	}
}

// FuzzParseURI checks that parsing never panics and that whatever it accepts
// is exactly the canonical URI of the identity it returns.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		"spiffe://tongban.gov/region/130100/department/approval/system/approval-bureau",
		"spiffe://tongban.gov/region/130102/department/enforcement/system/field-terminals/role/auditor/role/inspector",
		"spiffe://tongban.gov/region/130000/department/service_hall/system/citizen.portal/role/subject/subject/" + personID,
		"spiffe://tongban.gov/region/130100/department/approval/system/a?x=1",
		"spiffe://tongban.gov/region/130100/department/approval/system/a/role/b/role/a",
		"spiffe://tongban.gov/",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseURI(s)
		if err != nil {
			if id.SystemID != "" {
				t.Fatalf("error %v with a non-empty identity %+v", err, id)
			}
			return
		}
		u, err := URI(id)
		if err != nil {
			t.Fatalf("accepted %q but its identity %+v does not format: %v", s, id, err)
		}
		if u.String() != s {
			t.Fatalf("accepted %q, which formats back as %q", s, u)
		}
	})
}
