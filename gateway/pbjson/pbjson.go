// Package pbjson writes google.protobuf.Struct values and strings as JSON
// exactly as protojson does (object keys sorted, the same escapes, the same
// numbers), without protojson's reflection. The gateway uses it for the
// answers of dataset queries, its hottest path, and for the record
// renderings the query pipeline keeps (see gateway/query).
package pbjson

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// AppendStruct appends s as a JSON object with its keys in sorted order, as
// protojson writes it, so that an answer is the same bytes every time. ok
// is false when s holds a value protojson refuses to write (a non-finite
// number or an unset Value); the caller then leaves the message to
// protojson, which reports the error.
func AppendStruct(b []byte, s *structpb.Struct) (_ []byte, ok bool) {
	var arr [32]string
	keys := arr[:0]
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, k)
		b = append(b, ':')
		if b, ok = AppendValue(b, s.GetFields()[k]); !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

// AppendValue appends v as JSON; ok is false as for AppendStruct.
func AppendValue(b []byte, v *structpb.Value) (_ []byte, ok bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return AppendString(b, k.StringValue), true
	case *structpb.Value_NumberValue:
		n := k.NumberValue
		if math.IsNaN(n) || math.IsInf(n, 0) {
			return nil, false
		}
		return strconv.AppendFloat(b, n, 'g', -1, 64), true
	case *structpb.Value_BoolValue:
		return strconv.AppendBool(b, k.BoolValue), true
	case *structpb.Value_NullValue:
		return append(b, "null"...), true
	case *structpb.Value_StructValue:
		return AppendStruct(b, k.StructValue)
	case *structpb.Value_ListValue:
		b = append(b, '[')
		for i, e := range k.ListValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			if b, ok = AppendValue(b, e); !ok {
				return nil, false
			}
		}
		return append(b, ']'), true
	}
	return nil, false // an unset Value is an error in protojson
}

// AppendStrings appends ss as a JSON array of strings.
func AppendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = AppendString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string: UTF-8 as is; quotation mark,
// backslash and control characters escaped; invalid UTF-8 replaced by
// U+FFFD.
func AppendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		var v strings.Builder
		for _, r := range s { // each invalid byte ranges as U+FFFD
			v.WriteRune(r)
		}
		s = v.String()
	}
	return appendValidString(b, s)
}

// appendValidString is AppendString for valid UTF-8: multi-byte sequences
// are copied without decoding, only ASCII needs escaping.
func appendValidString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
