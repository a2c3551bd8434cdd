package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

var subjectKey = []byte("test subject key, 32 bytes long!")

// hmacJefe is HMAC-SHA256 with key "Jefe" of "WHAT DO YA WANT FOR NOTHING?".
const hmacJefe = "0c2fe188bd4f39005b75d81fd7ac8ad1ad97d177c13ff21f4ff86639860621db"

func goldenEntries() map[string]Entry {
	at := time.Date(2026, 3, 14, 9, 26, 53, 589793000, time.FixedZone("CST", 8*3600))
	return map[string]Entry{
		"exchange_permit": {
			Time:               at,
			RequestID:          "req-0001",
			Node:               "node-1",
			Kind:               KindExchange,
			Consumer:           "sjz-approval-system",
			ConsumerDepartment: "石家庄市行政审批局",
			Datasets:           []string{"market.business_licences"},
			Subjects:           []string{SubjectHash(subjectKey, "91130100MA0CXXXX1X")},
			Purpose:            "企业开办审批",
			LegalBasis:         []string{"《优化营商环境条例》第三十五条"},
			GrantIDs:           []string{"grant-7"},
			Decision:           DecisionPermit,
			FieldsReturned:     []string{"name", "legal_rep", "reg_capital"},
			Department:         "market",
			Delivery:           DeliveryCache,
			ResponseDigest:     Digest([]byte(`{"records":[]}`)),
		},
		"exchange_partial": {
			Time:           at,
			RequestID:      "req-0002",
			Node:           "node-1",
			Kind:           KindExchange,
			Consumer:       "enforcement-terminal",
			Datasets:       []string{"approval.permits"},
			Subjects:       SubjectHashes(subjectKey, []string{"130102199003077777", "91130100MA0CXXXX1X", "130102199003077777"}),
			Purpose:        "inspection <site> & follow-up",
			GrantIDs:       []string{"grant-2", "grant-3"},
			Decision:       DecisionPartial,
			FieldsReturned: []string{"permit_no"},
			FieldsWithheld: []string{"holder_phone"},
			Department:     "approval",
			Delivery:       DeliveryStale,
		},
		"exchange_deny": {
			Time:       at,
			RequestID:  "req-0003",
			Node:       "node-2",
			Kind:       KindExchange,
			Consumer:   "unknown-system",
			Datasets:   []string{"resources.parcels"},
			Purpose:    "curiosity",
			Decision:   DecisionDeny,
			DenyReason: "NO_GRANT",
		},
		"autofill": {
			Time:           at,
			RequestID:      "req-0004",
			Node:           "node-1",
			Kind:           KindAutofill,
			Consumer:       "haidian-window",
			Datasets:       []string{"market.enterprises", "resources.land_use_certificates"},
			Subjects:       []string{SubjectHash(subjectKey, "91130100MA0CXXXX1X")},
			Purpose:        "construction permit application",
			Decision:       DecisionPermit,
			FieldsReturned: []string{"enterprise_name", "parcel_id"},
			Delivery:       DeliveryLive,
		},
		"grant_transition": {
			Time:      time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			RequestID: "req-0005",
			Node:      "node-1",
			Kind:      KindGrantTransition,
			GrantIDs:  []string{"grant-9"},
			Details: map[string]string{
				"to":      "approved",
				"from":    "proposed",
				"actor":   "reviewer-li",
				"role":    "legal_reviewer",
				"opinion": "符合《政务数据共享条例》\n\"quoted\"",
			},
		},
		"minimal": {
			Time: time.Unix(0, 1).UTC(),
			Kind: KindCorrection,
		},
	}
}

func TestEncodeGolden(t *testing.T) {
	for name, e := range goldenEntries() {
		t.Run(name, func(t *testing.T) {
			got, err := Encode(e)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "entry_"+name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("encoding changed:\n got %q\nwant %q", got, want)
			}
			again, err := Encode(e)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("second encoding differs")
			}
			dec, err := Decode(want)
			if err != nil {
				t.Fatalf("decoding golden: %v", err)
			}
			wantE := e
			wantE.Version = EntryVersion
			wantE.Time = e.Time.UTC()
			if !reflect.DeepEqual(dec, wantE) {
				t.Errorf("decoded %+v\nwant %+v", dec, wantE)
			}
			if got[0] != EntryVersion {
				t.Errorf("version byte %d", got[0])
			}
			assertSortedKeys(t, got[1:])
		})
	}
}

// assertSortedKeys checks that every JSON object in b has its keys in
// ascending order.
func assertSortedKeys(t *testing.T, b []byte) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	var stack []string // last key per open object, "" marks an array
	var inObj []bool
	expectKey := false
	for range 10000 {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				inObj = append(inObj, true)
				stack = append(stack, "")
				expectKey = true
			case '[':
				inObj = append(inObj, false)
				stack = append(stack, "")
				expectKey = false
			default:
				inObj = inObj[:len(inObj)-1]
				stack = stack[:len(stack)-1]
				expectKey = len(inObj) > 0 && inObj[len(inObj)-1]
			}
			continue
		case string:
			if expectKey {
				if prev := stack[len(stack)-1]; prev != "" && prev >= v {
					t.Errorf("key %q after %q", v, prev)
				}
				stack[len(stack)-1] = v
				expectKey = false
				continue
			}
		}
		expectKey = len(inObj) > 0 && inObj[len(inObj)-1]
	}
}

func TestEncodeRejects(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		e    Entry
	}{
		{"no time", Entry{Kind: KindExchange}},
		{"no kind", Entry{Time: at}},
		{"kind with spaces", Entry{Time: at, Kind: "an exchange"}},
		{"bad version", Entry{Version: 2, Time: at, Kind: KindExchange}},
		{"bad decision", Entry{Time: at, Kind: KindExchange, Decision: "maybe"}},
		{"bad delivery", Entry{Time: at, Kind: KindExchange, Delivery: "pigeon"}},
		{"raw subject id", Entry{Time: at, Kind: KindExchange, Subjects: []string{"130102199003077777"}}},
		{"raw subject id among hashes", Entry{Time: at, Kind: KindExchange, Subjects: []string{SubjectHash(subjectKey, "x"), ""}}},
		{"bad digest", Entry{Time: at, Kind: KindExchange, ResponseDigest: "XYZ"}},
		{"invalid utf8", Entry{Time: at, Kind: KindExchange, Purpose: "\xff"}},
		{"invalid utf8 detail", Entry{Time: at, Kind: KindExchange, Details: map[string]string{"a": "\xfe"}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Encode(c.e); !errors.Is(err, ErrEncoding) {
				t.Errorf("got %v, want ErrEncoding", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := Encode(Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Kind: KindExchange, Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	ha, hb := SubjectHash(subjectKey, "a"), SubjectHash(subjectKey, "b")
	if ha > hb {
		ha, hb = hb, ha
	}
	cases := map[string][]byte{
		"empty":              nil,
		"no version":         good[1:],
		"version 2":          append([]byte{2}, good[1:]...),
		"white space":        append([]byte{1}, bytes.ReplaceAll(good[1:], []byte(`,`), []byte(`, `))...),
		"unsorted keys":      append([]byte{1}, []byte(`{"node":"n","kind":"exchange","time":"2026-01-01T00:00:00Z"}`)...),
		"unknown key":        append([]byte{1}, []byte(`{"kind":"exchange","node":"n","time":"2026-01-01T00:00:00Z","x":"y"}`)...),
		"non-UTC time":       append([]byte{1}, []byte(`{"kind":"exchange","node":"n","time":"2026-01-01T08:00:00+08:00"}`)...),
		"trailing zeros":     append([]byte{1}, []byte(`{"kind":"exchange","node":"n","time":"2026-01-01T00:00:00.100Z"}`)...),
		"duplicate key":      append([]byte{1}, []byte(`{"kind":"exchange","node":"m","node":"n","time":"2026-01-01T00:00:00Z"}`)...),
		"trailing data":      append(append([]byte(nil), good...), ' '),
		"explicit empty":     append([]byte{1}, []byte(`{"consumer":"","kind":"exchange","node":"n","time":"2026-01-01T00:00:00Z"}`)...),
		"not json":           []byte{1, 'x', 'y'},
		"escaped unicode":    append([]byte{1}, []byte(`{"kind":"exchange","node":"\u006e","time":"2026-01-01T00:00:00Z"}`)...),
		"unsorted subjects":  append([]byte{1}, []byte(`{"kind":"exchange","subjects":["`+hb+`","`+ha+`"],"time":"2026-01-01T00:00:00Z"}`)...),
		"duplicate subjects": append([]byte{1}, []byte(`{"kind":"exchange","subjects":["`+ha+`","`+ha+`"],"time":"2026-01-01T00:00:00Z"}`)...),
		"empty subjects":     append([]byte{1}, []byte(`{"kind":"exchange","subjects":[],"time":"2026-01-01T00:00:00Z"}`)...),
	}
	if _, err := Decode(good); err != nil {
		t.Fatalf("good encoding rejected: %v", err)
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode(b); !errors.Is(err, ErrEncoding) {
				t.Errorf("got %v, want ErrEncoding", err)
			}
		})
	}
}

func TestSubjectsCanonical(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"130102199003077777", "91130100MA0CXXXX1X", " 130102199003077777", "", "91130100ma0cxxxx1x"}
	hs := SubjectHashes(subjectKey, ids)
	if len(hs) != 2 || !slices.IsSorted(hs) {
		t.Fatalf("SubjectHashes = %v, want two sorted hashes", hs)
	}
	unsorted := []string{hs[1], hs[0], hs[1]}
	b, err := Encode(Entry{Time: at, Kind: KindExchange, Subjects: unsorted})
	if err != nil {
		t.Fatal(err)
	}
	if unsorted[0] != hs[1] {
		t.Errorf("Encode changed its argument")
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.Subjects, hs) {
		t.Errorf("decoded subjects %v, want %v", d.Subjects, hs)
	}
	if got := SubjectHashes(subjectKey, nil); len(got) != 0 {
		t.Errorf("no ids gave %v", got)
	}
}

func TestSubjectHash(t *testing.T) {
	a := SubjectHash(subjectKey, "91130100MA0CXXXX1X")
	if len(a) != 64 || !isHexHash(a) {
		t.Fatalf("hash %q is not 64 hex digits", a)
	}
	if b := SubjectHash(subjectKey, " 91130100ma0cxxxx1x "); b != a {
		t.Errorf("case or spaces change the hash")
	}
	if b := SubjectHash([]byte("another key"), "91130100MA0CXXXX1X"); b == a {
		t.Errorf("the key does not change the hash")
	}
	if b := SubjectHash(subjectKey, "91130100MA0CXXXX2X"); b == a {
		t.Errorf("different subjects hash alike")
	}
	// HMAC-SHA256 test case 2 of RFC 4231 (key "Jefe"), on the upper-cased
	// message, cross-checked with: printf 'WHAT DO YA WANT FOR NOTHING?' | openssl dgst -sha256 -hmac Jefe
	if got, want := SubjectHash([]byte("Jefe"), "what do ya want for nothing?"), hmacJefe; got != want {
		t.Errorf("HMAC %s, want %s", got, want)
	}
}

// TestStringEscaping checks the hand-written string encoder against
// encoding/json without HTML escaping, which it documents it matches.
func TestStringEscaping(t *testing.T) {
	var all strings.Builder
	for c := range 0x80 {
		all.WriteByte(byte(c))
	}
	cases := []string{
		"", "plain", `quote " and \ backslash`, "tab\tnew\nline\rret\bbs\fff",
		"\x00\x01\x1f\x7f", "<html> & 'single'", "中文 〈书名号〉 《优化营商环境条例》",
		"line\u2028para\u2029end", "emoji 🙂 and \u00e9", all.String(),
	}
	for _, s := range cases {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s); err != nil {
			t.Fatal(err)
		}
		want := strings.TrimSuffix(buf.String(), "\n")
		if got := string(appendString(nil, s)); got != want {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
		// And entries holding the string round-trip.
		e := Entry{Time: time.Unix(1, 0), Kind: KindExchange, Purpose: s, Details: map[string]string{s: s}}
		b, err := Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		d, err := Decode(b)
		if err != nil || d.Purpose != s || d.Details[s] != s {
			t.Errorf("round trip of %q: %+v, %v", s, d, err)
		}
	}
}
