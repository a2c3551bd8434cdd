package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// EntryVersion is the version of the entry encoding written by Encode.
const EntryVersion = 1

// Kinds of entries. Kind is an open set of lowercase words; these are the
// ones the gateway writes.
const (
	KindExchange        = "exchange"
	KindAutofill        = "autofill"
	KindGrantTransition = "grant_transition"
	KindCorrection      = "correction"
)

// Decisions recorded for an exchange.
const (
	DecisionPermit  = "permit"
	DecisionDeny    = "deny"
	DecisionPartial = "partial"
)

// Deliveries say where the released data came from.
const (
	DeliveryLive  = "live"
	DeliveryCache = "cache"
	DeliveryStale = "stale"
)

// ErrEncoding reports an entry that cannot be encoded or bytes that are not
// a canonical entry encoding.
var ErrEncoding = errors.New("invalid audit entry encoding")

// Entry is one record of the whole-process log: an exchange, an auto-fill, a
// grant workflow transition or a correction.
//
// The log never holds a data subject's identifier, only Subjects, keyed
// hashes made with SubjectHash.
type Entry struct {
	// Version is the encoding version; zero means EntryVersion.
	Version int
	// Time is when the gateway decided the request; it is recorded in UTC
	// with nanosecond precision.
	Time time.Time
	// RequestID is the gateway's identifier of the request.
	RequestID string
	// Node is the gateway node that wrote the entry.
	Node string
	// Kind is what happened: KindExchange, KindAutofill, ...
	Kind string
	// Consumer is the system identifier of the calling system.
	Consumer string
	// ConsumerDepartment is the department operating the calling system.
	ConsumerDepartment string
	// Datasets are the datasets read or concerned, in the order given.
	Datasets []string
	// Subjects are SubjectHash of the identifiers of the data subjects
	// whose records the entry concerns (lowercase hex), e.g. every holder
	// of the parcels a bounding-box query returned. Encode sorts them and
	// drops duplicates; Decode returns them sorted.
	Subjects []string
	// Purpose is the purpose the consumer stated.
	Purpose string
	// LegalBasis lists the legal provisions the release relies on.
	LegalBasis []string
	// GrantIDs lists the grants the release was made under.
	GrantIDs []string
	// Decision is DecisionPermit, DecisionDeny or DecisionPartial, or empty
	// for entries that are not decisions.
	Decision string
	// DenyReason is the stable reason of a denial.
	DenyReason string
	// FieldsReturned lists the fields released.
	FieldsReturned []string
	// FieldsWithheld lists the requested fields not released.
	FieldsWithheld []string
	// Department is the source department of the data.
	Department string
	// Delivery is DeliveryLive, DeliveryCache or DeliveryStale, or empty.
	Delivery string
	// ResponseDigest is Digest of the response body (lowercase hex), or
	// empty.
	ResponseDigest string
	// Details holds free attributes, e.g. for workflow transitions: actor,
	// role, opinion, from, to.
	Details map[string]string
}

// wireEntry is the JSON form of an Entry, used to decode.
type wireEntry struct {
	Consumer           string            `json:"consumer"`
	ConsumerDepartment string            `json:"consumer_department"`
	Datasets           []string          `json:"datasets"`
	Decision           string            `json:"decision"`
	Delivery           string            `json:"delivery"`
	DenyReason         string            `json:"deny_reason"`
	Department         string            `json:"department"`
	Details            map[string]string `json:"details"`
	FieldsReturned     []string          `json:"fields_returned"`
	FieldsWithheld     []string          `json:"fields_withheld"`
	GrantIDs           []string          `json:"grant_ids"`
	Kind               string            `json:"kind"`
	LegalBasis         []string          `json:"legal_basis"`
	Node               string            `json:"node"`
	Purpose            string            `json:"purpose"`
	RequestID          string            `json:"request_id"`
	ResponseDigest     string            `json:"response_digest"`
	Subjects           []string          `json:"subjects"`
	Time               string            `json:"time"`
}

// Encode returns the canonical encoding of e, the bytes that become a Merkle
// leaf:
//
//	0x01 || JSON object
//
// The first byte is the encoding version (EntryVersion). The JSON object has
// its keys in ascending byte order (consumer, consumer_department, datasets,
// decision, delivery, deny_reason, department, details, fields_returned,
// fields_withheld, grant_ids, kind, legal_basis, node, purpose, request_id,
// response_digest, subjects, time; the keys of details sorted likewise), no
// insignificant white space, and omits empty strings, lists and maps except
// "kind" and "time". "time" is RFC 3339 in UTC with up to nine fractional
// digits and no trailing zeros. Lists keep the order given. Strings are
// valid UTF-8 written as is, except that quotation marks and backslashes
// are escaped with a backslash, control characters as \b \f \n \r \t or
// \u00xx, and U+2028 and U+2029 as \u2028 and \u2029 (the output of Go's
// encoding/json without HTML escaping). The same Entry always encodes to
// the same bytes, and Decode accepts only bytes Encode could have written.
func Encode(e Entry) ([]byte, error) {
	return appendEntry(make([]byte, 0, 512), &e)
}

// appendEntry appends the canonical encoding of e (Encode) to b.
//
// It checks e as validate does, in one pass with the encoding: the checks
// other than UTF-8 validity come first, the strings are checked while they
// are escaped, and an entry found wanting is handed to validate for the
// error, so that the error is the one validate gives.
func appendEntry(b []byte, e *Entry) ([]byte, error) {
	if err := e.validateShape(); err != nil {
		return nil, err
	}
	w := entryWriter{ok: true}
	b = w.entry(b, e)
	if !w.ok {
		if err := e.validate(); err != nil {
			return nil, err
		}
		// Unreachable: the writer refuses only strings validate refuses.
		return nil, fmt.Errorf("%w: a string is not valid UTF-8", ErrEncoding)
	}
	return b, nil
}

// entryWriter appends an entry's encoding, noting in ok whether every
// string written was valid UTF-8.
type entryWriter struct {
	ok bool
}

func (w *entryWriter) entry(b []byte, e *Entry) []byte {
	b = append(b, EntryVersion, '{')
	b = w.field(b, "consumer", e.Consumer)
	b = w.field(b, "consumer_department", e.ConsumerDepartment)
	b = w.list(b, "datasets", e.Datasets)
	b = w.field(b, "decision", e.Decision)
	b = w.field(b, "delivery", e.Delivery)
	b = w.field(b, "deny_reason", e.DenyReason)
	b = w.field(b, "department", e.Department)
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
			b = w.str(b, k)
			b = append(b, ':')
			b = w.str(b, e.Details[k])
		}
		b = append(b, "},"...)
	}
	b = w.list(b, "fields_returned", e.FieldsReturned)
	b = w.list(b, "fields_withheld", e.FieldsWithheld)
	b = w.list(b, "grant_ids", e.GrantIDs)
	b = append(b, `"kind":`...)
	b = w.str(b, e.Kind)
	b = append(b, ',')
	b = w.list(b, "legal_basis", e.LegalBasis)
	b = w.field(b, "node", e.Node)
	b = w.field(b, "purpose", e.Purpose)
	b = w.field(b, "request_id", e.RequestID)
	b = w.field(b, "response_digest", e.ResponseDigest)
	b = w.list(b, "subjects", normSubjects(e.Subjects))
	b = append(b, `"time":"`...)
	b = e.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// str appends s as a JSON string (appendString).
func (w *entryWriter) str(b []byte, s string) []byte {
	b, ok := appendStringValid(b, s)
	if !ok {
		w.ok = false
	}
	return b
}

// field appends "key":"value", unless value is empty.
func (w *entryWriter) field(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, '"')
	b = append(b, key...)
	b = append(b, `":`...)
	b = w.str(b, value)
	return append(b, ',')
}

// list appends "key":[...], unless the list is empty.
func (w *entryWriter) list(b []byte, key string, values []string) []byte {
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
		b = w.str(b, v)
	}
	return append(b, "],"...)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string with the escaping Encode
// documents. s must be valid UTF-8.
func appendString(b []byte, s string) []byte {
	b, _ = appendStringValid(b, s)
	return b
}

// Byte classes of appendStringValid.
const (
	strPlain  = iota // printable ASCII other than '"' and '\\': copied
	strEscape        // control characters, '"' and '\\': escaped
	strHigh          // bytes of multi-byte sequences but 0xE2: copied
	strE2            // 0xE2, which starts U+2028 and U+2029
)

// strClass holds the class of every byte.
var strClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c < 0x20 || c == '"' || c == '\\':
			t[c] = strEscape
		case c == 0xE2:
			t[c] = strE2
		case c >= utf8.RuneSelf:
			t[c] = strHigh
		}
	}
	return t
}()

const (
	loBits = 0x0101010101010101
	hiBits = 0x8080808080808080
)

// plainWord reports whether none of the eight bytes in x is a control
// character, '"', '\\' or 0xE2: whether appendStringValid copies them as
// they are. Each test is the exact "has a byte less than n" of Bit
// Twiddling Hacks ((x - n*loBits) &^ x & hiBits, exact for n <= 128),
// applied to x for n = 0x20 and to x XOR a repeated byte for n = 1.
func plainWord(x uint64) bool {
	q := x ^ (loBits * '"')
	bs := x ^ (loBits * '\\')
	e2 := x ^ (loBits * 0xE2)
	t := (x - loBits*0x20) &^ x
	t |= (q - loBits) &^ q
	t |= (bs - loBits) &^ bs
	t |= (e2 - loBits) &^ e2
	return t&hiBits == 0
}

// appendStringValid appends s as appendString does and reports whether s
// is valid UTF-8. Invalid bytes are copied as they are.
func appendStringValid(b []byte, s string) ([]byte, bool) {
	b = append(b, '"')
	start := 0
	ascii := true
	for i := 0; i < len(s); {
		// Skip eight bytes at a time while none needs a closer look.
		for i+8 <= len(s) {
			x := uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
				uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
			if !plainWord(x) {
				break
			}
			if x&hiBits != 0 {
				ascii = false
			}
			i += 8
		}
		if i >= len(s) {
			break
		}
		c := s[i]
		switch strClass[c] {
		case strPlain:
			i++
			continue
		case strHigh:
			ascii = false
			i++
			continue
		case strE2:
			ascii = false
			// In valid UTF-8, E2 80 A8 and E2 80 A9 are U+2028 and
			// U+2029; invalid strings are refused below anyway.
			if i+2 < len(s) && s[i+1] == 0x80 && (s[i+2] == 0xA8 || s[i+2] == 0xA9) {
				b = append(b, s[start:i]...)
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[s[i+2]&0xf])
				i += 3
				start = i
				continue
			}
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
	}
	b = append(b, s[start:]...)
	b = append(b, '"')
	return b, ascii || utf8.ValidString(s)
}

// Decode parses a canonical entry encoding. It rejects unknown versions,
// unknown keys and any encoding that Encode would not produce for the
// decoded entry.
func Decode(b []byte) (Entry, error) {
	if len(b) < 2 {
		return Entry{}, fmt.Errorf("%w: %d bytes", ErrEncoding, len(b))
	}
	if b[0] != EntryVersion {
		return Entry{}, fmt.Errorf("%w: unknown version %d", ErrEncoding, b[0])
	}
	// Unknown keys, duplicates, white space and other variations are
	// caught by the comparison with the re-encoding below.
	var w wireEntry
	if err := json.Unmarshal(b[1:], &w); err != nil {
		return Entry{}, fmt.Errorf("%w: %v", ErrEncoding, err)
	}
	t, err := time.Parse(time.RFC3339Nano, w.Time)
	if err != nil {
		return Entry{}, fmt.Errorf("%w: time: %v", ErrEncoding, err)
	}
	e := Entry{
		Version:            int(b[0]),
		Time:               t.UTC(),
		RequestID:          w.RequestID,
		Node:               w.Node,
		Kind:               w.Kind,
		Consumer:           w.Consumer,
		ConsumerDepartment: w.ConsumerDepartment,
		Datasets:           w.Datasets,
		Subjects:           w.Subjects,
		Purpose:            w.Purpose,
		LegalBasis:         w.LegalBasis,
		GrantIDs:           w.GrantIDs,
		Decision:           w.Decision,
		DenyReason:         w.DenyReason,
		FieldsReturned:     w.FieldsReturned,
		FieldsWithheld:     w.FieldsWithheld,
		Department:         w.Department,
		Delivery:           w.Delivery,
		ResponseDigest:     w.ResponseDigest,
		Details:            w.Details,
	}
	again, err := Encode(e)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, b) {
		return Entry{}, fmt.Errorf("%w: not in canonical form", ErrEncoding)
	}
	return e, nil
}

// validate reports the first problem that makes e impossible to encode.
func (e *Entry) validate() error {
	if err := e.validateShape(); err != nil {
		return err
	}
	for _, s := range [...]string{e.RequestID, e.Node, e.Consumer, e.ConsumerDepartment, e.Purpose, e.DenyReason, e.Department} {
		if !utf8.ValidString(s) {
			return invalidUTF8(s)
		}
	}
	for _, l := range [...][]string{e.Datasets, e.LegalBasis, e.GrantIDs, e.FieldsReturned, e.FieldsWithheld} {
		for _, s := range l {
			if !utf8.ValidString(s) {
				return invalidUTF8(s)
			}
		}
	}
	for k, v := range e.Details {
		if !utf8.ValidString(k) {
			return invalidUTF8(k)
		}
		if !utf8.ValidString(v) {
			return invalidUTF8(v)
		}
	}
	return nil
}

// validateShape makes the checks of validate other than UTF-8 validity.
// What it accepts, the encoding writes as ASCII: kind, decision, delivery,
// subjects and the response digest.
func (e *Entry) validateShape() error {
	if e.Version != 0 && e.Version != EntryVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrEncoding, e.Version, EntryVersion)
	}
	if e.Time.IsZero() {
		return fmt.Errorf("%w: time is not set", ErrEncoding)
	}
	if y := e.Time.UTC().Year(); y < 1 || y > 9999 {
		return fmt.Errorf("%w: time %v out of range", ErrEncoding, e.Time)
	}
	if !isWord(e.Kind) {
		return fmt.Errorf("%w: kind %q is not a lowercase word", ErrEncoding, e.Kind)
	}
	switch e.Decision {
	case "", DecisionPermit, DecisionDeny, DecisionPartial:
	default:
		return fmt.Errorf("%w: decision %q", ErrEncoding, e.Decision)
	}
	switch e.Delivery {
	case "", DeliveryLive, DeliveryCache, DeliveryStale:
	default:
		return fmt.Errorf("%w: delivery %q", ErrEncoding, e.Delivery)
	}
	for i, s := range e.Subjects {
		if !isHexHash(s) {
			// The value is not printed: it may be a raw identifier.
			return fmt.Errorf("%w: subjects[%d] must be 64 lowercase hex digits (use SubjectHash)", ErrEncoding, i)
		}
	}
	if e.ResponseDigest != "" && !isHexHash(e.ResponseDigest) {
		return fmt.Errorf("%w: response digest must be 64 lowercase hex digits (use Digest)", ErrEncoding)
	}
	return nil
}

func invalidUTF8(s string) error {
	return fmt.Errorf("%w: string %q is not valid UTF-8", ErrEncoding, s)
}

func isWord(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '_' && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// lowerHex marks the lowercase hexadecimal digits.
var lowerHex = func() (t [256]bool) {
	for _, c := range hexDigits {
		t[c] = true
	}
	return t
}()

func isHexHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !lowerHex[s[i]] {
			return false
		}
	}
	return true
}

// SubjectHash returns the keyed hash that stands for a data subject in the
// log: lowercase hex of HMAC-SHA256 under key of the identifier, after
// trimming surrounding spaces and upper-casing it (unified social credit
// codes and resident ID numbers are case-insensitive). Only the holder of
// key can map an identifier to its entries.
func SubjectHash(key []byte, subjectID string) string {
	h := getSubjectHasher(key)
	h.buf = append(h.buf[:0], strings.ToUpper(strings.TrimSpace(subjectID))...)
	h.mac.Write(h.buf)
	sum := h.mac.Sum(h.sum[:0])
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum)
	putSubjectHasher(h)
	return string(out[:])
}

// subjectHasher is a keyed HMAC-SHA256 state kept for reuse: hmac.New
// costs a handful of allocations and two SHA-256 blocks, while Reset of a
// state whose key pads were saved (as crypto/hmac does on the first Reset)
// only copies them back.
type subjectHasher struct {
	key []byte    // a copy of the key mac was made with
	mac hash.Hash // reset, ready to hash a message
	buf []byte    // the message
	sum [sha256.Size]byte
}

// subjectHashers holds idle subjectHashers of any key. A node hashes with
// one key, so a hasher taken from the pool nearly always has the right
// one; one that does not is rekeyed. Like the caller's key, the copies and
// pads the pool holds live in the process's memory, until the garbage
// collector clears the pool.
var subjectHashers sync.Pool

// maxSubjectBuf bounds the message buffer a pooled hasher keeps.
const maxSubjectBuf = 1 << 10

func getSubjectHasher(key []byte) *subjectHasher {
	h, _ := subjectHashers.Get().(*subjectHasher)
	if h == nil {
		h = &subjectHasher{}
	}
	if h.mac == nil || !bytes.Equal(h.key, key) {
		h.key = append(h.key[:0], key...)
		h.mac = hmac.New(sha256.New, h.key)
		// The first Reset saves the key pads for the following ones.
		h.mac.Reset()
	}
	return h
}

func putSubjectHasher(h *subjectHasher) {
	h.mac.Reset()
	if cap(h.buf) > maxSubjectBuf {
		h.buf = nil
	}
	subjectHashers.Put(h)
}

// SubjectHashes returns SubjectHash of every identifier in ids, sorted and
// without duplicates: the form of Entry.Subjects. Empty identifiers are
// skipped.
func SubjectHashes(key []byte, ids []string) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if strings.TrimSpace(id) != "" {
			out = append(out, SubjectHash(key, id))
		}
	}
	return normSubjects(out)
}

// normSubjects returns subjects sorted and without duplicates, copying
// only when they are not already so.
func normSubjects(subjects []string) []string {
	for i := 1; i < len(subjects); i++ {
		if subjects[i-1] >= subjects[i] {
			c := slices.Clone(subjects)
			slices.Sort(c)
			return slices.Compact(c)
		}
	}
	return subjects
}

// Digest returns lowercase hex of SHA-256 of b, the form of
// Entry.ResponseDigest.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
