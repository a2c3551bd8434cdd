package ident

import (
	"strings"
	"testing"
	"time"
)

// now is the reference date of the resident-ID tests that depend on today.
var now = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

func TestValidateCreditCode(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		// Example of GB 32100-2015 (Fuzhou).
		{"standard example", "91350100M000100Y43", ""},
		// Published codes of well-known enterprises, checked by computing
		// both check characters.
		{"huawei", "914403001922038216", ""},
		{"tencent", "9144030071526726XG", ""},
		{"alibaba china", "91330100799655058B", ""},
		{"empty", "", "is empty"},
		{"short", "91350100M000100Y4", "length is 17, want 18"},
		{"long", "91350100M000100Y431", "length is 19, want 18"},
		{"letter I", "91350100I000100Y43", "character 'I' at position 9 is not allowed"},
		{"letter O", "9135010O0000100Y43", "character 'O' at position 8 is not allowed"},
		{"letter S", "91350100M000100S43", "character 'S' at position 16 is not allowed"},
		{"letter V", "V1350100M000100Y43", "character 'V' at position 1 is not allowed"},
		{"letter Z", "91350100M000100Y4Z", "character 'Z' at position 18 is not allowed"},
		{"lower case", "91350100m000100Y43", "character 'm' at position 9 is not allowed: a credit code must be upper-case"},
		{"space", "91350100M000100Y4 ", "character ' ' at position 18 is not allowed"},
		{"full width", "９1350100M000100Y43", "character '９' at position 1 is not allowed"},
		{"authority", "B1350100M000100Y43", "registration authority code 'B' at position 1 is not one of 1-9, A, N, Y"},
		{"category", "94350100M000100Y43", "organisation category '4' at position 2 is not defined for registration authority '9'"},
		{"region letters", "9135A100M000100Y43", "region code 35A100 at positions 3-8 is not six digits"},
		{"region province", "91990100M000100Y43", "region code 990100 at positions 3-8 has no province 99"},
		{"org check", "91350100M000100Y53", "organisation code M000100Y5: check character is '5', want '4'"},
		{"check char", "91350100M000100Y4U", "check character is 'U', want '3'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateCreditCode(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateCreditCode(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("ValidateCreditCode(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestNationalRegionCreditCode(t *testing.T) {
	first := "11100000" + "MB0143" + "16"
	oc, err := OrgCodeCheckChar(first[8:16])
	if err != nil {
		t.Fatal(err)
	}
	s17 := first + string(oc)
	cc, err := CreditCodeCheckChar(s17)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateCreditCode(s17 + string(cc)); err != nil {
		t.Fatalf("national region code 100000 rejected: %v", err)
	}
}

func TestCreditCodeCheckChar(t *testing.T) {
	tests := []struct {
		in      string
		want    byte
		wantErr string
	}{
		{"91350100M000100Y4", '3', ""},
		{"9144030071526726X", 'G', ""},
		{"91330100799655058", 'B', ""},
		{"9135", 0, "length is 4, want 17"},
		{"91350100M00010OY4", 0, "character 'O' at position 15 is not allowed"},
		{"91350100M00010汉Y4", 0, "character '汉' at position 15 is not allowed"},
	}
	for _, tc := range tests {
		got, err := CreditCodeCheckChar(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("CreditCodeCheckChar(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CreditCodeCheckChar(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestOrgCodeCheckChar(t *testing.T) {
	tests := []struct {
		in      string
		want    byte
		wantErr string
	}{
		{"M000100Y", '4', ""},
		{"19220382", '1', ""},
		{"71526726", 'X', ""},
		// 11 - sum%11 == 11 gives '0': 3*0+...=0 -> 11.
		{"00000000", '0', ""},
		{"1922038", 0, "length is 7, want 8"},
		{"1922038a", 0, "character 'a' at position 8 is not allowed: an organisation code must be upper-case"},
		{"1922038-", 0, "character '-' at position 8 is not allowed"},
		{"192203８1", 0, "character '８' at position 7 is not allowed"},
	}
	for _, tc := range tests {
		got, err := OrgCodeCheckChar(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("OrgCodeCheckChar(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("OrgCodeCheckChar(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidateResidentID(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		// Examples of GB 11643-1999.
		{"standard example", "11010519491231002X", ""},
		{"standard example before 1900", "440524188001010014", "birth date 18800101 is before 1900"},
		{"hebei", "130102198507150010", ""},
		{"empty", "", "is empty"},
		{"short", "11010519491231002", "length is 17, want 18"},
		{"long", "11010519491231002X1", "length is 19, want 18"},
		{"lower x", "11010519491231002x", "check character 'x' at position 18 must be upper-case 'X'"},
		{"letter inside", "1101051949123100X2", "character 'X' at position 17 is not a digit"},
		{"bad check kind", "11010519491231002A", "character 'A' at position 18 is not a digit or 'X'"},
		{"full width", "１1010519491231002X", "character '１' at position 1 is not a digit"},
		{"province", "99010519491231002X", "region code 990105 at positions 1-6 has no province 99"},
		{"province 00", "00010519491231002X", "region code 000105 at positions 1-6 has no province 00"},
		{"month 13", "110105199913400019", "birth date 19991340 is not a date"},
		{"feb 30", "110105200002300013", "birth date 20000230 is not a date"},
		{"future", "110105202712010011", "birth date 20271201 is in the future"},
		{"check", "110105194912310021", "check character is '1', want 'X'"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validateResidentIDAt(tc.in, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidateResidentID(%q) = %v, want nil", tc.in, err)
				}
				return
			}
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("ValidateResidentID(%q) = %v, want %q", tc.in, err, tc.wantErr)
			}
		})
	}
}

func TestValidateResidentIDLeapDay(t *testing.T) {
	for _, tc := range []struct {
		birth string
		ok    bool
	}{{"20000229", true}, {"19000229", false}, {"19960229", true}, {"19970229", false}} {
		first := "130104" + tc.birth + "001"
		c, err := ResidentIDCheckDigit(first)
		if err != nil {
			t.Fatal(err)
		}
		err = validateResidentIDAt(first+string(c), now)
		if (err == nil) != tc.ok {
			t.Errorf("birth %s: err = %v, want ok=%v", tc.birth, err, tc.ok)
		}
	}
}

func TestResidentIDCheckDigit(t *testing.T) {
	tests := []struct {
		in      string
		want    byte
		wantErr string
	}{
		{"11010519491231002", 'X', ""},
		{"44052418800101001", '4', ""},
		{"1101051949123100", 0, "length is 16, want 17"},
		{"1101051949123100X", 0, "character 'X' at position 17 is not a digit"},
		{"110105194912310０2", 0, "character '０' at position 16 is not a digit"},
	}
	for _, tc := range tests {
		got, err := ResidentIDCheckDigit(tc.in)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("ResidentIDCheckDigit(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ResidentIDCheckDigit(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestValidateResidentIDUsesClock(t *testing.T) {
	// A birth date of tomorrow is rejected by the exported function.
	tomorrow := time.Now().AddDate(0, 0, 2).Format("20060102")
	first := "130102" + tomorrow + "001"
	c, err := ResidentIDCheckDigit(first)
	if err != nil {
		t.Fatal(err)
	}
	if err := ValidateResidentID(first + string(c)); err == nil || !strings.Contains(err.Error(), "in the future") {
		t.Fatalf("ValidateResidentID(future) = %v, want an error about the future", err)
	}
}

func TestKind(t *testing.T) {
	tests := []struct{ in, want string }{
		{"91350100M000100Y43", KindCreditCode},
		{"11010519491231002X", KindResidentID},
		{"11010519491231002x", ""},
		{"91350100M000100Y44", ""},
		{"", ""},
		{"hello", ""},
	}
	for _, tc := range tests {
		if got := Kind(tc.in); got != tc.want {
			t.Errorf("Kind(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzValidateCreditCode(f *testing.F) {
	for _, s := range []string{"91350100M000100Y43", "914403001922038216", "9144030071526726XG", "91350100M000100Y4U", "", "９1350100M000100Y43", "110105194912310021"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateCreditCode(s)
		if err == nil {
			if len(s) != 18 {
				t.Fatalf("accepted %q of %d bytes", s, len(s))
			}
			c, cerr := CreditCodeCheckChar(s[:17])
			if cerr != nil || c != s[17] {
				t.Fatalf("accepted %q but CreditCodeCheckChar = %q, %v", s, c, cerr)
			}
			o, oerr := OrgCodeCheckChar(s[8:16])
			if oerr != nil || o != s[16] {
				t.Fatalf("accepted %q but OrgCodeCheckChar = %q, %v", s, o, oerr)
			}
			if k := Kind(s); k == "" {
				t.Fatalf("accepted %q but Kind is empty", s)
			}
		} else if err.Error() == "" {
			t.Fatalf("empty error message for %q", s)
		}
	})
}

func FuzzValidateResidentID(f *testing.F) {
	for _, s := range []string{"11010519491231002X", "440524188001010014", "11010519491231002x", "110105199913400019", "", "１1010519491231002X", "91350100M000100Y43"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateResidentID(s)
		if err == nil {
			if len(s) != 18 {
				t.Fatalf("accepted %q of %d bytes", s, len(s))
			}
			c, cerr := ResidentIDCheckDigit(s[:17])
			if cerr != nil || c != s[17] {
				t.Fatalf("accepted %q but ResidentIDCheckDigit = %q, %v", s, c, cerr)
			}
			if _, perr := time.Parse("20060102", s[6:14]); perr != nil {
				t.Fatalf("accepted %q with birth date %s: %v", s, s[6:14], perr)
			}
			if k := Kind(s); k != KindResidentID {
				t.Fatalf("accepted %q but Kind = %q", s, k)
			}
		} else if err.Error() == "" {
			t.Fatalf("empty error message for %q", s)
		}
	})
}

func TestRedact(t *testing.T) {
	cases := map[string]string{
		"GET /api/v1/licences/91350100M000100Y43: 503":   "GET /api/v1/licences/913501…: 503",
		"applicant_id=11010519491231002X&page=1":         "applicant_id=110105…&page=1",
		"no identifiers here":                            "no identifiers here",
		"91350100M000100Y44 has a wrong check character": "91350100M000100Y44 has a wrong check character",
		"embedded X91350100M000100Y43 is not a token":    "embedded X91350100M000100Y43 is not a token",
		"two: 91350100M000100Y43,11010519491231002X":     "two: 913501…,110105…",
	}
	for in, want := range cases {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkValidateCreditCode(b *testing.B) {
	for b.Loop() {
		if err := ValidateCreditCode("91130109MAAY40HT30"); err != nil {
			b.Fatal(err)
		}
	}
}
