// Package ident validates the two identifiers that name the subjects of
// department records: the 18-character unified social credit code of
// organisations (统一社会信用代码, GB 32100-2015) and the 18-digit resident
// identity number of natural persons (公民身份号码, GB 11643-1999).
//
// Validation is strict: nothing is normalised. Lower-case letters, full-width
// characters and surrounding spaces are rejected with an error that says
// exactly what is wrong, so that callers can prefix it with the field name:
//
//	if err := ident.ValidateCreditCode(code); err != nil {
//		return fmt.Errorf("credit_code: %w", err)
//	}
package ident

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Kinds returned by Kind.
const (
	KindCreditCode = "credit_code"
	KindResidentID = "resident_id"
)

// creditCharset is the alphabet of GB 32100-2015 in value order: the value of
// a character is its index. I, O, Z, S and V are not used.
const creditCharset = "0123456789ABCDEFGHJKLMNPQRTUWXY"

// creditWeights are the weights of positions 1..17 of a credit code
// (3^(i-1) mod 31).
var creditWeights = [17]int{1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28}

// orgWeights are the weights of positions 1..8 of an organisation code
// (GB 11714-1997).
var orgWeights = [8]int{3, 7, 9, 10, 5, 8, 4, 2}

// residentWeights are the ISO 7064 MOD 11-2 weights of positions 1..17 of a
// resident identity number (2^(18-i) mod 11).
var residentWeights = [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}

// residentCheck maps the weighted sum mod 11 to the check character.
const residentCheck = "10X98765432"

// categories lists, per registration authority code (position 1 of a credit
// code), the organisation category codes (position 2) GB 32100-2015 and its
// amendment define; "" for a code that is not an authority.
var categories = [256]string{
	'1': "1239", // 机构编制: 机关, 事业单位, 群众团体, 其他
	'2': "19",   // 外交
	'3': "123459",
	'4': "19",
	'5': "1239", // 民政: 社会团体, 民办非企业单位, 基金会, 其他
	'6': "129",
	'7': "129",
	'8': "19",
	'9': "123", // 工商: 企业, 个体工商户, 农民专业合作社
	'A': "19",
	'N': "1239",
	'Y': "1",
}

// provinces holds the two-digit province-level codes of GB/T 2260, indexed
// by their value.
var provinces = [100]bool{
	11: true, 12: true, 13: true, 14: true, 15: true,
	21: true, 22: true, 23: true,
	31: true, 32: true, 33: true, 34: true, 35: true, 36: true, 37: true,
	41: true, 42: true, 43: true, 44: true, 45: true, 46: true,
	50: true, 51: true, 52: true, 53: true, 54: true,
	61: true, 62: true, 63: true, 64: true, 65: true,
	71: true, 81: true, 82: true,
}

// isProvince reports whether the two digits d are a province-level code.
func isProvince(d string) bool {
	return len(d) == 2 && d[0] >= '0' && d[0] <= '9' && d[1] >= '0' && d[1] <= '9' && provinces[int(d[0]-'0')*10+int(d[1]-'0')]
}

// creditValues is the value of each byte in creditCharset, -1 for the rest.
var creditValues = func() (v [256]int8) {
	for i := range v {
		v[i] = -1
	}
	for i := range len(creditCharset) {
		v[creditCharset[i]] = int8(i)
	}
	return v
}()

// ErrEmpty is returned for an empty identifier.
var ErrEmpty = errors.New("is empty")

// checkLength reports an error unless s has exactly 18 characters.
func checkLength(s string) error {
	if s == "" {
		return ErrEmpty
	}
	if n := utf8.RuneCountInString(s); n != 18 {
		return fmt.Errorf("length is %d, want 18", n)
	}
	return nil
}

// charError describes a character that is not allowed at a 1-based position.
func charError(r rune, pos int, what string) error {
	if r >= 'a' && r <= 'z' {
		return fmt.Errorf("character %q at position %d is not allowed: %s must be upper-case", r, pos, what)
	}
	return fmt.Errorf("character %q at position %d is not allowed", r, pos)
}

// firstNonASCII returns the first non-ASCII rune of s and its 1-based
// position, or ok=false.
func firstNonASCII(s string) (r rune, pos int, ok bool) {
	pos = 0
	for _, c := range s {
		pos++
		if c >= utf8.RuneSelf {
			return c, pos, true
		}
	}
	return 0, 0, false
}

func creditValue(c byte) int { return int(creditValues[c]) }

// CreditCodeCheckChar returns the check character (position 18) of a unified
// social credit code whose first 17 characters are first17.
func CreditCodeCheckChar(first17 string) (byte, error) {
	if n := utf8.RuneCountInString(first17); n != 17 {
		return 0, fmt.Errorf("length is %d, want 17", n)
	}
	if r, pos, ok := firstNonASCII(first17); ok {
		return 0, charError(r, pos, "a credit code")
	}
	sum := 0
	for i := range 17 {
		v := creditValue(first17[i])
		if v < 0 {
			return 0, charError(rune(first17[i]), i+1, "a credit code")
		}
		sum += v * creditWeights[i]
	}
	return creditCharset[(31-sum%31)%31], nil
}

// orgValue is the value of a character of an organisation code: digits are
// 0..9 and the letters A..Z are 10..35.
func orgValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	}
	return -1
}

// OrgCodeCheckChar returns the check character (position 9) of a GB 11714
// organisation code whose body is first8: '0'..'9' or 'X'.
func OrgCodeCheckChar(first8 string) (byte, error) {
	if n := utf8.RuneCountInString(first8); n != 8 {
		return 0, fmt.Errorf("length is %d, want 8", n)
	}
	if r, pos, ok := firstNonASCII(first8); ok {
		return 0, charError(r, pos, "an organisation code")
	}
	sum := 0
	for i := range 8 {
		v := orgValue(first8[i])
		if v < 0 {
			return 0, charError(rune(first8[i]), i+1, "an organisation code")
		}
		sum += v * orgWeights[i]
	}
	switch c := 11 - sum%11; c {
	case 10:
		return 'X', nil
	case 11:
		return '0', nil
	default:
		return byte('0' + c), nil
	}
}

// ValidateCreditCode reports whether s is a well-formed unified social credit
// code: 18 characters of the GB 32100 alphabet, a known registration
// authority and organisation category, a six-digit region code with a real
// province (or 100000 for national registrations), an organisation code
// whose GB 11714 check character is right, and a right check character.
func ValidateCreditCode(s string) error {
	if err := checkLength(s); err != nil {
		return err
	}
	if r, pos, ok := firstNonASCII(s); ok {
		return charError(r, pos, "a credit code")
	}
	for i := range 18 {
		if creditValue(s[i]) < 0 {
			return charError(rune(s[i]), i+1, "a credit code")
		}
	}
	cats := categories[s[0]]
	if cats == "" {
		return fmt.Errorf("registration authority code %q at position 1 is not one of 1-9, A, N, Y", s[0])
	}
	if strings.IndexByte(cats, s[1]) < 0 {
		return fmt.Errorf("organisation category %q at position 2 is not defined for registration authority %q", s[1], s[0])
	}
	if err := checkRegion(s[2:8], 3); err != nil {
		return err
	}
	if s[2:8] != "100000" && !isProvince(s[2:4]) {
		return fmt.Errorf("region code %s at positions 3-8 has no province %s", s[2:8], s[2:4])
	}
	oc, err := OrgCodeCheckChar(s[8:16])
	if err != nil {
		return fmt.Errorf("organisation code %s: %w", s[8:17], err)
	}
	if oc != s[16] {
		return fmt.Errorf("organisation code %s: check character is %q, want %q", s[8:17], s[16], oc)
	}
	cc, err := CreditCodeCheckChar(s[:17])
	if err != nil {
		return err
	}
	if cc != s[17] {
		return fmt.Errorf("check character is %q, want %q", s[17], cc)
	}
	return nil
}

// checkRegion reports an error unless r is six digits; start is the 1-based
// position of r in the identifier.
func checkRegion(r string, start int) error {
	for i := range len(r) {
		if r[i] < '0' || r[i] > '9' {
			return fmt.Errorf("region code %s at positions %d-%d is not six digits", r, start, start+5)
		}
	}
	return nil
}

// ResidentIDCheckDigit returns the check character (position 18, '0'..'9' or
// 'X') of a resident identity number whose first 17 digits are first17.
func ResidentIDCheckDigit(first17 string) (byte, error) {
	if n := utf8.RuneCountInString(first17); n != 17 {
		return 0, fmt.Errorf("length is %d, want 17", n)
	}
	sum := 0
	for i, r := range first17 {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("character %q at position %d is not a digit", r, utf8.RuneCountInString(first17[:i])+1)
		}
		sum += int(r-'0') * residentWeights[i]
	}
	return residentCheck[sum%11], nil
}

// ValidateResidentID reports whether s is a well-formed 18-digit resident
// identity number: 17 digits and a check character ('0'..'9' or upper-case
// 'X'), a real province code, a birth date that is a calendar date between
// 1900-01-01 and today, and a right ISO 7064 MOD 11-2 check character.
func ValidateResidentID(s string) error {
	return validateResidentIDAt(s, time.Now())
}

func validateResidentIDAt(s string, now time.Time) error {
	if err := checkLength(s); err != nil {
		return err
	}
	pos := 0
	for _, r := range s {
		pos++
		switch {
		case r >= '0' && r <= '9':
		case pos == 18 && r == 'X':
		case pos == 18 && r == 'x':
			return fmt.Errorf("check character 'x' at position 18 must be upper-case 'X'")
		case pos == 18:
			return fmt.Errorf("character %q at position 18 is not a digit or 'X'", r)
		default:
			return fmt.Errorf("character %q at position %d is not a digit", r, pos)
		}
	}
	if !isProvince(s[:2]) {
		return fmt.Errorf("region code %s at positions 1-6 has no province %s", s[:6], s[:2])
	}
	birth := s[6:14]
	d, err := time.Parse("20060102", birth)
	if err != nil {
		return fmt.Errorf("birth date %s is not a date", birth)
	}
	if d.Year() < 1900 {
		return fmt.Errorf("birth date %s is before 1900", birth)
	}
	y, m, dd := now.Date()
	if d.After(time.Date(y, m, dd, 0, 0, 0, 0, time.UTC)) {
		return fmt.Errorf("birth date %s is in the future", birth)
	}
	want, err := ResidentIDCheckDigit(s[:17])
	if err != nil {
		return err
	}
	if s[17] != want {
		return fmt.Errorf("check character is %q, want %q", s[17], want)
	}
	return nil
}

// Kind returns KindCreditCode or KindResidentID for a valid identifier of
// that kind and "" for anything else. A string valid as both (possible only
// for all-digit strings) is reported as a resident identity number: credit
// codes issued since 2015 carry letters in their organisation code.
func Kind(s string) string {
	cc := ValidateCreditCode(s) == nil
	rid := ValidateResidentID(s) == nil
	switch {
	case rid:
		return KindResidentID
	case cc:
		return KindCreditCode
	}
	return ""
}

// Redact replaces every valid unified social credit code and resident
// identity number in s by its first six characters (the region) and "…", so
// that error texts and URLs can be logged without identifying anyone.
func Redact(s string) string {
	isAlnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' }
	var b strings.Builder
	last := 0
	for i := 0; i+18 <= len(s); {
		if (i > 0 && isAlnum(s[i-1])) || (i+18 < len(s) && isAlnum(s[i+18])) {
			i++
			continue
		}
		tok := s[i : i+18]
		if ValidateCreditCode(tok) == nil || ValidateResidentID(tok) == nil {
			b.WriteString(s[last:i])
			b.WriteString(tok[:6])
			b.WriteString("…")
			i += 18
			last = i
			continue
		}
		i++
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}
