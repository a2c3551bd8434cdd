package server

import (
	"encoding/base64"
	"strconv"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tongban/tongban/gateway/pbjson"
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
		if b, ok := appendQueryResponse(make([]byte, 0, 2048), r, nil); ok {
			return b, nil
		}
	}
	return m.JSONPb.Marshal(v)
}

// appendQueryResponse encodes r; ok is false when r holds a value the fast
// encoder leaves to protojson (a non-finite number). fieldsJSON is nil or
// aligned with r.Records: a non-nil element is the JSON of that record's
// fields (see query.Answer), copied as it is.
func appendQueryResponse(b []byte, r *v1.QueryResponse, fieldsJSON [][]byte) ([]byte, bool) {
	b = append(b, '{')
	sep := false
	if len(r.Records) > 0 {
		b = appendKey(b, &sep, "records")
		b = append(b, '[')
		for i, rec := range r.Records {
			if i > 0 {
				b = append(b, ',')
			}
			var js []byte
			if i < len(fieldsJSON) {
				js = fieldsJSON[i]
			}
			var ok bool
			if b, ok = appendRecord(b, rec, js); !ok {
				return nil, false
			}
		}
		b = append(b, ']')
	}
	if len(r.Withheld) > 0 {
		b = appendKey(b, &sep, "withheld")
		b = append(b, '[')
		for i, w := range r.Withheld {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			wsep := false
			if w.Field != "" {
				b = pbjson.AppendString(appendKey(b, &wsep, "field"), w.Field)
			}
			if w.Reason != "" {
				b = pbjson.AppendString(appendKey(b, &wsep, "reason"), w.Reason)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(r.GrantIds) > 0 {
		b = appendKey(b, &sep, "grant_ids")
		b = pbjson.AppendStrings(b, r.GrantIds)
	}
	if len(r.LegalBasis) > 0 {
		b = appendKey(b, &sep, "legal_basis")
		b = pbjson.AppendStrings(b, r.LegalBasis)
	}
	if r.NextPageToken != "" {
		b = appendKey(b, &sep, "next_page_token")
		b = pbjson.AppendString(b, r.NextPageToken)
	}
	if r.RequestId != "" {
		b = appendKey(b, &sep, "request_id")
		b = pbjson.AppendString(b, r.RequestId)
	}
	if rc := r.Receipt; rc != nil {
		b = appendKey(b, &sep, "receipt")
		b = append(b, '{')
		rsep := false
		if rc.Node != "" {
			b = appendKey(b, &rsep, "node")
			b = pbjson.AppendString(b, rc.Node)
		}
		if rc.LeafIndex != 0 {
			b = appendKey(b, &rsep, "leaf_index")
			b = append(b, '"')
			b = strconv.AppendUint(b, rc.LeafIndex, 10)
			b = append(b, '"')
		}
		if len(rc.LeafHash) > 0 {
			b = appendKey(b, &rsep, "leaf_hash")
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, rc.LeafHash)
			b = append(b, '"')
		}
		b = append(b, '}')
	}
	return append(b, '}'), true
}

// appendKey appends the key name of an object member, after a comma unless
// it is the object's first (*sep false), and sets *sep.
func appendKey(b []byte, sep *bool, name string) []byte {
	if *sep {
		b = append(b, ',')
	}
	*sep = true
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

// appendRecord encodes rec, its fields as fieldsJSON when that is not nil.
func appendRecord(b []byte, rec *v1.Record, fieldsJSON []byte) ([]byte, bool) {
	b = append(b, '{')
	sep := false
	if rec.Fields != nil {
		b = append(b, `"fields":`...)
		if fieldsJSON != nil {
			b = append(b, fieldsJSON...)
		} else {
			var ok bool
			if b, ok = pbjson.AppendStruct(b, rec.Fields); !ok {
				return nil, false
			}
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
		if p.Department != "" {
			b = appendKey(b, &psep, "department")
			b = pbjson.AppendString(b, p.Department)
		}
		if p.Dataset != "" {
			b = appendKey(b, &psep, "dataset")
			b = pbjson.AppendString(b, p.Dataset)
		}
		if p.RecordId != "" {
			b = appendKey(b, &psep, "record_id")
			b = pbjson.AppendString(b, p.RecordId)
		}
		if p.FetchedAt != nil {
			b = appendKey(b, &psep, "fetched_at")
			var ok bool
			if b, ok = appendTimestamp(b, p.FetchedAt); !ok {
				return nil, false
			}
		}
		if p.Delivery != v1.Delivery_DELIVERY_UNSPECIFIED {
			// protojson writes a value without a name as a number:
			// leave that to it.
			name, ok := v1.Delivery_name[int32(p.Delivery)]
			if !ok {
				return nil, false
			}
			b = appendKey(b, &psep, "delivery")
			b = pbjson.AppendString(b, name)
		}
		if p.Age != nil {
			b = appendKey(b, &psep, "age")
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
		b = pbjson.AppendStrings(b, rec.MaskedFields)
	}
	return append(b, '}'), true
}

// appendTimestamp writes RFC 3339 in UTC with 0, 3, 6 or 9 fractional
// digits, as protojson does; false for a timestamp protojson refuses (nil,
// or outside years 1 to 9999). It computes the civil date itself (after
// Howard Hinnant's days-to-civil) instead of going through time.Time's
// formatting, a third of the cost of a cached answer's record.
func appendTimestamp(b []byte, ts *timestamppb.Timestamp) ([]byte, bool) {
	if ts == nil {
		return nil, false
	}
	secs, nanos := ts.GetSeconds(), int64(ts.GetNanos())
	if secs < minTimestamp || secs > maxTimestamp || nanos < 0 || nanos >= 1e9 {
		return nil, false
	}
	// secs >= minTimestamp, so day counts from 0000-03-01 are positive.
	days := (secs-minTimestamp)/86400 + minDay
	sod := (secs - minTimestamp) % 86400
	era := days / 146097
	doe := days - era*146097                               // [0, 146096]
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365 // [0, 399]
	doy := doe - (365*yoe + yoe/4 - yoe/100)               // [0, 365], from March 1
	mp := (5*doy + 2) / 153                                // [0, 11], March is 0
	day := doy - (153*mp+2)/5 + 1
	month := mp + 3
	if month > 12 {
		month -= 12
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, month, 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, sod/3600, 2)
	b = append(b, ':')
	b = appendDigits(b, sod/60%60, 2)
	b = append(b, ':')
	b = appendDigits(b, sod%60, 2)
	b = appendNanos(b, nanos)
	return append(b, 'Z', '"'), true
}

const (
	// minTimestamp and maxTimestamp are 0001-01-01T00:00:00Z and
	// 9999-12-31T23:59:59Z, the range protojson writes.
	minTimestamp = -62135596800
	maxTimestamp = 253402300799
	// minDay is the day of minTimestamp counted from 0000-03-01.
	minDay = 306
)

// appendDigits appends v (non-negative) in decimal, zero-padded to width.
func appendDigits(b []byte, v int64, width int) []byte {
	var buf [20]byte
	i := len(buf)
	for v >= 10 || width > 1 {
		i--
		buf[i] = byte('0' + v%10)
		v /= 10
		width--
	}
	i--
	buf[i] = byte('0' + v)
	return append(b, buf[i:]...)
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

// appendNanos writes nanos (in [0, 1e9)) as a fraction of 0, 3, 6 or 9
// digits, the fewest that hold it exactly.
func appendNanos(b []byte, nanos int64) []byte {
	switch {
	case nanos == 0:
		return b
	case nanos%1e6 == 0:
		return appendDigits(append(b, '.'), nanos/1e6, 3)
	case nanos%1e3 == 0:
		return appendDigits(append(b, '.'), nanos/1e3, 6)
	}
	return appendDigits(append(b, '.'), nanos, 9)
}
