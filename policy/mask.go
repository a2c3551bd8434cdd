package policy

import (
	"strings"
	"unicode/utf8"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// Redacted is what MASK_KIND_REDACT leaves of a value.
const Redacted = "***"

// ApplyMask masks value as kind says. It works on runes, so Chinese text is
// never cut inside a character. An empty value stays empty (there is nothing
// to hide); MASK_KIND_UNSPECIFIED returns the value unchanged.
//
//   - MASK_KIND_RESIDENT_ID keeps the first 6 and the last 4 characters:
//     130102********1234. Values of 10 characters or fewer are starred out.
//   - MASK_KIND_PHONE keeps the first 3 and the last 4 characters of values
//     of at least 8 characters (138****5678), the last 2 of shorter values
//     of 5 to 7 characters, and stars out values of 4 characters or fewer.
//   - MASK_KIND_NAME keeps the first character and stars the rest, one star
//     a character: 张三 → 张*, 张三丰 → 张**. A name of one character
//     becomes "*".
//   - MASK_KIND_ADDRESS keeps the address up to and including the first
//     区, 县, 市 or 旗 after the city (the first 市, 州 or 盟 after the
//     province, if any) and replaces the rest with "***":
//     河北省石家庄市长安区建设北大街1号 → 河北省石家庄市长安区***. An address
//     with no such mark becomes "***".
//   - MASK_KIND_REDACT, and any kind this version does not know, gives
//     "***".
func ApplyMask(kind v1.MaskKind, value string) string {
	if value == "" || kind == v1.MaskKind_MASK_KIND_UNSPECIFIED {
		return value
	}
	switch kind {
	case v1.MaskKind_MASK_KIND_RESIDENT_ID:
		return keepEnds(value, 6, 4, 11)
	case v1.MaskKind_MASK_KIND_PHONE:
		n := utf8.RuneCountInString(value)
		switch {
		case n >= 8:
			return keepEnds(value, 3, 4, 8)
		case n >= 5:
			return keepEnds(value, 0, 2, 5)
		default:
			return strings.Repeat("*", n)
		}
	case v1.MaskKind_MASK_KIND_NAME:
		first, size := utf8.DecodeRuneInString(value)
		rest := utf8.RuneCountInString(value[size:])
		if rest == 0 {
			return "*"
		}
		return string(first) + strings.Repeat("*", rest)
	case v1.MaskKind_MASK_KIND_ADDRESS:
		return maskAddress(value)
	default:
		return Redacted
	}
}

// keepEnds keeps head runes at the start and tail at the end and stars the
// middle, one star a rune; values shorter than minLen are starred out.
func keepEnds(value string, head, tail, minLen int) string {
	rs := []rune(value)
	if len(rs) < minLen {
		return strings.Repeat("*", len(rs))
	}
	var b strings.Builder
	b.Grow(len(value))
	for i, r := range rs {
		if i < head || i >= len(rs)-tail {
			b.WriteRune(r)
		} else {
			b.WriteByte('*')
		}
	}
	return b.String()
}

// maskAddress keeps an address down to its district (区, 县, county-level
// 市 or 旗).
func maskAddress(value string) string {
	pos := 0
	if i := strings.Index(value, "自治区"); i >= 0 {
		pos = i + len("自治区")
	} else if i := strings.Index(value, "省"); i >= 0 {
		pos = i + len("省")
	}
	if i := strings.IndexAny(value[pos:], "市州盟"); i >= 0 {
		_, size := utf8.DecodeRuneInString(value[pos+i:])
		pos += i + size
	}
	cut := -1
	if i := strings.IndexAny(value[pos:], "区县市旗"); i >= 0 {
		_, size := utf8.DecodeRuneInString(value[pos+i:])
		cut = pos + i + size
	} else if pos > 0 {
		cut = pos
	}
	switch {
	case cut < 0:
		return Redacted
	case cut == len(value):
		return value
	default:
		return value[:cut] + Redacted
	}
}
