package config

import "testing"

// FuzzDecodeValidate feeds arbitrary YAML to Decode and Validate: neither may
// panic, and a configuration that decodes must either validate or name what
// is wrong.
func FuzzDecodeValidate(f *testing.F) {
	for _, s := range []string{
		"",
		"node: n\nserver:\n  grpc_addr: 127.0.0.1:0\n  rest_addr: 127.0.0.1:0\n",
		"server:\n  tls:\n    cert_file: s.crt\n    key_file: s.key\n    client_ca_file: ca.crt\n    client_auth: request\n",
		"identities:\n  - {token_sha256: " + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" + ", system_id: s, roles: [subject]}\n",
		"departments:\n  connectors:\n    - {name: m, type: rest}\n",
		"store:\n  driver: postgres\n",
		"cache:\n  max_stale: -1s\n",
		"log: [1, 2]\n",
		"&a [*a]\n",
		"server: {request_timeout: 99999999999h}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg := Default()
		if err := Decode(b, &cfg); err != nil {
			return
		}
		if err := cfg.Validate(); err != nil && err.Error() == "" {
			t.Fatal("Validate returned an empty error")
		}
	})
}
