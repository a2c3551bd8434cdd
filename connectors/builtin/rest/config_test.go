package rest

import (
	"strings"
	"testing"
)

func TestParseErrorsNameKeyPath(t *testing.T) {
	const good = `
department: {id: market}
base_url: http://127.0.0.1:1
datasets:
  market.business_licences:
    get: /api/v1/licences/{credit_code}
    fields: {name: /entName}
`
	if _, err := Parse([]byte(good)); err != nil {
		t.Fatalf("Parse(good): %v", err)
	}
	tests := []struct {
		name, from, to, want string
	}{
		{"pointer without slash", "{name: /entName}", "{name: entName}", `datasets["market.business_licences"].fields.name: JSON pointer "entName" must start with "/"`},
		{"unknown field", "{name: /entName}", "{colour: /c}", `datasets["market.business_licences"].fields: "colour" is not a field of market.business_licences`},
		{"unknown key", "fields:", "feilds:", "field feilds not found"},
		{"unknown dataset", "market.business_licences:", "market.licences:", `datasets["market.licences"]: not in the dataset dictionary`},
		{"other department's dataset", "market.business_licences:", "approval.permits:", `belongs to department "approval"`},
		{"placeholder not a key", "{credit_code}", "{name}", `datasets["market.business_licences"].get: placeholder {name} is not a key field`},
		{"unknown department", "id: market", "id: tax", `department.id: "tax" is not in the dataset dictionary`},
		{"relative base URL", "http://127.0.0.1:1", "127.0.0.1:1", "base_url:"},
		{"bad paging style", "fields: {name: /entName}", "fields: {name: /entName}\n    list: {path: /l, params: {name: n}, paging: {style: cursor}}", `datasets["market.business_licences"].list.paging.style: "cursor"`},
		{"list param not a field", "fields: {name: /entName}", "fields: {name: /entName}\n    list: {path: /l, params: {nom: n}}", `datasets["market.business_licences"].list.params: "nom" is not a field`},
		{"token twice", "base_url: http://127.0.0.1:1", "base_url: http://127.0.0.1:1\nauth: {bearer_token: a, bearer_token_env: B}", "auth: give bearer_token or bearer_token_env"},
		{"certificate over http", "base_url: http://127.0.0.1:1", "base_url: http://127.0.0.1:1\nauth: {cert_file: a, key_file: b}", "need an https base_url"},
		{"no get nor list", "    get: /api/v1/licences/{credit_code}\n", "", "give get, list or both"},
		{"bad not-found status", "fields: {name: /entName}", "fields: {name: /entName}\n    not_found_status: [200]", "not_found_status: 200 is not a 4xx status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := strings.Replace(good, tt.from, tt.to, 1)
			if in == good {
				t.Fatalf("replacement %q did not apply", tt.from)
			}
			_, err := Parse([]byte(in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	if _, err := Parse(nil); err == nil {
		t.Error("Parse(empty) succeeded")
	}
}
