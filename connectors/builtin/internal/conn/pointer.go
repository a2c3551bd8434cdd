package conn

import (
	"fmt"
	"strconv"
	"strings"
)

// Pointer is a parsed RFC 6901 JSON pointer.
type Pointer struct {
	raw    string
	tokens []string
}

// ParsePointer parses an RFC 6901 JSON pointer. The empty string refers to
// the whole document; any other pointer starts with "/".
func ParsePointer(s string) (Pointer, error) {
	if s == "" {
		return Pointer{}, nil
	}
	if !strings.HasPrefix(s, "/") {
		return Pointer{}, fmt.Errorf("JSON pointer %q must start with \"/\"", s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		// "~" must be followed by 0 or 1.
		for j := 0; j < len(p); j++ {
			if p[j] == '~' && (j+1 == len(p) || (p[j+1] != '0' && p[j+1] != '1')) {
				return Pointer{}, fmt.Errorf("JSON pointer %q: bad escape in %q", s, p)
			}
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(p, "~1", "/"), "~0", "~")
	}
	return Pointer{raw: s, tokens: parts}, nil
}

// MustPointer is ParsePointer for pointers known to be valid.
func MustPointer(s string) Pointer {
	p, err := ParsePointer(s)
	if err != nil {
		panic(err)
	}
	return p
}

// String returns the pointer as written.
func (p Pointer) String() string { return p.raw }

// IsRoot reports whether p refers to the whole document.
func (p Pointer) IsRoot() bool { return len(p.tokens) == 0 }

// Eval returns the value p refers to in doc, a value decoded by
// encoding/json (maps, slices, strings, json.Number or float64, bools, nil).
// It reports false when the value does not exist.
func (p Pointer) Eval(doc any) (any, bool) {
	cur := doc
	for _, tok := range p.tokens {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			if tok == "" || (len(tok) > 1 && tok[0] == '0') {
				return nil, false
			}
			i, err := strconv.Atoi(tok)
			if err != nil || i < 0 || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}
