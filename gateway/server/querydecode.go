package server

import (
	"unicode/utf8"

	v1 "github.com/tongban/tongban/schemas/gen/tongban/v1"
)

// decodeQueryRequest decodes the common shape of a QueryRequest body into
// req and reports whether it did. It handles one JSON object whose members
// are dataset, purpose, page_token/pageToken (strings), keys and filter
// (objects of strings), fields (an array of strings) and
// page_size/pageSize (an integer), with strings free of escapes and
// control characters and valid UTF-8. It returns false, leaving req in an
// unspecified state, for anything else — other members, a member given
// twice, escapes, other number forms, null, malformed JSON, data after the
// object — which the caller then decodes with protojson. Whenever it returns
// true, protojson would have produced an equal message
// (FuzzDecodeQueryRequest checks this).
func decodeQueryRequest(body []byte, req *v1.QueryRequest) bool {
	d := qdec{b: body}
	if len(body) <= sharedBodyMax {
		// The request's strings are slices of one copy of the body: one
		// allocation instead of one a string. Only for small bodies, so
		// that a string the gateway keeps (a key in the cache's index)
		// never holds on to a large one.
		d.s = string(body)
	}
	if d.skipWS(); d.eof() {
		return len(body) == 0 // whitespace only: leave it to protojson
	}
	if !d.consume('{') {
		return false
	}
	var seen [9]bool
	d.skipWS()
	if d.consume('}') {
		return d.end()
	}
	for {
		name, ok := d.raw()
		if !ok {
			return false
		}
		d.skipWS()
		if !d.consume(':') {
			return false
		}
		d.skipWS()
		var num int
		switch string(name) { // compared, not copied
		case "dataset":
			num = 1
			req.Dataset, ok = d.str()
		case "keys":
			num = 2
			req.Keys, ok = d.strMap()
		case "purpose":
			num = 3
			req.Purpose, ok = d.str()
		case "fields":
			num = 4
			req.Fields, ok = d.strList()
		case "filter":
			num = 5
			req.Filter, ok = d.strMap()
		case "page_size", "pageSize":
			num = 7
			req.PageSize, ok = d.int32()
		case "page_token", "pageToken":
			num = 8
			req.PageToken, ok = d.str()
		default:
			return false
		}
		if !ok || seen[num] {
			return false
		}
		seen[num] = true
		d.skipWS()
		if d.consume('}') {
			return d.end()
		}
		if !d.consume(',') {
			return false
		}
		d.skipWS()
	}
}

// sharedBodyMax is the largest body whose strings decodeQueryRequest
// takes from one copy of it.
const sharedBodyMax = 1024

// qdec is a cursor over a JSON document for decodeQueryRequest. s, when
// set, is b as a string, which strings are sliced from.
type qdec struct {
	b []byte
	s string
	i int
}

func (d *qdec) eof() bool { return d.i >= len(d.b) }

func (d *qdec) skipWS() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *qdec) consume(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// end reports whether only whitespace follows.
func (d *qdec) end() bool {
	d.skipWS()
	return d.eof()
}

// str reads a string without escapes or control characters.
func (d *qdec) str() (string, bool) {
	start := d.i + 1
	b, ok := d.raw()
	switch {
	case !ok:
		return "", false
	case d.s != "":
		return d.s[start : start+len(b)], true
	}
	return string(b), true
}

// raw reads a string without escapes or control characters and returns its
// bytes, a slice of the body.
func (d *qdec) raw() ([]byte, bool) {
	if !d.consume('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !utf8.Valid(s) {
				return nil, false
			}
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		d.i++
	}
	return nil, false
}

// strMap reads an object of strings; a repeated key is refused.
func (d *qdec) strMap() (map[string]string, bool) {
	if !d.consume('{') {
		return nil, false
	}
	m := map[string]string{}
	d.skipWS()
	if d.consume('}') {
		return m, true
	}
	for {
		k, ok := d.str()
		if !ok {
			return nil, false
		}
		d.skipWS()
		if !d.consume(':') {
			return nil, false
		}
		d.skipWS()
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		if _, dup := m[k]; dup {
			return nil, false
		}
		m[k] = v
		d.skipWS()
		if d.consume('}') {
			return m, true
		}
		if !d.consume(',') {
			return nil, false
		}
		d.skipWS()
	}
}

// strList reads an array of strings.
func (d *qdec) strList() ([]string, bool) {
	if !d.consume('[') {
		return nil, false
	}
	var out []string
	d.skipWS()
	if d.consume(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		d.skipWS()
		if d.consume(']') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
		d.skipWS()
	}
}

// int32 reads a JSON integer (no fraction, no exponent, no leading zero)
// within the range of int32.
func (d *qdec) int32() (int32, bool) {
	neg := d.consume('-')
	start := d.i
	var n int64
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		n = n*10 + int64(d.b[d.i]-'0')
		if n > 1<<31 {
			return 0, false
		}
		d.i++
	}
	digits := d.i - start
	if digits == 0 || (digits > 1 && d.b[start] == '0') {
		return 0, false
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	if neg {
		n = -n
	}
	if n > 1<<31-1 || n < -1<<31 {
		return 0, false
	}
	return int32(n), true
}
