package server

import (
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// queryMarshaler is the REST marshaler: protojson (proto field names) for
// every message, with a hand-written encoder for the hottest answer,
// QueryResponse. The encoder writes the same JSON document that protojson
// does (TestQueryJSONMatchesProtojson), keys of a record's fields sorted as
// protojson sorts them, without protojson's reflection on the cache-hit
// path.
type queryMarshaler struct {
	*runtime.JSONPb
}

// newMarshaler returns the REST marshaler: proto field names out, unknown
// fields refused in.
func newMarshaler() queryMarshaler {
	return queryMarshaler{&runtime.JSONPb{
		MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true},
		UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: false},
	}}
}

// Marshal implements runtime.Marshaler.
func (m queryMarshaler) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*v1.QueryResponse); ok {
		if b, ok := appendQueryResponse(make([]byte, 0, 2048), r); ok {
			return b, nil
		}
	}
	return m.JSONPb.Marshal(v)
}

// appendQueryResponse encodes r; ok is false when r holds a value the fast
// encoder leaves to protojson (a non-finite number).
func appendQueryResponse(b []byte, r *v1.QueryResponse) ([]byte, bool) {
	b = append(b, '{')
	first := true
	key := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	if len(r.Records) > 0 {
		key("records")
		b = append(b, '[')
		for i, rec := range r.Records {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendRecord(b, rec); !ok {
				return nil, false
			}
		}
		b = append(b, ']')
	}
	if len(r.Withheld) > 0 {
		key("withheld")
		b = append(b, '[')
		for i, w := range r.Withheld {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			sep := false
			if w.Field != "" {
				b = appendJSONString(append(b, `"field":`...), w.Field)
				sep = true
			}
			if w.Reason != "" {
				if sep {
					b = append(b, ',')
				}
				b = appendJSONString(append(b, `"reason":`...), w.Reason)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(r.GrantIds) > 0 {
		key("grant_ids")
		b = appendStrings(b, r.GrantIds)
	}
	if len(r.LegalBasis) > 0 {
		key("legal_basis")
		b = appendStrings(b, r.LegalBasis)
	}
	if r.NextPageToken != "" {
		key("next_page_token")
		b = appendJSONString(b, r.NextPageToken)
	}
	if r.RequestId != "" {
		key("request_id")
		b = appendJSONString(b, r.RequestId)
	}
	if rc := r.Receipt; rc != nil {
		key("receipt")
		b = append(b, '{')
		sep := false
		field := func(name string) {
			if sep {
				b = append(b, ',')
			}
			sep = true
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, '"', ':')
		}
		if rc.Node != "" {
			field("node")
			b = appendJSONString(b, rc.Node)
		}
		if rc.LeafIndex != 0 {
			field("leaf_index")
			b = append(b, '"')
			b = strconv.AppendUint(b, rc.LeafIndex, 10)
			b = append(b, '"')
		}
		if len(rc.LeafHash) > 0 {
			field("leaf_hash")
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, rc.LeafHash)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

func appendRecord(b []byte, rec *v1.Record) ([]byte, bool) {
	b = append(b, '{')
	sep := false
	if rec.Fields != nil {
		b = append(b, `"fields":`...)
		var ok bool
		if b, ok = appendStruct(b, rec.Fields); !ok {
			return nil, false
		}
		sep = true
	}
	if p := rec.Provenance; p != nil {
		if sep {
			b = append(b, ',')
		}
		sep = true
		b = append(b, `"provenance":{`...)
		psep := false
		field := func(name string) {
			if psep {
				b = append(b, ',')
			}
			psep = true
			b = append(b, '"')
			b = append(b, name...)
			b = append(b, '"', ':')
		}
		if p.Department != "" {
			field("department")
			b = appendJSONString(b, p.Department)
		}
		if p.Dataset != "" {
			field("dataset")
			b = appendJSONString(b, p.Dataset)
		}
		if p.RecordId != "" {
			field("record_id")
			b = appendJSONString(b, p.RecordId)
		}
		if p.FetchedAt != nil {
			field("fetched_at")
			var ok bool
			if b, ok = appendTimestamp(b, p.FetchedAt); !ok {
				return nil, false
			}
		}
		if p.Delivery != v1.Delivery_DELIVERY_UNSPECIFIED {
			field("delivery")
			b = appendJSONString(b, p.Delivery.String())
		}
		if p.Age != nil {
			field("age")
			var ok bool
			if b, ok = appendDuration(b, p.Age); !ok {
				return nil, false
			}
		}
		b = append(b, '}')
	}
	if len(rec.MaskedFields) > 0 {
		if sep {
			b = append(b, ',')
		}
		b = append(b, `"masked_fields":`...)
		b = appendStrings(b, rec.MaskedFields)
	}
	return append(b, '}'), true
}

func appendStruct(b []byte, s *structpb.Struct) ([]byte, bool) {
	// Keys in sorted order, as protojson writes them, so that an answer
	// is the same bytes every time.
	var arr [32]string
	keys := arr[:0]
	for k := range s.Fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = appendValue(b, s.Fields[k]); !ok {
			return nil, false
		}
	}
	return append(b, '}'), true
}

func appendValue(b []byte, v *structpb.Value) ([]byte, bool) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		return appendJSONString(b, k.StringValue), true
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
		return appendStruct(b, k.StructValue)
	case *structpb.Value_ListValue:
		b = append(b, '[')
		for i, e := range k.ListValue.GetValues() {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return nil, false
			}
		}
		return append(b, ']'), true
	}
	return nil, false // an unset Value is an error in protojson
}

func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

// appendTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional
// digits, as protojson does.
func appendTimestamp(b []byte, ts *timestamppb.Timestamp) ([]byte, bool) {
	if ts.CheckValid() != nil {
		return nil, false
	}
	t := ts.AsTime().UTC()
	b = append(b, '"')
	b = t.AppendFormat(b, "2006-01-02T15:04:05")
	b = appendNanos(b, int64(t.Nanosecond()))
	return append(b, 'Z', '"'), true
}

// appendDuration writes seconds with 0, 3, 6 or 9 fractional digits and an
// "s", as protojson does.
func appendDuration(b []byte, d *durationpb.Duration) ([]byte, bool) {
	if d.CheckValid() != nil {
		return nil, false
	}
	secs, nanos := d.Seconds, int64(d.Nanos)
	b = append(b, '"')
	if secs < 0 || nanos < 0 {
		b = append(b, '-')
		secs, nanos = -secs, -nanos
	}
	b = strconv.AppendInt(b, secs, 10)
	b = appendNanos(b, nanos)
	return append(b, 's', '"'), true
}

func appendNanos(b []byte, nanos int64) []byte {
	if nanos == 0 {
		return b
	}
	digits := 9
	for _, d := range []int{3, 6} {
		if nanos%int64(math.Pow10(9-d)) == 0 {
			digits = d
			break
		}
	}
	b = append(b, '.')
	frac := strconv.FormatInt(nanos+int64(time.Second), 10)[1:] // 9 digits with leading zeros
	return append(b, frac[:digits]...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString writes s as a JSON string: UTF-8 as is; quotation mark,
// backslash and control characters escaped; invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		var v strings.Builder
		for _, r := range s { // each invalid byte ranges as U+FFFD
			v.WriteRune(r)
		}
		s = v.String()
	}
	return appendValidJSONString(b, s)
}

// appendValidJSONString is appendJSONString for valid UTF-8: multi-byte
// sequences are copied without decoding, only ASCII needs escaping.
func appendValidJSONString(b []byte, s string) []byte {
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
