package forms

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tongban/tongban/schemas/ident"
)

// Transform is one step applied to a source value before it fills a field.
// Exactly one of its keys is set in a template:
//
//   - date: a pattern of YYYY, MM, DD (zero-padded) and M, D (not padded),
//     e.g. "YYYY年MM月DD日"; the value must be an ISO date (2006-01-02).
//   - enum: a map from department values to form values; values not in
//     the map pass through unchanged.
//   - region_name: "full" (河北省石家庄市长安区) or "short" (长安区): a
//     six-digit administrative division code to its name.
//   - unit: a conversion, one of "万元→元", "元→万元", "平方米→亩",
//     "平方米→公顷", "亩→平方米".
//   - round: the number of decimals to round a number to.
//   - default: the value used when the department's value is empty (e.g.
//     "长期" for an open-ended operating term).
//   - derive: facts read from an 18-digit resident ID: "gender" (男/女),
//     "birth_date" (ISO date) or "region" (the six-digit code of first
//     registration).
type Transform struct {
	Date       string            `yaml:"date"`
	Enum       map[string]string `yaml:"enum"`
	RegionName string            `yaml:"region_name"`
	Unit       string            `yaml:"unit"`
	Round      *int              `yaml:"round"`
	Default    *string           `yaml:"default"`
	Derive     string            `yaml:"derive"`
}

// Unit conversions by name: the factor to multiply by.
var units = map[string]float64{
	"万元→元":   10000,
	"元→万元":   1.0 / 10000,
	"平方米→亩":  15.0 / 10000, // 1 亩 = 10000/15 平方米
	"平方米→公顷": 1.0 / 10000,
	"亩→平方米":  10000.0 / 15,
}

var derivations = []string{"gender", "birth_date", "region"}

// validate returns a message describing what is wrong, or "".
func (t *Transform) validate() string {
	set := 0
	for _, b := range []bool{t.Date != "", t.Enum != nil, t.RegionName != "", t.Unit != "", t.Round != nil, t.Default != nil, t.Derive != ""} {
		if b {
			set++
		}
	}
	if set != 1 {
		return "give exactly one of date, enum, region_name, unit, round, default, derive"
	}
	switch {
	case t.Date != "":
		if !strings.Contains(t.Date, "YYYY") {
			return fmt.Sprintf("date pattern %q has no YYYY", t.Date)
		}
	case t.Enum != nil:
		if len(t.Enum) == 0 {
			return "enum maps no values"
		}
	case t.RegionName != "":
		if t.RegionName != "full" && t.RegionName != "short" {
			return fmt.Sprintf("region_name must be \"full\" or \"short\", not %q", t.RegionName)
		}
	case t.Unit != "":
		if _, ok := units[t.Unit]; !ok {
			known := slices.Sorted(maps.Keys(units))
			return fmt.Sprintf("unit %q is not one of %s", t.Unit, strings.Join(known, ", "))
		}
	case t.Round != nil:
		if *t.Round < 0 || *t.Round > 6 {
			return fmt.Sprintf("round must be 0 to 6 decimals, not %d", *t.Round)
		}
	case t.Derive != "":
		if !slices.Contains(derivations, t.Derive) {
			return fmt.Sprintf("derive must be one of %s, not %q", strings.Join(derivations, ", "), t.Derive)
		}
	}
	return ""
}

// Apply transforms v, a value as decoded from JSON (string, float64, bool
// or nil). An error says why the value cannot be transformed.
func (t *Transform) Apply(v any) (any, error) {
	switch {
	case t.Default != nil:
		if IsEmpty(v) {
			return *t.Default, nil
		}
		return v, nil
	case IsEmpty(v):
		return v, nil
	case t.Date != "":
		s, ok := v.(string)
		if !ok || len(s) < 10 {
			return nil, fmt.Errorf("%v is not a date", v)
		}
		d, err := time.Parse(time.DateOnly, s[:10])
		if err != nil {
			return nil, fmt.Errorf("%q is not a date", s)
		}
		return FormatDate(t.Date, d), nil
	case t.Enum != nil:
		if out, ok := t.Enum[Text(v)]; ok {
			return out, nil
		}
		return v, nil
	case t.RegionName != "":
		code := Text(v)
		full, short, ok := RegionName(code)
		if !ok {
			return nil, fmt.Errorf("region code %q is not known", code)
		}
		if t.RegionName == "short" {
			return short, nil
		}
		return full, nil
	case t.Unit != "":
		n, err := number(v)
		if err != nil {
			return nil, err
		}
		return n * units[t.Unit], nil
	case t.Round != nil:
		n, err := number(v)
		if err != nil {
			return nil, err
		}
		p := math.Pow10(*t.Round)
		return math.Round(n*p) / p, nil
	case t.Derive != "":
		id, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not a resident ID", v)
		}
		if err := ident.ValidateResidentID(id); err != nil {
			return nil, fmt.Errorf("cannot derive %s: %w", t.Derive, err)
		}
		switch t.Derive {
		case "gender":
			if (id[16]-'0')%2 == 1 {
				return "男", nil
			}
			return "女", nil
		case "birth_date":
			return id[6:10] + "-" + id[10:12] + "-" + id[12:14], nil
		default:
			return id[:6], nil
		}
	}
	return v, nil
}

// ApplyAll applies ts in order.
func ApplyAll(ts []*Transform, v any) (any, error) {
	var err error
	for _, t := range ts {
		if v, err = t.Apply(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// FormatDate writes d with a YYYY/MM/DD/M/D pattern.
func FormatDate(pattern string, d time.Time) string {
	r := strings.NewReplacer(
		"YYYY", strconv.Itoa(d.Year()),
		"MM", fmt.Sprintf("%02d", int(d.Month())),
		"DD", fmt.Sprintf("%02d", d.Day()),
		"M", strconv.Itoa(int(d.Month())),
		"D", strconv.Itoa(d.Day()),
	)
	return r.Replace(pattern)
}

// IsEmpty reports whether v holds no value: nil or an empty or blank string.
func IsEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return strings.TrimSpace(x) == ""
	}
	return false
}

// Text returns v as text: numbers without trailing zeros.
func Text(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func number(v any) (float64, error) {
	switch x := v.(type) {
	case float64:
		return x, nil
	case string:
		n, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		if err != nil {
			return 0, fmt.Errorf("%q is not a number", x)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}
