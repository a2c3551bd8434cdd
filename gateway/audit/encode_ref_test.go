package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The reference encoder below is the straightforward encoder the log
// shipped with (validate, then a rune-by-rune appendString). The tests
// hold the faster encoder to it byte for byte, and to its errors.

func refEncode(e Entry) ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	b := append(make([]byte, 0, 512), EntryVersion, '{')
	b = refField(b, "consumer", e.Consumer)
	b = refField(b, "consumer_department", e.ConsumerDepartment)
	b = refList(b, "datasets", e.Datasets)
	b = refField(b, "decision", e.Decision)
	b = refField(b, "delivery", e.Delivery)
	b = refField(b, "deny_reason", e.DenyReason)
	b = refField(b, "department", e.Department)
	if len(e.Details) > 0 {
		keys := make([]string, 0, len(e.Details))
		for k := range e.Details {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, `"details":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = refAppendString(b, k)
			b = append(b, ':')
			b = refAppendString(b, e.Details[k])
		}
		b = append(b, "},"...)
	}
	b = refList(b, "fields_returned", e.FieldsReturned)
	b = refList(b, "fields_withheld", e.FieldsWithheld)
	b = refList(b, "grant_ids", e.GrantIDs)
	b = append(b, `"kind":`...)
	b = refAppendString(b, e.Kind)
	b = append(b, ',')
	b = refList(b, "legal_basis", e.LegalBasis)
	b = refField(b, "node", e.Node)
	b = refField(b, "purpose", e.Purpose)
	b = refField(b, "request_id", e.RequestID)
	b = refField(b, "response_digest", e.ResponseDigest)
	b = refList(b, "subjects", normSubjects(e.Subjects))
	b = append(b, `"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `"}`...)
	return b, nil
}

func refField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":`...)
	b = refAppendString(b, value)
	return append(b, ',')
}

func refList(b []byte, key string, values []string) []byte {
	if len(values) == 0 {
		return b
	}
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range values {
		if i > 0 {
			b = append(b, ',')
		}
		b = refAppendString(b, v)
	}
	return append(b, "],"...)
}

func refAppendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var stringSeeds = []string{
	"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rret\bbs\fff", "\x00\x01\x1f\x7f",
	"中文 〈书名号〉 《优化营商环境条例》（国务院令第722号）“引号”", "line\u2028para\u2029end",
	"\u2028\u2029\u2028", "x\u2027\u202a", "emoji 🙂 and \u00e9", "\xff", "abc\xe2", "abc\xe2\x80", "\xe2\x80\xa8\xff",
	"0123456789abcdef0123456789abcdef", "01234567\"9abcdef", "0123456\\89abcdef", "012345678\n",
	"\xed\xa0\x80 surrogate", "\xc0\xaf overlong", "\xf4\x90\x80\x80 beyond U+10FFFF",
}

// FuzzAppendString holds appendStringValid to the reference encoder on
// valid UTF-8 and to utf8.ValidString on validity.
func FuzzAppendString(f *testing.F) {
	for _, s := range stringSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := appendStringValid([]byte("prefix"), s)
		if ok != utf8.ValidString(s) {
			t.Fatalf("appendStringValid(%q) valid = %v, want %v", s, ok, !ok)
		}
		if !bytes.HasPrefix(got, []byte("prefix")) {
			t.Fatalf("appendStringValid(%q) lost the prefix", s)
		}
		if ok {
			if want := refAppendString([]byte("prefix"), s); !bytes.Equal(got, want) {
				t.Fatalf("appendStringValid(%q) = %s, want %s", s, got, want)
			}
		}
		if a := appendString(nil, s); !bytes.Equal(a, got[len("prefix"):]) {
			t.Fatalf("appendString(%q) = %s, appendStringValid %s", s, a, got)
		}
	})
}

// TestPlainWord checks the word-at-a-time test against the byte classes,
// for every byte value at every position among plain and high bytes.
func TestPlainWord(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	filler := func() byte {
		for {
			c := byte(rng.IntN(256))
			if k := strClass[c]; k == strPlain || k == strHigh {
				return c
			}
		}
	}
	for round := range 64 {
		for pos := range 8 {
			for v := range 256 {
				var w [8]byte
				for i := range w {
					w[i] = filler()
				}
				w[pos] = byte(v)
				if round%2 == 1 {
					// A second special byte elsewhere.
					w[(pos+3)%8] = byte(rng.IntN(256))
				}
				var x uint64
				want := true
				for i, c := range w {
					x |= uint64(c) << (8 * i)
					if k := strClass[c]; k != strPlain && k != strHigh {
						want = false
					}
				}
				if got := plainWord(x); got != want {
					t.Fatalf("plainWord(% x) = %v, want %v", w, got, want)
				}
			}
		}
	}
}

// FuzzEncode holds Encode to the reference encoder: the same bytes, or an
// error with the same text.
func FuzzEncode(f *testing.F) {
	for i, s := range stringSeeds {
		f.Add(s, stringSeeds[(i+1)%len(stringSeeds)], "permit", "exchange", int64(i))
	}
	f.Add("a", "b", "maybe", "exchange", int64(1))
	f.Add("\xff", "b", "maybe", "exchange", int64(1))
	f.Add("a", "\xfe", "", "Bad Kind", int64(0))
	f.Fuzz(func(t *testing.T, s1, s2, decision, kind string, nanos int64) {
		e := Entry{
			Time:               time.Unix(1767225600, nanos%1e9).In(time.FixedZone("CST", 8*3600)),
			RequestID:          s1,
			Node:               "node-1",
			Kind:               kind,
			Consumer:           s2,
			ConsumerDepartment: s1 + s2,
			Datasets:           []string{s1, "market.business_licences"},
			Subjects:           []string{SubjectHash(subjectKey, s1), SubjectHash(subjectKey, s2)},
			Purpose:            s2,
			LegalBasis:         []string{s2, s1},
			GrantIDs:           []string{"g-1"},
			Decision:           decision,
			DenyReason:         strings.ToUpper(s1),
			FieldsReturned:     []string{"name", s2},
			FieldsWithheld:     []string{s1},
			Department:         s2,
			Delivery:           DeliveryCache,
			ResponseDigest:     Digest([]byte(s1)),
			Details:            map[string]string{"k": s1},
		}
		if len(s1)%3 == 0 {
			e.Details = nil
		}
		want, werr := refEncode(e)
		got, err := Encode(e)
		if (err == nil) != (werr == nil) || (err != nil && err.Error() != werr.Error()) {
			t.Fatalf("Encode error %v, reference %v", err, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Encode = %q\nreference %q", got, want)
		}
	})
}

// TestEncodeErrorsMatchValidate checks that Encode reports the problem
// validate reports first, also when a string is not valid UTF-8 as well.
func TestEncodeErrorsMatchValidate(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := map[string]Entry{
		"utf8 only":             {Time: at, Kind: KindExchange, Purpose: "\xff"},
		"utf8 in a list":        {Time: at, Kind: KindExchange, LegalBasis: []string{"ok", "\xfe"}},
		"utf8 in two strings":   {Time: at, Kind: KindExchange, Purpose: "\xff", Consumer: "\xfe"},
		"utf8 and decision":     {Time: at, Kind: KindExchange, Purpose: "\xff", Decision: "maybe"},
		"utf8 and kind":         {Time: at, Kind: "Exchange", Purpose: "\xff"},
		"utf8 and digest":       {Time: at, Kind: KindExchange, Department: "\xff", ResponseDigest: "abc"},
		"utf8 in a detail key":  {Time: at, Kind: KindExchange, Details: map[string]string{"\xff": "v"}},
		"truncated U+2028":      {Time: at, Kind: KindExchange, Node: "a\xe2\x80"},
		"surrogate":             {Time: at, Kind: KindExchange, RequestID: "\xed\xa0\x80"},
		"U+2028 is not invalid": {Time: at, Kind: KindExchange, RequestID: "a\u2028b"},
	}
	for name, e := range cases {
		t.Run(name, func(t *testing.T) {
			want := e.validate()
			_, err := Encode(e)
			if (err == nil) != (want == nil) || (err != nil && err.Error() != want.Error()) {
				t.Fatalf("Encode error %v, validate %v", err, want)
			}
		})
	}
}

// refSubjectHash is SubjectHash as first written: a new HMAC per call.
func refSubjectHash(key []byte, subjectID string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strings.ToUpper(strings.TrimSpace(subjectID))))
	return hex.EncodeToString(m.Sum(nil))
}
